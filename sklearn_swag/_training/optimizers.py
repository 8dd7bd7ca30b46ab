"""One optimizer for a stack of particles.

The particles of a group train as one stack: every parameter holds all of
them along a leading axis, and one optimizer updates the stack. That is right
only for an optimizer that updates every element from its own gradients
(:func:`check_optimizer_decouples`); such an optimizer's state can also be cut
along the particle axis (:func:`_sliced_optimizer_state`), and where torch has
a fused kernel for it, the group asks for it (:func:`_fast_optimizer_kwargs`).
"""

from __future__ import annotations

import torch
from torch import nn

from .routed import _build_routed

#: Optimizers known to update every element from its own gradient history.
_ELEMENTWISE_OPTIMIZERS = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adamax,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.RMSprop,
    torch.optim.Adagrad,
    torch.optim.Adadelta,
    torch.optim.Rprop,
    torch.optim.ASGD,
)


def check_optimizer_decouples(
    optimizer, kwargs: dict, lr: float, module: nn.Module
) -> None:
    """Fail before training if ``optimizer`` would couple the particles.

    The particles of a group are trained as one stack: every parameter holds
    all of them along a leading axis, and one optimizer updates the stack. An
    optimizer that looks at more than one element at a time (LBFGS's line
    search, a factored second moment, a per-tensor trust ratio) would let one
    particle's gradients change another's update. Two steps are taken on a
    stack of two copies of every parameter, once with and once without a
    change to the second copy's gradients; the first copy must come out the
    same. Optimizers known to update each element from its own gradients
    (SGD, Adam, RMSprop, ...) are only built, which checks their routed
    parameters.

    Raises
    ------
    ValueError
        If the optimizer cannot step without a closure, or the first copy's
        update depends on the second copy's gradients.
    """
    name = getattr(optimizer, "__name__", repr(optimizer))
    if isinstance(optimizer, type) and issubclass(optimizer, _ELEMENTWISE_OPTIMIZERS):
        # Known to decouple and to step without a closure: building it checks
        # the routed parameters (a wrong one fails here, naming it).
        params = [nn.Parameter(torch.zeros(2, *p.shape)) for p in module.parameters()]
        _build_routed(optimizer, "optimizer", kwargs, params, lr=lr)
        return
    shapes = [tuple(p.shape) for p in module.parameters()]
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn((2, *shape), generator=generator) for shape in shapes]
    grads = [
        [torch.randn(p.shape, generator=generator) for p in start] for _ in range(2)
    ]
    other = [[g.clone() for g in step] for step in grads]
    for step in other:
        for g in step:
            g[1] = 3.0 * g[1] + 1.0
    outcomes = []
    for schedule in (grads, other):
        params = [nn.Parameter(p.clone()) for p in start]
        # A wrong routed parameter fails here, with a message naming it.
        opt = _build_routed(optimizer, "optimizer", kwargs, params, lr=lr)
        try:
            for step in schedule:
                for p, g in zip(params, step, strict=True):
                    p.grad = g.clone()
                opt.step()
        except Exception as exc:  # noqa: BLE001 - e.g. LBFGS wants a closure
            raise ValueError(
                f"optimizer={name} cannot train the particles as a stack "
                f"({type(exc).__name__}: {exc}). Use an optimizer that updates "
                "every weight from its own gradients, such as Adam, AdamW, SGD "
                "or RMSprop."
            ) from exc
        outcomes.append([p.detach()[0] for p in params])
    for a, b in zip(*outcomes, strict=True):
        if not torch.allclose(a, b, rtol=1e-6, atol=1e-9):
            raise ValueError(
                f"optimizer={name} couples the particles: one particle's update "
                "depends on the gradients of another in its group, because the "
                "particles are trained as one stacked set of weights. Use an "
                "optimizer that updates every weight from its own gradients, "
                "such as Adam, AdamW, SGD or RMSprop."
            )


#: Optimizers with a fused implementation: one kernel updates every tensor.
_FUSABLE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.Adagrad)


def _fast_optimizer_kwargs(optimizer, kwargs: dict, device: torch.device) -> dict:
    """Ask for the fused implementation, unless the user chose one.

    The fused kernels compute the same update as the default loop over
    tensors, in one pass; they exist for CPU and CUDA tensors.
    """
    chosen = {"fused", "foreach", "differentiable", "capturable"} & set(kwargs)
    if optimizer in _FUSABLE and not chosen and device.type in ("cpu", "cuda"):
        return {**kwargs, "fused": True}
    return kwargs


def _sliced_optimizer_state(optimizer: torch.optim.Optimizer, keep: torch.Tensor):
    """The optimizer's state dict with only the particles at ``keep``.

    Every state tensor shaped like its parameter is cut along the particle
    axis; scalars (Adam's step count, shared by the particles) are kept.
    """
    state = optimizer.state_dict()
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def cut(value, shape):
        if torch.is_tensor(value) and value.ndim and value.shape == shape:
            return value[keep.to(value.device)]
        return value

    # New dicts: the state dict shares its entries with the optimizer's state.
    state["state"] = {
        index: {key: cut(value, params[index].shape) for key, value in entry.items()}
        for index, entry in state["state"].items()
    }
    return state
