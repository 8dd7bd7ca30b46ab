"""A group of particles trained as one computation.

:class:`ParticleStack` holds ``P`` independent copies of one network, their
weights and buffers stacked along a leading particle axis, and evaluates all of
them in one call; :class:`ParticleLoss` sums the copies' losses, so that the
gradient each copy receives is the gradient of its own loss alone;
:class:`ParticleBatches` feeds each copy its own shuffled mini-batches. With an
elementwise optimizer (SGD, Adam, AdamW, RMSprop, ...) training the stack is
exactly training ``P`` networks one after another, only faster.

How the copies are evaluated is chosen once per stack, as one of three small
evaluator classes:

``"lowered"`` (:class:`LoweredEvaluator`)
    The network is traced and rewritten into batched operations
    (:mod:`sklearn_swag._network.lowering`): a stacked ``Linear`` is one batched
    matrix product, a stacked convolution one grouped convolution, a
    ``BatchNorm`` keeps every copy's statistics. Most networks built from
    common layers take this path.
``"vmap"`` (:class:`VmapEvaluator`)
    Any other module that :func:`torch.func.vmap` can batch runs through
    :func:`torch.func.functional_call`.
``"loop"`` (:class:`LoopEvaluator`)
    What neither can batch runs copy by copy.

Every evaluator takes the weights and buffers as arguments and an explicit
``mode`` ("train", "eval", or "refresh" for recomputing normalisation
statistics), so prediction never changes the fitted stack
(:class:`StackInference`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from .._network.lowering import LoweringError, lower

#: Floats of the widest layer for a block of weight vectors at inference on
#: a CPU (2 MiB in float32): small enough to stay in a core's cache.
_BLOCK_FLOATS = 2**19

#: Floats of the widest layer for a block of weight vectors while normalisation
#: statistics are recomputed (64 MiB in float32).
_REFRESH_FLOATS = 2**24

#: The buffers of a BatchNorm layer that a refresh recomputes, and their
#: starting values (SWAG's ``bn_update``: mean 0, variance 1, count 0).
_BN_BUFFERS = {"running_mean": 0.0, "running_var": 1.0, "num_batches_tracked": 0}


#: What every stack of one network shares, whatever its particles.
_SHARED_STRUCTURE = (
    "_names",
    "_shapes",
    "_numels",
    "n_params",
    "_buffer_names",
    "_refresh_values",
    "has_batch_norm",
    "normalises_batches",
    "_skeleton",
    "_evaluator",
)


def _as_particle_output(out: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Shape a stacked output ``(P, N)`` or ``(P, N, o)`` as ``(P, N, o)``."""
    if out.ndim == 2:
        out = out.unsqueeze(-1)
    if out.ndim != 3 or out.shape[1] != n_rows:
        raise ValueError(
            "The module must return a tensor of shape (n_samples,) or "
            f"(n_samples, n_outputs); got shape {tuple(out.shape[1:])} for "
            f"{n_rows} samples."
        )
    return out


# -- evaluators ---------------------------------------------------------------------
class LoweredEvaluator:
    """Copies evaluated by the network's batched rewrite.

    Parameters
    ----------
    lowered : LoweredNetwork
        The result of :func:`sklearn_swag._network.lowering.lower`.
    """

    name = "lowered"

    def __init__(self, lowered) -> None:
        self.lowered = lowered

    def __call__(
        self,
        params: Sequence[torch.Tensor],
        buffers: Sequence[torch.Tensor],
        X: torch.Tensor,
        *,
        mode: str,
        generators: Sequence[torch.Generator] | None = None,
    ) -> torch.Tensor:
        return self.lowered(
            params,
            buffers,
            X,
            mode=mode,
            shared_input=X.ndim == 2,
            generators=generators if mode == "train" else None,
        )

    def copy_to(self, device: torch.device) -> LoweredEvaluator:
        return self  # a pure function of its arguments: nothing to copy


class _SkeletonEvaluator:
    """Shared part of the evaluators that call a copy of the module.

    Parameters
    ----------
    skeleton : torch.nn.Module
        A copy of the network, owned by the evaluator.
    """

    name = ""

    def __init__(self, skeleton: nn.Module) -> None:
        self.skeleton = skeleton
        self.param_names = [name for name, _ in skeleton.named_parameters()]
        self.buffer_names = [name for name, _ in skeleton.named_buffers()]
        self._mode: str | None = None

    def _set_mode(self, mode: str) -> None:
        if mode == self._mode:
            return  # skorch asks at every step; walking the tree costs
        self.skeleton.train(mode != "eval")
        if mode == "refresh":  # normalisation statistics, without dropout
            for module in self.skeleton.modules():
                if isinstance(module, _DropoutNd):
                    module.eval()
        self._mode = mode

    def _each_copy(self, params, buffers, X, mode):
        """The copies one after another, each with its own weights and buffers.

        The buffers a copy updates (``BatchNorm`` statistics in training) are
        views of the stacked ones, so the updates land in the stack.
        """
        self._set_mode(mode)
        momenta = {}
        if mode == "refresh":  # cumulative averages, as SWAG's bn_update
            for module in self.skeleton.modules():
                if isinstance(module, _BatchNorm):
                    momenta[module] = module.momentum
                    module.momentum = None
        try:
            outs = []
            for i in range(params[0].shape[0] if params else buffers[0].shape[0]):
                values = {
                    n: p[i] for n, p in zip(self.param_names, params, strict=True)
                }
                own = {n: b[i] for n, b in zip(self.buffer_names, buffers, strict=True)}
                x = X if X.ndim == 2 else X[i]
                outs.append(functional_call(self.skeleton, (values, own), (x,)))
        finally:
            for module, momentum in momenta.items():
                module.momentum = momentum
        return torch.stack(outs)

    def copy_to(self, device: torch.device):
        return type(self)(copy.deepcopy(self.skeleton).to(device))

    def __getstate__(self) -> dict:
        return {**vars(self), "_mode": None}


class VmapEvaluator(_SkeletonEvaluator):
    """Copies evaluated by :func:`torch.func.vmap` over one functional module."""

    name = "vmap"

    def __call__(self, params, buffers, X, *, mode, generators=None):
        if mode == "refresh":  # vmap cannot keep buffer updates: copy by copy
            return self._each_copy(params, buffers, X, mode)
        self._set_mode(mode)
        skeleton = self.skeleton

        def one(values, buffers_, x):
            return functional_call(skeleton, (values, buffers_), (x,))

        values = dict(zip(self.param_names, params, strict=True))
        buffer_values = dict(zip(self.buffer_names, buffers, strict=True))
        x_dim = 0 if X.ndim == 3 else None
        return vmap(one, in_dims=(0, 0, x_dim), randomness="different")(
            values, buffer_values, X
        )


class LoopEvaluator(_SkeletonEvaluator):
    """Copies evaluated one after another, each with its own weights and buffers."""

    name = "loop"

    def __call__(self, params, buffers, X, *, mode, generators=None):
        return self._each_copy(params, buffers, X, mode)


_EVALUATORS = {"vmap": VmapEvaluator, "loop": LoopEvaluator}


def _make_evaluator(mode: str, skeleton: nn.Module):
    if mode in ("auto", "lowered"):
        try:
            return LoweredEvaluator(lower(skeleton))
        except LoweringError:
            if mode == "lowered":
                raise
            mode = "vmap"
    if mode not in _EVALUATORS:
        raise ValueError(
            f"mode must be 'auto', 'lowered', 'vmap' or 'loop', got {mode!r}."
        )
    return _EVALUATORS[mode](copy.deepcopy(skeleton))


# -- the stack ------------------------------------------------------------------------
class ParticleStack(nn.Module):
    """``P`` independent copies of one network, evaluated together.

    Parameters
    ----------
    modules : sequence of torch.nn.Module
        The initialised copies, one per particle, all of the same structure.
    mode : {"auto", "lowered", "vmap", "loop"}, default="auto"
        How to evaluate the copies; "auto" takes "lowered" where the network
        can be rewritten into batched operations and "vmap" otherwise. The
        caller falls back to "loop" where "vmap" fails (:func:`build_stack`).

    Attributes
    ----------
    n_particles : int
        Number of copies.
    n_params : int
        Length of one copy's flat weight vector.
    has_batch_norm : bool
        Whether the network keeps normalisation statistics (a ``BatchNorm``
        layer with running statistics), which prediction recomputes for
        every weight vector it evaluates.
    normalises_batches : bool
        Whether any layer normalises by batch statistics (any ``BatchNorm``),
        so that a training batch of one row must be avoided.
    dropout_generators : list of torch.Generator or None
        Set while training: each particle's own source of dropout masks in
        "lowered" mode, so that a particle's masks do not depend on the
        other particles of its group. Other modes draw masks from the global
        torch random state.

    Examples
    --------
    >>> import torch
    >>> from sklearn_swag import MLP, ParticleStack
    >>> nets = [MLP(3, 1, hidden_layer_sizes=(8,)) for _ in range(4)]
    >>> stack = ParticleStack(nets)
    >>> stack.mode, stack.n_particles, stack.n_params
    ('lowered', 4, 41)
    >>> stack(torch.zeros(5, 3)).shape
    torch.Size([4, 5, 1])
    >>> theta = stack.flat_weights()
    >>> theta.shape
    torch.Size([4, 41])
    >>> stack.functional_forward(theta, torch.zeros(5, 3), torch.arange(4)).shape
    torch.Size([4, 5, 1])
    """

    def __init__(self, modules: Sequence[nn.Module], mode: str = "auto") -> None:
        super().__init__()
        modules = list(modules)
        if not modules:
            raise ValueError("A particle stack needs at least one module.")
        template = modules[0]
        self.dropout_generators: list[torch.Generator] | None = None
        self._names = [name for name, _ in template.named_parameters()]
        self._shapes = [tuple(p.shape) for p in template.parameters()]
        self._numels = [p.numel() for p in template.parameters()]
        self.n_params = sum(self._numels)
        self._buffer_names = [name for name, _ in template.named_buffers()]
        self._refresh_values = _refresh_values(template, self._buffer_names)
        self.has_batch_norm = bool(self._refresh_values)
        self.normalises_batches = uses_batch_norm(template)
        params, buffers = stack_module_state(modules)
        self._hold(
            [params[name] for name in self._names],
            [buffers[name] for name in self._buffer_names],
        )
        # The structure, kept out of the module tree. A real (CPU) copy rather
        # than a storage-less "meta" one: dask serialises modules tensor by
        # tensor and cannot send meta ones.
        self._skeleton = [copy.deepcopy(template)]
        self._evaluator = _make_evaluator(mode, self._skeleton[0])

    def _hold(self, weights: Sequence, buffers: Sequence) -> None:
        """Make copies of the stacked ``weights`` and ``buffers`` the stack's own."""
        with torch.no_grad():
            self.weights = nn.ParameterList(
                nn.Parameter(torch.as_tensor(w).detach().clone()) for w in weights
            )
            for i, b in enumerate(buffers):
                self.register_buffer(f"_buffer{i}", torch.as_tensor(b).detach().clone())
        self.n_particles = len(weights[0]) if weights else len(buffers[0])

    @property
    def mode(self) -> str:
        """How the copies are evaluated: "lowered", "vmap" or "loop"."""
        return self._evaluator.name

    def _weight_list(self) -> list[nn.Parameter]:
        """``list(self.weights)``, kept: a ParameterList iterates slowly."""
        cached = vars(self).get("_weights_cache")
        if cached is None or cached[0] is not self.weights:
            cached = (self.weights, list(self.weights))
            self._weights_cache = cached
        return cached[1]

    def _apply(self, *args, **kwargs):
        self._weights_cache = None  # moving may replace the parameters
        return super()._apply(*args, **kwargs)

    def stacked_buffers(self) -> list[torch.Tensor]:
        """Every buffer with a leading particle axis.

        Returns
        -------
        list of torch.Tensor
            The stack's own tensors (not copies), in the order of
            ``named_buffers()`` of one network, each of shape
            ``(n_particles, ...)``.
        """
        return [getattr(self, f"_buffer{i}") for i in range(len(self._buffer_names))]

    # -- weights as flat vectors ------------------------------------------------
    def flat_weights(self) -> torch.Tensor:
        """Current weights, shape ``(n_particles, n_params)``, detached.

        Returns
        -------
        torch.Tensor of shape (n_particles, n_params)
            One row per particle: its parameters flattened in the order of
            ``named_parameters()`` of one network.
        """
        with torch.no_grad():
            return torch.cat(
                [p.reshape(self.n_particles, -1) for p in self.weights], dim=1
            )

    def unflatten(self, theta: torch.Tensor) -> list[torch.Tensor]:
        """Split flat vectors ``(M, n_params)`` into parameters ``(M, ...)``.

        Parameters
        ----------
        theta : torch.Tensor of shape (M, n_params)
            Flat weight vectors, as :meth:`flat_weights` returns them.

        Returns
        -------
        list of torch.Tensor
            One tensor per parameter of the network, each with a leading
            axis of length ``M``.
        """
        pieces = torch.split(theta, self._numels, dim=1)
        return [
            piece.reshape(theta.shape[0], *shape)
            for piece, shape in zip(pieces, self._shapes, strict=True)
        ]

    # -- evaluation ------------------------------------------------------------------
    def train(self, mode: bool = True) -> ParticleStack:
        if self.training == mode:
            return self  # skorch asks at every step; walking the tree costs
        return super().train(mode)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Evaluate every copy at its current weights, in the stack's mode.

        In training mode a ``BatchNorm`` layer normalises each copy with its
        own batch statistics and updates that copy's running statistics.

        Parameters
        ----------
        X : torch.Tensor of shape (N, n_features) or (P, N, n_features)
            Rows shared by all copies, or each copy's own rows.

        Returns
        -------
        torch.Tensor of shape (P, N, n_outputs)
        """
        out = self._evaluator(
            self._weight_list(),
            self.stacked_buffers(),
            X,
            mode="train" if self.training else "eval",
            generators=self.dropout_generators,
        )
        return _as_particle_output(out, X.shape[-2])

    def inference(self, device: torch.device | str = "cpu") -> StackInference:
        """An evaluator of this stack at arbitrary weights, on ``device``.

        It holds its own copies of whatever it could change, so several
        threads may predict with one stack at once, and the stack itself is
        neither moved nor switched to eval mode.

        Parameters
        ----------
        device : torch.device or str, default="cpu"
            Where to evaluate.

        Returns
        -------
        StackInference
            Call it with flat weight vectors, rows and buffers
            (``buffers_of`` or ``refreshed_buffers``).
        """
        return StackInference(self, torch.device(device))

    def functional_forward(
        self, theta: torch.Tensor, X: torch.Tensor, owners: torch.Tensor
    ) -> torch.Tensor:
        """Evaluate the network at arbitrary flat weight vectors (eval mode).

        Parameters
        ----------
        theta : torch.Tensor of shape (M, n_params)
            Weight vectors, for example posterior draws.
        X : torch.Tensor of shape (N, n_features)
            Rows, shared by all weight vectors.
        owners : torch.Tensor of shape (M,)
            The particle each weight vector belongs to; its buffers (batch
            norm statistics, for example) are used.

        Returns
        -------
        torch.Tensor of shape (M, N, n_outputs)
        """
        inference = self.inference(X.device)
        return inference(theta, X, inference.buffers_of(owners))

    # -- moving between stacks ---------------------------------------------------
    def arrays(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The stacked weights and buffers as numpy arrays on the CPU.

        Returns
        -------
        weights : list of ndarray
            One array per parameter of the network, in the order of
            ``named_parameters()``, each of shape ``(n_particles, ...)``.
        buffers : list of ndarray
            Likewise for ``named_buffers()``.
        """
        with torch.no_grad():
            return (
                [p.detach().cpu().numpy().copy() for p in self.weights],
                [b.detach().cpu().numpy().copy() for b in self.stacked_buffers()],
            )

    def subset(self, indices: torch.Tensor) -> ParticleStack:
        """The particles at ``indices``, as a new stack on the same device.

        Their weights and buffers are copied; the structure and the evaluator
        are shared, so nothing is traced again (which a worker thread must
        not do).

        Parameters
        ----------
        indices : torch.Tensor of shape (M,)
            Positions of the particles to keep, in order.

        Returns
        -------
        ParticleStack
            ``M`` particles, in this stack's training mode.
        """
        new = ParticleStack.__new__(ParticleStack)
        nn.Module.__init__(new)
        for name in _SHARED_STRUCTURE:
            vars(new)[name] = vars(self)[name]
        new.dropout_generators = None
        new._hold(
            [w.detach()[indices.to(w.device)] for w in self.weights],
            [b[indices.to(b.device)] for b in self.stacked_buffers()],
        )
        new.training = self.training
        return new

    @classmethod
    def from_arrays(
        cls,
        template: nn.Module,
        weights: Sequence,
        buffers: Sequence,
        mode: str = "auto",
    ) -> ParticleStack:
        """A stack of ``template``'s network holding the given values.

        Parameters
        ----------
        template : torch.nn.Module
            One network of the structure the values belong to; its own
            weights are not used.
        weights, buffers : sequence of ndarray or torch.Tensor
            Stacked values, as :meth:`arrays` returns them.
        mode : {"auto", "lowered", "vmap", "loop"}, default="auto"
            How to evaluate the copies.

        Returns
        -------
        ParticleStack
            On the CPU, in training mode.
        """
        stack = cls([template], mode=mode)
        names = stack._buffer_names
        if len(weights) != len(stack._names) or len(buffers) != len(names):
            raise ValueError(
                f"The network has {len(stack._names)} parameters and {len(names)} "
                f"buffers; got {len(weights)} and {len(buffers)} values."
            )
        weights = [torch.as_tensor(w) for w in weights]
        buffers = [torch.as_tensor(b) for b in buffers]
        for value, shape, what in [
            *zip(weights, stack._shapes, stack._names, strict=True),
            *zip(
                buffers,
                [tuple(b.shape[1:]) for b in stack.stacked_buffers()],
                names,
                strict=True,
            ),
        ]:
            if tuple(value.shape[1:]) != shape or len(value) != len(weights[0]):
                raise ValueError(
                    f"The values of {what!r} have shape {tuple(value.shape)}, "
                    f"but the network needs (n_particles, *{shape})."
                )
        stack._hold(weights, buffers)
        return stack

    @classmethod
    def concatenate(cls, stacks: Sequence[ParticleStack]) -> ParticleStack:
        """Join stacks of the same network into one, particles in order.

        Parameters
        ----------
        stacks : sequence of ParticleStack
            Stacks of the same network and evaluation mode.

        Returns
        -------
        ParticleStack
            One stack holding every particle of ``stacks``, in order.
        """
        first = stacks[0]
        if len(stacks) == 1:
            return first
        if any(s.mode != first.mode for s in stacks):
            raise ValueError("Cannot join particle stacks evaluated differently.")
        with torch.no_grad():
            joined = cls.from_arrays(
                first._skeleton[0],
                [
                    torch.cat([s.weights[i].detach() for s in stacks])
                    for i in range(len(first._names))
                ],
                [
                    torch.cat([s.stacked_buffers()[i] for s in stacks])
                    for i in range(len(first._buffer_names))
                ],
                mode=first.mode,
            )
        return joined.train(first.training)


def uses_batch_norm(module: nn.Module) -> bool:
    """Whether ``module`` has a ``BatchNorm`` layer (with running statistics or not)."""
    return any(isinstance(m, _BatchNorm) for m in module.modules())


def _refresh_values(module: nn.Module, buffer_names: list[str]) -> dict[int, float]:
    """Index and starting value of every buffer a statistics refresh recomputes."""
    names = {}
    for prefix, sub in module.named_modules():
        if isinstance(sub, _BatchNorm) and sub.track_running_stats:
            for name, value in _BN_BUFFERS.items():
                names[f"{prefix}.{name}" if prefix else name] = value
    return {i: names[n] for i, n in enumerate(buffer_names) if n in names}


class StackInference:
    """A fitted stack's network at arbitrary weights, for prediction.

    Built by :meth:`ParticleStack.inference`: it copies the buffers to the
    device and, for the evaluators that call a module, the module too, so
    the stack itself is never moved, switched to eval mode or otherwise
    changed, and concurrent predictions cannot disturb one another.

    Parameters
    ----------
    stack : ParticleStack
    device : torch.device
    """

    def __init__(self, stack: ParticleStack, device: torch.device) -> None:
        self.device = device
        self.unflatten = stack.unflatten
        self._refresh_values = stack._refresh_values
        self._buffers = [b.detach().to(device) for b in stack.stacked_buffers()]
        self._evaluator = stack._evaluator.copy_to(device)
        self._template = stack._skeleton[0]
        self._widest: int | None = None

    def buffers_of(self, owners: torch.Tensor) -> list[torch.Tensor]:
        """The buffers of the particles ``owners``, one row per weight vector."""
        owners = torch.as_tensor(owners, device=self.device)
        return [b[owners] for b in self._buffers]

    def refreshed_buffers(
        self,
        theta: torch.Tensor,
        owners: torch.Tensor,
        rows: torch.Tensor,
        batch_size: int | None,
    ) -> list[torch.Tensor]:
        """Buffers with normalisation statistics recomputed for each weight vector.

        As SWAG's ``bn_update``: the statistics are reset, then each batch of
        ``rows`` is passed through the network in training mode (without
        dropout), and every ``BatchNorm`` layer keeps the cumulative average
        of the batch means and variances. A last batch of one row joins the
        batch before it.

        Parameters
        ----------
        theta : torch.Tensor of shape (M, n_params)
        owners : torch.Tensor of shape (M,)
            Whose other buffers (those not recomputed) to use.
        rows : torch.Tensor of shape (n_rows, n_features)
            Training rows, on the device.
        batch_size : int or None
            Rows per batch; None passes ``rows`` in one batch.

        Returns
        -------
        list of torch.Tensor
            Every buffer, with a leading axis of length ``M``.
        """
        buffers = self.buffers_of(owners)
        if not self._refresh_values:
            return buffers
        batch = len(rows) if batch_size is None else min(batch_size, len(rows))
        block = self._block(batch, rows, _REFRESH_FLOATS)
        for i, value in self._refresh_values.items():
            buffers[i] = torch.full_like(buffers[i], value)
        batches = batch_bounds(len(rows), batch_size)
        with torch.no_grad():
            for start in range(0, len(theta), block):
                params = self.unflatten(theta[start : start + block])
                views = [b[start : start + block] for b in buffers]
                for low, high in batches:
                    self._evaluator(params, views, rows[low:high], mode="refresh")
        return buffers

    def __call__(
        self, theta: torch.Tensor, X: torch.Tensor, buffers: list[torch.Tensor]
    ) -> torch.Tensor:
        """The network in eval mode at every weight vector and row.

        Parameters
        ----------
        theta : torch.Tensor of shape (M, n_params)
        X : torch.Tensor of shape (N, n_features)
        buffers : list of torch.Tensor
            One row per weight vector (:meth:`buffers_of`,
            :meth:`refreshed_buffers`).

        Returns
        -------
        torch.Tensor of shape (M, N, n_outputs)
        """
        n_weights, n_rows = theta.shape[0], X.shape[0]
        theta = theta.to(X.dtype)
        block = self._block(n_rows, X) if X.device.type == "cpu" else n_weights
        with torch.no_grad():
            if block >= n_weights:
                out = self._evaluator(self.unflatten(theta), buffers, X, mode="eval")
                return _as_particle_output(out, n_rows)
            # On a CPU, thousands of weight vectors at once stream every layer
            # through main memory; blocks that fit a core's cache are faster.
            pieces = [
                _as_particle_output(
                    self._evaluator(
                        self.unflatten(theta[start : start + block]),
                        [b[start : start + block] for b in buffers],
                        X,
                        mode="eval",
                    ),
                    n_rows,
                )
                for start in range(0, n_weights, block)
            ]
        return torch.cat(pieces)

    def widest(self, X: torch.Tensor) -> int:
        """Most floats any layer produces for one row of ``X`` (a guess)."""
        if self._widest is None:
            self._widest = _widest_layer(self._template, X[:1].cpu())
        return self._widest

    def _block(self, n_rows: int, X: torch.Tensor, floats: int = _BLOCK_FLOATS) -> int:
        """Weight vectors per block whose widest layer, for ``n_rows`` rows of
        ``X``, holds at most ``floats`` floats."""
        return max(1, floats // max(1, n_rows * self.widest(X)))


def _widest_layer(module: nn.Module, row: torch.Tensor) -> int:
    """Most floats any layer of ``module`` produces for one row (a guess)."""
    widest = [row.numel()]

    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            widest.append(output.numel())

    try:
        probe = copy.deepcopy(module).eval()
        handles = [m.register_forward_hook(hook) for m in probe.modules()]
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                probe(row)
        finally:
            for handle in handles:
                handle.remove()
    except Exception:  # noqa: BLE001 - a guess is enough for a block size
        widest += [p.shape[0] for p in module.parameters() if p.ndim]
    return max(widest)


def batch_bounds(n_rows: int, batch_size: int | None) -> list[tuple[int, int]]:
    """Batches of ``batch_size`` rows in order; a last batch of one row is merged.

    A batch of one row has no variance, which ``BatchNorm`` cannot normalise
    by: it joins the batch before it.
    """
    size = n_rows if batch_size is None else max(1, int(batch_size))
    bounds = [(low, min(n_rows, low + size)) for low in range(0, n_rows, size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n_rows)]
    return bounds


def training_batches(
    n_rows: int, batch_size: int | None, drop_last: bool, merge_single_row: bool
) -> list[tuple[int, int]]:
    """The ``(start, stop)`` rows of each training batch of an epoch.

    One batch when ``batch_size`` is None or covers the data; a last batch
    of one row joins the one before with ``merge_single_row``; a last,
    smaller batch is skipped with ``drop_last``.
    """
    if batch_size is None or batch_size >= n_rows:
        return [(0, n_rows)]
    if merge_single_row:
        bounds = batch_bounds(n_rows, batch_size)
    else:
        bounds = [
            (low, min(n_rows, low + batch_size)) for low in range(0, n_rows, batch_size)
        ]
    if drop_last and bounds[-1][1] - bounds[-1][0] < batch_size:
        bounds = bounds[:-1]
    return bounds


def _agrees_with_modules(
    stack: ParticleStack, modules: Sequence[nn.Module], probe: torch.Tensor
) -> bool:
    """Whether the stack's eval-mode outputs are those of the modules themselves."""
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        expected = torch.stack(
            [
                _as_particle_output(copy.deepcopy(m).eval()(probe)[None], len(probe))[0]
                for m in modules
            ]
        )
        got = stack.functional_forward(
            stack.flat_weights(), probe, torch.arange(stack.n_particles)
        )
    return got.shape == expected.shape and torch.allclose(
        got, expected, rtol=1e-4, atol=1e-5
    )


def _updates_buffers(module: nn.Module, probe: torch.Tensor) -> bool:
    """Whether a training-mode call of ``module`` changes any of its buffers."""
    if not any(True for _ in module.buffers()):
        return False
    copy_ = copy.deepcopy(module).train()
    before = [b.clone() for b in copy_.buffers()]
    with torch.no_grad():
        copy_(probe)
    return any(
        not torch.equal(old, new)
        for old, new in zip(before, copy_.buffers(), strict=True)
    )


def build_stack(modules: Sequence[nn.Module], probe: torch.Tensor) -> ParticleStack:
    """Stack the copies, falling back to slower evaluation where needed.

    The batched rewrite is checked against the modules themselves on the
    probe rows; where it cannot be made or disagrees, :func:`torch.func.vmap`
    is tried, and where that fails or would lose buffer updates, the copies
    run one after another, with a warning.

    Parameters
    ----------
    modules : sequence of torch.nn.Module
        Initialised copies, one per particle.
    probe : torch.Tensor of shape (n, n_features)
        A few training rows to try the batched evaluation on.

    Returns
    -------
    ParticleStack
    """
    # The probe may draw dropout masks: from a forked, not the caller's, state.
    cuda = [probe.device.index or 0] if probe.device.type == "cuda" else []
    try:
        stack = ParticleStack(modules, mode="lowered")
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            copy.deepcopy(stack).train()(probe)
        if _agrees_with_modules(stack, modules, probe):
            return stack
        reason = "its batched rewrite disagrees with the network"
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot batch"
        reason = f"{type(exc).__name__}: {exc}"
    stack = ParticleStack(modules, mode="vmap")
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            copy.deepcopy(stack).train()(probe)
            if _updates_buffers(modules[0], probe):
                # vmap runs such a module, but its buffer updates land in a
                # copy and are lost; only copy-by-copy evaluation keeps them.
                raise RuntimeError("it updates its buffers in training mode")
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot batch"
        message = (
            f"{type(modules[0]).__name__} cannot be batched over particles "
            f"({reason}; torch.func.vmap: {type(exc).__name__}: {exc}); its "
            "particles are trained one after another, which is correct but slower."
        )
        stack = ParticleStack(modules, mode="loop")
    else:
        message = (
            f"{type(modules[0]).__name__} could not be rewritten into batched "
            f"operations ({reason}); it is batched with torch.func.vmap "
            "instead, which is correct but slower."
        )
    warnings.warn(message, UserWarning, stacklevel=3)
    return stack


def elementwise_loss(criterion: nn.Module):
    """The criterion with ``reduction="none"``, where its values are elementwise.

    torch's elementwise losses become plain functions (the loss runs at every
    step, where a module's call machinery costs as much as the arithmetic); a
    criterion that declares ``elementwise = True`` (its ``reduction="none"``
    values keep the leading axes of its input, as
    :class:`~sklearn_swag._posterior.noise.GaussianNLL` does) becomes a copy with
    ``reduction="none"``. Other criteria give None.
    """
    if getattr(criterion, "reduction", None) not in ("mean", "sum"):
        return None
    if getattr(criterion, "elementwise", False):
        copy_ = copy.deepcopy(criterion)
        copy_.reduction = "none"
        return copy_
    kind = type(criterion)
    if kind is nn.CrossEntropyLoss and criterion.weight is None:
        return partial(_cross_entropy, label_smoothing=criterion.label_smoothing)
    if kind is nn.MSELoss:
        return partial(F.mse_loss, reduction="none")
    if kind is nn.L1Loss:
        return partial(F.l1_loss, reduction="none")
    if kind is nn.SmoothL1Loss:
        return partial(F.smooth_l1_loss, reduction="none", beta=criterion.beta)
    if kind is nn.HuberLoss:
        return partial(F.huber_loss, reduction="none", delta=criterion.delta)
    return None


def _cross_entropy(
    logits: torch.Tensor, y_true: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy of every row, as ``nn.CrossEntropyLoss`` computes it.

    ``logits`` of shape (..., n_classes), ``y_true`` of shape (..., 1) holding
    class indices (as floats, as the targets travel); values of shape (..., 1).
    """
    log_p = torch.log_softmax(logits, dim=-1)
    values = -log_p.gather(-1, y_true.long())
    if label_smoothing:
        smooth = -log_p.mean(dim=-1, keepdim=True)
        values = (1.0 - label_smoothing) * values + label_smoothing * smooth
    return values


class ParticleLoss(nn.Module):
    """Sum of the per-particle losses of a stacked prediction.

    Parameters
    ----------
    criterion : torch.nn.Module
        The loss of one network, ``criterion(y_pred, y_true)`` with
        ``y_pred`` of shape ``(N, n_outputs)``, returning a scalar.
    weighted : bool, default=False
        Whether the last column of the targets holds row weights: each
        particle's loss is then the weighted mean (or sum) of its rows'
        values, as if every row were repeated as often as its weight says.
        Needs a criterion with elementwise values (:func:`elementwise_loss`).
    class_targets : bool, default=False
        Whether the targets are class indices (one column, as floats): a
        criterion without elementwise values then gets them as a long tensor
        of shape ``(N,)``, as ``nn.CrossEntropyLoss`` and ``nn.NLLLoss`` want.

    Attributes
    ----------
    last_losses : torch.Tensor of shape (P,)
        The per-particle losses of the latest batch.
    nonfinite : torch.Tensor of shape (P,) or None
        True for every particle whose loss was ever NaN or infinite.
    """

    def __init__(
        self, criterion: nn.Module, weighted: bool = False, class_targets: bool = False
    ) -> None:
        super().__init__()
        self.criterion = criterion
        self.weighted = weighted
        self.class_targets = class_targets
        self.last_losses: torch.Tensor | None = None
        self._finite: torch.Tensor | None = None
        self._batched: bool | None = None
        self._elementwise = elementwise_loss(criterion)
        if weighted and self._elementwise is None:
            raise ValueError(
                f"Row weights need a criterion with elementwise values; "
                f"{type(criterion).__name__} has none (see elementwise_loss)."
            )

    def train(self, mode: bool = True) -> ParticleLoss:
        if self.training == mode:
            return self  # skorch asks at every step; walking the tree costs
        return super().train(mode)

    @property
    def nonfinite(self) -> torch.Tensor | None:
        return None if self._finite is None else ~self._finite

    def new_particles(self) -> None:
        """Forget the per-particle state: the next batch is of other particles."""
        self._finite = None
        self.last_losses = None

    def per_particle(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Loss of each particle, shape ``(P,)``."""
        if y_true.dtype != y_pred.dtype:
            y_true = y_true.to(y_pred.dtype)
        if y_true.ndim == y_pred.ndim - 1:
            y_true = y_true.expand(y_pred.shape[0], *y_true.shape)
        if self.weighted:
            return self._weighted(y_pred, y_true[..., :-1], y_true[..., -1:])
        if self._elementwise is not None:
            # One call for every particle: mean (or sum) per particle afterwards.
            values = self._elementwise(y_pred, y_true)
            dims = tuple(range(1, values.ndim))
            if self.criterion.reduction == "mean":
                return values.mean(dim=dims)
            return values.sum(dim=dims)
        if self.class_targets:
            y_true = y_true[..., 0].long()
        if self._batched is None or self._batched:
            try:
                losses = vmap(self.criterion)(y_pred, y_true)
                self._batched = True
                return losses
            except Exception:  # noqa: BLE001 - fall back to a plain loop
                if self._batched:
                    raise
                self._batched = False
        return torch.stack(
            [self.criterion(p, t) for p, t in zip(y_pred, y_true, strict=True)]
        )

    def _weighted(
        self, y_pred: torch.Tensor, y_true: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Weighted loss of each particle; ``weights`` is ``(P, N, 1)``."""
        values = self._elementwise(y_pred, y_true)  # (P, N, k)
        dims = tuple(range(1, values.ndim))
        total = (values * weights).sum(dim=dims)
        if self.criterion.reduction == "sum":
            return total
        return total / (weights.sum(dim=(1, 2)) * values.shape[-1])

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        losses = self.per_particle(y_pred, y_true)
        detached = losses.detach()
        finite = torch.isfinite(detached)
        if self._finite is None:
            self._finite = finite
        else:
            self._finite.logical_and_(finite)
        self.last_losses = detached
        return losses.sum()


class ParticleBatches:
    """Mini-batches for a particle stack, each particle shuffled on its own.

    It takes the place of a ``DataLoader`` in the skorch net that trains a
    stack: the data stay as two tensors on the training device and a batch is
    an index into them, so no rows are collated one by one.

    Parameters
    ----------
    dataset : skorch.dataset.Dataset
        Holds the tensors ``X`` of shape (n, n_features) and ``y`` of shape
        (n, n_outputs).
    batch_size : int
        Rows per batch; the whole data set when it is at least ``n``.
    generators : list of torch.Generator
        One per particle; drives that particle's shuffling only.
    shuffle : bool, default=True
        Whether each particle visits the rows in its own random order every
        epoch.
    drop_last : bool, default=False
        Whether to skip a last, smaller batch.
    merge_single_row : bool, default=False
        Whether a last batch of one row joins the batch before it (for
        ``BatchNorm``, which cannot normalise a single row).
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        generators: Sequence[torch.Generator],
        shuffle: bool = True,
        drop_last: bool = False,
        merge_single_row: bool = False,
    ) -> None:
        self.X = dataset.X
        self.y = dataset.y
        self.batch_size = int(batch_size)
        self.generators = generators
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.merge_single_row = merge_single_row

    def _bounds(self) -> list[tuple[int, int]]:
        return training_batches(
            len(self.X), self.batch_size, self.drop_last, self.merge_single_row
        )

    def __len__(self) -> int:
        return len(self._bounds())

    def __iter__(self):
        n = len(self.X)
        if self.batch_size >= n:
            yield self.X, self.y
            return
        if self.shuffle:
            order = torch.stack(
                [torch.randperm(n, generator=g) for g in self.generators]
            ).to(self.X.device)
        else:
            order = torch.arange(n, device=self.X.device).expand(
                len(self.generators), n
            )
        for low, high in self._bounds():
            idx = order[:, low:high]
            yield self.X[idx], self.y[idx]
