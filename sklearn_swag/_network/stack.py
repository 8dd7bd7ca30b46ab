"""A group of particles trained as one computation.

:class:`ParticleStack` holds ``P`` independent copies of one network, their
weights and buffers stacked along a leading particle axis, and evaluates all of
them in one call. With :class:`~sklearn_swag._network.losses.ParticleLoss`,
which sums the copies' losses so that the gradient each copy receives is the
gradient of its own loss alone, and
:class:`~sklearn_swag._training.batches.ParticleBatches`, which feeds each copy
its own shuffled mini-batches, training the stack with an elementwise optimizer
(SGD, Adam, AdamW, RMSprop, ...) is exactly training ``P`` networks one after
another, only faster.

How the copies are evaluated is chosen once per stack, as one of the
evaluators of :mod:`sklearn_swag._network.evaluators`
(:func:`~sklearn_swag._network.build.build_stack` falls back from the fastest
to the slowest); prediction at arbitrary weights
(:class:`~sklearn_swag._network.inference.StackInference`) never changes the
fitted stack.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import stack_module_state

from .._torch_compat import BatchNormBase
from .evaluators import _as_particle_output, _make_evaluator
from .inference import StackInference

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
    "sample_ndim",
)


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
    sample_ndim : int, default=1
        Axes of one sample: 1 for rows of features, 3 for ``(C, H, W)``
        images. Inputs of ``1 + sample_ndim`` axes are shared by every copy;
        one more axis in front gives each copy its own rows.

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

    #: Axes of one sample: rows of features unless a stack is told otherwise.
    sample_ndim: int = 1

    def __init__(
        self, modules: Sequence[nn.Module], mode: str = "auto", sample_ndim: int = 1
    ) -> None:
        super().__init__()
        self.sample_ndim = int(sample_ndim)
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
        X : torch.Tensor of shape (N, ...) or (P, N, ...)
            Rows shared by all copies, or each copy's own rows; the
            trailing ``sample_ndim`` axes are one sample.

        Returns
        -------
        torch.Tensor of shape (P, N, n_outputs)
        """
        shared = X.ndim == self.sample_ndim + 1
        out = self._evaluator(
            self._weight_list(),
            self.stacked_buffers(),
            X,
            mode="train" if self.training else "eval",
            shared=shared,
            generators=self.dropout_generators,
        )
        return _as_particle_output(out, X.shape[0 if shared else 1])

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
        are shared, so nothing is traced again.

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
        sample_ndim: int = 1,
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
        sample_ndim : int, default=1
            Axes of one sample (see :class:`ParticleStack`).

        Returns
        -------
        ParticleStack
            On the CPU, in training mode.

        Raises
        ------
        ValueError
            If the values do not fit the network, checked before the stack
            is built (:func:`check_stacked_values`).
        """
        weights = [torch.as_tensor(w) for w in weights]
        buffers = [torch.as_tensor(b) for b in buffers]
        check_stacked_values(template, weights, buffers)
        stack = cls([template], mode=mode, sample_ndim=sample_ndim)
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
                sample_ndim=first.sample_ndim,
            )
        return joined.train(first.training)


def check_stacked_values(
    template: nn.Module, weights: Sequence, buffers: Sequence
) -> None:
    """Fail unless ``weights`` and ``buffers`` are stacked values of ``template``.

    Only the names and shapes of ``template``'s parameters and buffers are
    read, so it may live on the ``meta`` device: a network whose size is
    still unchecked is then never allocated.

    Parameters
    ----------
    template : torch.nn.Module
        One network of the structure the values should belong to.
    weights, buffers : sequence of array-like
        Stacked values, each of shape ``(n_particles, *shape)``, in the order
        of ``named_parameters()`` and ``named_buffers()``.

    Raises
    ------
    ValueError
        If the numbers of values, their shapes or their numbers of particles
        differ from what the network needs.
    """
    params = [(n, p) for n, p in template.named_parameters()]
    held = [(n, b) for n, b in template.named_buffers()]
    if len(weights) != len(params) or len(buffers) != len(held):
        raise ValueError(
            f"The network has {len(params)} parameters and {len(held)} "
            f"buffers; got {len(weights)} and {len(buffers)} values."
        )
    if not params and not held:
        return
    first = weights[0] if len(weights) else buffers[0]
    n_particles = tuple(first.shape)[:1]
    values = [*weights, *buffers]
    for value, (what, needed) in zip(values, [*params, *held], strict=True):
        shape = tuple(needed.shape)
        if tuple(value.shape) != (*n_particles, *shape):
            raise ValueError(
                f"The values of {what!r} have shape {tuple(value.shape)}, "
                f"but the network needs (n_particles, *{shape})."
            )
        if value.dtype != needed.dtype:
            raise ValueError(
                f"The values of {what!r} are {value.dtype}, but the network "
                f"holds {needed.dtype}."
            )


def uses_batch_norm(module: nn.Module) -> bool:
    """Whether ``module`` has a ``BatchNorm`` layer (with running statistics or not)."""
    return any(isinstance(m, BatchNormBase) for m in module.modules())


def _refresh_values(module: nn.Module, buffer_names: list[str]) -> dict[int, float]:
    """Index and starting value of every buffer a statistics refresh recomputes."""
    names = {}
    for prefix, sub in module.named_modules():
        if isinstance(sub, BatchNormBase) and sub.track_running_stats:
            for name, value in _BN_BUFFERS.items():
                names[f"{prefix}.{name}" if prefix else name] = value
    return {i: names[n] for i, n in enumerate(buffer_names) if n in names}
