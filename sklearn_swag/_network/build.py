"""The evaluation of a particle stack, chosen with a fallback.

:func:`build_stack` takes the batched rewrite where it agrees with the network
itself, :func:`torch.func.vmap` where the rewrite fails, and evaluation copy by
copy where vmap fails or would lose buffer updates.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from .evaluators import _as_particle_output
from .stack import ParticleStack


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
