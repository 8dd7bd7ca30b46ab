"""The optimizer's step as one call of torch's fused kernel.

The group asks torch for the fused implementation of Adam, AdamW and SGD
(``_fast_optimizer_kwargs``): one kernel updates every tensor. Around that
kernel, ``optimizer.step()`` runs Python of its own (its hooks, the profiler's
record, grouping the tensors by device and dtype, collecting the state): for
the seed's 16 particles as one flat tensor, 31-51 us a step against 12-22 us
here, of which the kernels take 9-13 (measured alone; right after a backward
pass, where it runs in training, every figure is about three times larger). On
a tiny network that is as much as a layer's forward pass. :func:`fused_step`
calls the same kernel with the same tensors and hyperparameters itself, read
afresh at every step (a learning-rate schedule changes them), so the update
is bit for bit the one ``optimizer.step()`` makes.

It steps only what it can step exactly that way; for anything else
(:func:`fused_step` returns False) the caller calls
``optimizer.step()``: the first step, which creates the state; an optimizer
with step hooks, a gradient scaler's ``grad_scale``, a ``step`` replaced on
the instance, a learning rate held in a tensor, parameters on several devices
or of several dtypes, or a torch whose parameter groups lack a setting read
here (Adam's ``decoupled_weight_decay``, absent from torch 2.4's).
"""

from __future__ import annotations

import torch
from torch.optim import optimizer as _optimizer


def _adam_group(opt: torch.optim.Optimizer, group: dict, params: list) -> tuple:
    """The arguments of ``torch._fused_adam_`` (or ``_adamw_``) for one group."""
    if not all(isinstance(b, float) for b in group["betas"]):
        return None
    entries = [opt.state.get(p, {}) for p in params]
    try:
        steps = [s["step"] for s in entries]
        exp_avgs = [s["exp_avg"] for s in entries]
        exp_avg_sqs = [s["exp_avg_sq"] for s in entries]
        maxima = [s["max_exp_avg_sq"] for s in entries] if group["amsgrad"] else []
    except KeyError:  # no step yet: optimizer.step() creates the state
        return None
    name = "_fused_adamw_" if group["decoupled_weight_decay"] else "_fused_adam_"
    kernel = getattr(torch, name, None)
    if kernel is None:  # a torch without it
        return None
    beta1, beta2 = group["betas"]
    options = dict(
        amsgrad=group["amsgrad"],
        lr=group["lr"],
        beta1=beta1,
        beta2=beta2,
        weight_decay=group["weight_decay"],
        eps=group["eps"],
        maximize=group["maximize"],
        grad_scale=None,
        found_inf=None,
    )
    return steps, kernel, (exp_avgs, exp_avg_sqs, maxima, steps), options


def _sgd_group(opt: torch.optim.Optimizer, group: dict, params: list) -> tuple:
    """The arguments of ``torch._fused_sgd_`` for one group."""
    buffers = []
    if group["momentum"] != 0:
        buffers = [opt.state.get(p, {}).get("momentum_buffer") for p in params]
        if any(b is None for b in buffers):  # the first step makes them
            return None
    options = dict(
        weight_decay=group["weight_decay"],
        momentum=group["momentum"],
        lr=group["lr"],
        dampening=group["dampening"],
        nesterov=group["nesterov"],
        maximize=group["maximize"],
        is_first_step=False,
        grad_scale=None,
        found_inf=None,
    )
    kernel = getattr(torch, "_fused_sgd_", None)
    return None if kernel is None else ([], kernel, (buffers,), options)


#: The optimizers stepped here, exactly these classes (a subclass may step
#: otherwise), each with the group keys it needs and its arguments' builder.
_KERNELS = {
    torch.optim.Adam: (("amsgrad", "decoupled_weight_decay"), _adam_group),
    torch.optim.AdamW: (("amsgrad", "decoupled_weight_decay"), _adam_group),
    torch.optim.SGD: (("momentum", "nesterov"), _sgd_group),
}


def _stepped_by_torch(opt: torch.optim.Optimizer) -> bool:
    """Whether something but the kernel must see this step: hooks, a gradient
    scaler, or a ``step`` replaced on the instance (a learning-rate
    scheduler's wrapper, which only notes the call, excepted)."""
    replaced = vars(opt).get("step")
    return bool(
        opt._optimizer_step_pre_hooks
        or opt._optimizer_step_post_hooks
        or _optimizer._global_optimizer_pre_hooks
        or _optimizer._global_optimizer_post_hooks
        or getattr(opt, "grad_scale", None) is not None
        or getattr(opt, "found_inf", None) is not None
        or (
            replaced is not None
            and not getattr(replaced, "_wrapped_by_lr_sched", False)
        )
    )


def _plain(group: dict, keys: tuple) -> bool:
    """Whether a parameter group steps by the fused kernel alone, with a
    learning rate given as a number."""
    return (
        bool(group.get("fused"))
        and not group.get("differentiable")
        and not group.get("capturable")
        and not isinstance(group["lr"], torch.Tensor)
        and all([key in group for key in keys])
    )


def fused_step(optimizer: torch.optim.Optimizer) -> bool:
    """Step a fused Adam, AdamW or SGD optimizer by calling its kernel.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Any optimizer.

    Returns
    -------
    bool
        Whether the step was taken: False, with nothing changed, where
        ``optimizer.step()`` must take it (see the module's docstring).

    Examples
    --------
    >>> import torch
    >>> from sklearn_swag._training.fused_step import fused_step
    >>> p = torch.nn.Parameter(torch.ones(4, 3))
    >>> opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, fused=True)
    >>> p.grad = torch.ones(4, 3)
    >>> fused_step(opt)  # the first step makes the state: optimizer.step() must
    False
    >>> opt.step()
    >>> fused_step(opt)
    True
    """
    entry = _KERNELS.get(type(optimizer))
    if entry is None or _stepped_by_torch(optimizer):
        return False
    keys, group_arguments = entry
    calls, place = [], None
    for group in optimizer.param_groups:
        if not _plain(group, keys):
            return False
        params, grads = [], []
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            if grad.is_sparse or place not in (None, (p.device, p.dtype)):
                return False  # torch calls the kernel per device and dtype
            place = (p.device, p.dtype)
            params.append(p)
            grads.append(grad)
        if params:
            arguments = group_arguments(optimizer, group, params)
            if arguments is None:
                return False
            calls.append((params, grads, *arguments))
    with torch.no_grad():
        for params, grads, steps, kernel, state, options in calls:
            if steps:
                torch._foreach_add_(steps, 1)
            kernel(params, grads, *state, **options)
    if "step" in vars(optimizer):  # as the scheduler's wrapper notes a step
        optimizer._opt_called = True
    return True
