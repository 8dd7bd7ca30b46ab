"""A group of particles trained as one computation.

:class:`ParticleStack` holds ``P`` independent copies of one network and
evaluates all of them in one batched call; :class:`ParticleLoss` sums the
copies' losses, so that the gradient each copy receives is the gradient of its
own loss alone; :class:`ParticleBatches` feeds each copy its own shuffled
mini-batches. With an elementwise optimizer (SGD, Adam, AdamW, RMSprop, ...)
training the stack is exactly training ``P`` networks one after another, only
faster.

Three ways to evaluate the copies, chosen once per stack:

``"mlp"``
    An ``nn.Sequential`` of ``nn.Linear`` layers and parameter-free
    activations runs as batched matrix products.
``"vmap"``
    Any other module that :func:`torch.func.vmap` can batch runs through
    :func:`torch.func.functional_call`.
``"loop"``
    A module that cannot be batched (in-place buffer updates such as
    ``BatchNorm`` in training mode) runs copy by copy.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

_ELEMENTWISE = (
    nn.ReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
    nn.LeakyReLU,
    nn.Identity,
    nn.Dropout,
)


#: Floats of one hidden layer for a block of weight vectors at inference on a
#: CPU (2 MiB in float32): small enough to stay in a core's cache.
_BLOCK_FLOATS = 2**19


def _is_linear_chain(module: nn.Module) -> bool:
    if not isinstance(module, nn.Sequential) or len(module) == 0:
        return False
    if any(True for _ in module.buffers()):
        return False
    return all(
        (isinstance(layer, nn.Linear) and layer.bias is not None)
        or (isinstance(layer, _ELEMENTWISE) and not any(layer.parameters()))
        for layer in module
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


class ParticleStack(nn.Module):
    """``P`` independent copies of one network, evaluated together.

    Parameters
    ----------
    modules : sequence of torch.nn.Module
        The initialised copies, one per particle, all of the same structure.
    mode : {"auto", "mlp", "vmap", "loop"}, default="auto"
        How to evaluate the copies; "auto" takes "mlp" where the structure
        allows it and "vmap" otherwise. The caller falls back to "loop" where
        "vmap" fails (:func:`build_stack`).

    Attributes
    ----------
    n_particles : int
        Number of copies.
    n_params : int
        Length of one copy's flat weight vector.
    dropout_generators : list of torch.Generator or None
        Set while training in "mlp" mode: each particle's own source of
        dropout masks, so that a particle's masks do not depend on the other
        particles of its group. Other modes draw masks from the global torch
        random state.

    Examples
    --------
    >>> import torch
    >>> from sklearn_swag import MLP, ParticleStack
    >>> nets = [MLP(3, 1, hidden_layer_sizes=(8,)) for _ in range(4)]
    >>> stack = ParticleStack(nets)
    >>> stack.mode, stack.n_particles, stack.n_params
    ('mlp', 4, 41)
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
        if mode == "auto":
            mode = "mlp" if _is_linear_chain(modules[0]) else "vmap"
        self.mode = mode
        self.n_particles = len(modules)
        self.dropout_generators: list[torch.Generator] | None = None
        template = modules[0]
        self._names = [name for name, _ in template.named_parameters()]
        self._shapes = [tuple(p.shape) for p in template.parameters()]
        self._numels = [p.numel() for p in template.parameters()]
        self.n_params = sum(self._numels)
        if mode == "loop":
            self.copies = nn.ModuleList(modules)
            return
        params, buffers = stack_module_state(modules)
        self.weights = nn.ParameterList(
            nn.Parameter(params[name].detach().clone()) for name in self._names
        )
        self._buffer_names = list(buffers)
        for i, name in enumerate(self._buffer_names):
            self.register_buffer(f"_buffer{i}", buffers[name].detach().clone())
        # The structure to call with the stacked weights, kept out of the
        # module tree. A real (CPU) copy rather than a storage-less "meta" one:
        # dask serialises modules tensor by tensor and cannot send meta ones.
        self._skeleton = [copy.deepcopy(template)]

    # -- weights as flat vectors ------------------------------------------------
    def _particle_params(self) -> list[torch.Tensor]:
        """Every parameter with a leading particle axis."""
        if self.mode == "loop":
            return [
                torch.stack([dict(m.named_parameters())[n] for m in self.copies])
                for n in self._names
            ]
        return list(self.weights)

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
                [p.reshape(self.n_particles, -1) for p in self._particle_params()],
                dim=1,
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

    def _buffers_for(self, owners: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            name: getattr(self, f"_buffer{i}")[owners]
            for i, name in enumerate(self._buffer_names)
        }

    # -- evaluation ------------------------------------------------------------------
    def train(self, mode: bool = True) -> ParticleStack:
        if self.training == mode and (
            self.mode == "loop" or self._skeleton[0].training == mode
        ):
            return self  # skorch asks at every step; walking the tree costs
        super().train(mode)
        if self.mode != "loop":
            self._skeleton[0].train(mode)
        return self

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Evaluate every copy.

        Parameters
        ----------
        X : torch.Tensor of shape (N, n_features) or (P, N, n_features)
            Rows shared by all copies, or each copy's own rows.

        Returns
        -------
        torch.Tensor of shape (P, N, n_outputs)
        """
        if self.mode == "loop":
            outs = [m(X if X.ndim == 2 else X[i]) for i, m in enumerate(self.copies)]
            return _as_particle_output(torch.stack(outs), X.shape[-2])
        return self._evaluate(list(self.weights), X)

    def functional_forward(
        self, theta: torch.Tensor, X: torch.Tensor, owners: torch.Tensor
    ) -> torch.Tensor:
        """Evaluate the network at arbitrary flat weight vectors.

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
        params = self.unflatten(theta.to(X.dtype))
        if self.mode != "loop":
            return self._evaluate(params, X, owners)
        outs = []
        for m, owner in enumerate(owners.tolist()):
            copy_ = self.copies[owner]
            values = {name: p[m] for name, p in zip(self._names, params, strict=True)}
            outs.append(functional_call(copy_, values, (X,)))
        return _as_particle_output(torch.stack(outs), X.shape[0])

    def _evaluate(
        self,
        params: list[torch.Tensor],
        X: torch.Tensor,
        owners: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Batched evaluation; ``owners`` (the buffers' particles) default to all."""
        n_rows = X.shape[-2]
        if self.mode == "mlp":
            if X.ndim == 2 and not torch.is_grad_enabled() and not self.training:
                return _as_particle_output(self._mlp_blocked(params, X), n_rows)
            return _as_particle_output(self._mlp_forward(params, X), n_rows)
        if owners is None:
            owners = torch.arange(self.n_particles, device=X.device)
        values = dict(zip(self._names, params, strict=True))
        buffers = self._buffers_for(owners)
        skeleton = self._skeleton[0]

        def one(values_, buffers_, x):
            return functional_call(skeleton, (values_, buffers_), (x,))

        x_dim = 0 if X.ndim == 3 else None
        out = vmap(one, in_dims=(0, 0, x_dim), randomness="different")(
            values, buffers, X
        )
        return _as_particle_output(out, n_rows)

    def _dropout(self, h: torch.Tensor, p: float) -> torch.Tensor:
        """Dropout with each particle's own generator, where the stack has them."""
        generators = self.dropout_generators
        if not self.training or p == 0 or generators is None:
            return nn.functional.dropout(h, p, self.training)
        if h.ndim == 2:
            h = h.expand(len(generators), *h.shape)
        keep = torch.stack(
            [torch.rand(h.shape[1:], generator=g, device=h.device) for g in generators]
        ).ge_(p)
        return h * keep / (1.0 - p)

    def _mlp_forward(
        self,
        params: list[torch.Tensor],
        X: torch.Tensor,
        workspace: tuple[torch.Tensor, torch.Tensor] | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Batched matrix products; ``workspace`` and ``out`` are for inference.

        With ``workspace`` (two flat buffers, each large enough for one hidden
        layer of every weight vector) and ``out`` (the output), the linear
        layers allocate nothing: they write alternately into the two buffers,
        the last one into ``out``.
        """
        h = X
        k = 0
        n_weights = params[0].shape[0]
        for layer in self._skeleton[0]:
            if isinstance(layer, nn.Linear):
                weight, bias = params[k], params[k + 1]
                k += 2
                target = None
                if workspace is not None:
                    shape = (n_weights, X.shape[0], weight.shape[1])
                    if k == len(params):
                        target = out
                    else:
                        target = workspace[k // 2 % 2][: math.prod(shape)].view(shape)
                if h.ndim == 2 and h.shape[1] == 1:
                    # One shared input feature: an outer product, no matmul.
                    h = torch.addcmul(
                        bias.unsqueeze(1),
                        h.unsqueeze(0),
                        weight.transpose(1, 2),
                        out=target,
                    )
                    continue
                if h.ndim == 2:  # rows shared by every particle
                    h = h.expand(n_weights, *h.shape)
                h = torch.baddbmm(
                    bias.unsqueeze(1), h, weight.transpose(1, 2), out=target
                )
            elif isinstance(layer, nn.Dropout):
                h = self._dropout(h, layer.p)
            elif isinstance(layer, nn.ELU) and h is not X:
                # In place on an intermediate result, which autograd allows
                # (ELU's gradient is computed from its output); never on X.
                h = nn.functional.elu(h, layer.alpha, inplace=True)
            elif isinstance(layer, nn.ReLU) and h is not X:
                h = nn.functional.relu(h, inplace=True)
            else:
                h = layer(h)
        if h.ndim == 2:  # a network without any linear layer is not an MLP
            h = h.expand(n_weights, *h.shape)
        if out is not None and h is not out:
            out.copy_(h)
            h = out
        return h

    def _mlp_blocked(self, params: list[torch.Tensor], X: torch.Tensor) -> torch.Tensor:
        """Inference in cache-sized blocks of weight vectors.

        On a CPU, evaluating thousands of weight vectors at once streams every
        hidden layer through main memory; blocks of vectors whose hidden layers
        fit in a core's cache, with buffers reused from block to block, take
        about half the time.
        """
        n_weights, n_rows = params[0].shape[0], X.shape[0]
        widths = [weight.shape[1] for weight in params[0::2]]
        block = max(1, _BLOCK_FLOATS // max(1, n_rows * max(widths)))
        if X.device.type != "cpu" or block >= n_weights:
            return self._mlp_forward(params, X)
        size = block * n_rows * max(widths)
        workspace = (X.new_empty(size), X.new_empty(size))
        out = X.new_empty(n_weights, n_rows, widths[-1])
        for start in range(0, n_weights, block):
            stop = min(n_weights, start + block)
            self._mlp_forward(
                [p[start:stop] for p in params],
                X,
                workspace=workspace,
                out=out[start:stop],
            )
        return out

    # -- moving between devices and stacks -----------------------------------------
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
        if first.mode == "loop":
            return cls([m for s in stacks for m in s.copies], mode="loop")
        joined = cls.__new__(cls)
        nn.Module.__init__(joined)
        for attr in ("mode", "_names", "_shapes", "_numels", "n_params"):
            setattr(joined, attr, getattr(first, attr))
        joined._buffer_names = list(first._buffer_names)
        joined._skeleton = [copy.deepcopy(first._skeleton[0])]  # not shared
        joined.n_particles = sum(s.n_particles for s in stacks)
        joined.dropout_generators = None
        joined.weights = nn.ParameterList(
            nn.Parameter(torch.cat([s.weights[i].detach() for s in stacks]))
            for i in range(len(first._names))
        )
        for i in range(len(first._buffer_names)):
            joined.register_buffer(
                f"_buffer{i}", torch.cat([getattr(s, f"_buffer{i}") for s in stacks])
            )
        return joined.train(first.training)


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
    """Stack the copies, falling back to copy-by-copy evaluation where needed.

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
    stack = ParticleStack(modules)
    if stack.mode == "mlp":
        return stack
    # The probe may draw dropout masks: from a forked, not the caller's, state.
    cuda = [probe.device.index or 0] if probe.device.type == "cuda" else []
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            stack.train()(probe)
            if _updates_buffers(modules[0], probe):
                # vmap runs such a module, but its buffer updates land in a
                # copy and are lost; only copy-by-copy evaluation keeps them.
                raise RuntimeError("it updates its buffers in training mode")
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot batch"
        warnings.warn(
            f"{type(modules[0]).__name__} cannot be batched over particles with "
            f"torch.func.vmap ({type(exc).__name__}: {exc}); its particles are "
            "trained one after another, which is correct but slower.",
            UserWarning,
            stacklevel=3,
        )
        stack = ParticleStack(modules, mode="loop")
    return stack


#: Losses whose ``reduction="none"`` form is elementwise.
_ELEMENTWISE_LOSSES = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss)


def _elementwise_copy(criterion: nn.Module) -> nn.Module | None:
    """The criterion with ``reduction="none"``, where that is elementwise."""
    if type(criterion) not in _ELEMENTWISE_LOSSES:
        return None
    if criterion.reduction not in ("mean", "sum"):
        return None
    elementwise = copy.deepcopy(criterion)
    elementwise.reduction = "none"
    return elementwise


class ParticleLoss(nn.Module):
    """Sum of the per-particle losses of a stacked prediction.

    Parameters
    ----------
    criterion : torch.nn.Module
        The loss of one network, ``criterion(y_pred, y_true)`` with
        ``y_pred`` of shape ``(N, n_outputs)``, returning a scalar.

    Attributes
    ----------
    last_losses : torch.Tensor of shape (P,)
        The per-particle losses of the latest batch.
    nonfinite : torch.Tensor of shape (P,) or None
        True for every particle whose loss was ever NaN or infinite.
    """

    def __init__(self, criterion: nn.Module) -> None:
        super().__init__()
        self.criterion = criterion
        self.last_losses: torch.Tensor | None = None
        self.nonfinite: torch.Tensor | None = None
        self._batched: bool | None = None
        self._elementwise = _elementwise_copy(criterion)

    def per_particle(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Loss of each particle, shape ``(P,)``."""
        y_true = y_true.to(y_pred.dtype)
        if y_true.ndim == 2:
            y_true = y_true.expand(y_pred.shape[0], *y_true.shape)
        if self._elementwise is not None:
            # One call for every particle: mean (or sum) per particle afterwards.
            values = self._elementwise(y_pred, y_true).flatten(1)
            return (
                values.mean(1) if self.criterion.reduction == "mean" else values.sum(1)
            )
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

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        losses = self.per_particle(y_pred, y_true)
        detached = losses.detach()
        bad = ~torch.isfinite(detached)
        self.nonfinite = bad if self.nonfinite is None else self.nonfinite | bad
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
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        generators: Sequence[torch.Generator],
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> None:
        self.X = dataset.X
        self.y = dataset.y
        self.batch_size = int(batch_size)
        self.generators = generators
        self.shuffle = shuffle
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.X)
        if self.batch_size >= n:
            return 1
        full, rest = divmod(n, self.batch_size)
        return full + (0 if self.drop_last or rest == 0 else 1)

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
        for start in range(0, n, self.batch_size):
            idx = order[:, start : start + self.batch_size]
            if self.drop_last and idx.shape[1] < self.batch_size:
                return
            yield self.X[idx], self.y[idx]
