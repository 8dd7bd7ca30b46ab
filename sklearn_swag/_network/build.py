"""The evaluation of a particle stack, chosen with a fallback.

:func:`build_stack` takes the batched rewrite where it agrees with the network
itself, :func:`torch.func.vmap` where the rewrite refuses an operation, and
evaluation copy by copy where vmap refuses one or would lose buffer updates.
Only those refusals lead to a fallback: any other failure is raised, and in
strict mode (:func:`~.lowering.strict`, which the test suite turns on) so is
a rewrite that fails unforeseen or disagrees with the network.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from .evaluators import _as_particle_output
from .lowering import LoweringError, UnforeseenLoweringError, strict
from .stack import ParticleStack

#: What :func:`torch.func.vmap` says when it cannot batch an operation
#: (data-dependent control flow, ``.item()``, an in-place operation on an
#: unbatched tensor, an operation without a batching rule).
_VMAP_REFUSES = re.compile(r"vmap|batching rule", re.IGNORECASE)


def _outputs(modules: Sequence[nn.Module], probe: torch.Tensor) -> torch.Tensor:
    """The modules' own eval-mode outputs on ``probe``, stacked ``(P, N, o)``.

    A failure here is the network's own (it cannot run on the data), so it is
    raised as it is, before any evaluation is tried.
    """
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        return torch.stack(
            [
                _as_particle_output(copy.deepcopy(m).eval()(probe)[None], len(probe))[0]
                for m in modules
            ]
        )


def _agrees(stack: ParticleStack, expected: torch.Tensor, probe: torch.Tensor) -> bool:
    """Whether the stack's eval-mode outputs are the modules' own ``expected``."""
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
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
    probe rows; where it refuses an operation (:class:`LoweringError`) or
    disagrees, :func:`torch.func.vmap` is tried, and where vmap refuses one or
    would lose buffer updates, the copies run one after another, with a
    warning. Any other failure is raised.

    Parameters
    ----------
    modules : sequence of torch.nn.Module
        Initialised copies, one per particle.
    probe : torch.Tensor of shape (n, n_features) or (n, ...)
        A few training rows to try the batched evaluation on; the stack
        takes samples of their shape.

    Returns
    -------
    ParticleStack

    Raises
    ------
    RuntimeError
        In strict mode (``SKLEARN_SWAG_STRICT=1``), where the rewrite fails
        in a way it does not foresee or disagrees with the network.
    """
    # The probe may draw dropout masks: from a forked, not the caller's, state.
    cuda = [probe.device.index or 0] if probe.device.type == "cuda" else []
    expected = _outputs(modules, probe)
    cause = None
    try:
        stack = ParticleStack(modules, mode="lowered", sample_ndim=probe.ndim - 1)
        # A training-mode call, on a copy where it would update buffers; a
        # stack without buffers keeps nothing of it but its compiled graph.
        tried = copy.deepcopy(stack) if stack.stacked_buffers() else stack
        training = tried.training
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            tried.train()(probe)
        tried.train(training)
        if _agrees(stack, expected, probe):
            return stack
        reason, foreseen = "its batched rewrite disagrees with the network", False
    except LoweringError as exc:
        reason, cause = str(exc), exc
        foreseen = not isinstance(exc, UnforeseenLoweringError)
    if strict() and not foreseen:
        raise RuntimeError(
            "Strict mode (SKLEARN_SWAG_STRICT): the batched rewrite of "
            f"{type(modules[0]).__name__} failed for a reason other than an "
            f"unsupported operation: {reason}"
        ) from cause
    return _fallback(modules, probe, cuda, reason)


def _fallback(
    modules: Sequence[nn.Module], probe: torch.Tensor, cuda: list, reason: str
) -> ParticleStack:
    """A stack under :func:`torch.func.vmap`, or copy by copy where vmap cannot."""
    name = type(modules[0]).__name__
    stack = ParticleStack(modules, mode="vmap", sample_ndim=probe.ndim - 1)
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            copy.deepcopy(stack).train()(probe)
    except RuntimeError as exc:
        if not _VMAP_REFUSES.search(str(exc)):
            raise  # the network's own failure in training mode
        refusal = f"torch.func.vmap: {type(exc).__name__}: {exc}"
    else:
        # vmap runs such a module, but its buffer updates land in a copy and
        # are lost; only copy-by-copy evaluation keeps them.
        refusal = _updates_buffers(modules[0], probe) and (
            "torch.func.vmap would lose its buffer updates in training mode"
        )
    if refusal:
        message = (
            f"{name} cannot be batched over particles ({reason}; {refusal}); its "
            "particles are trained one after another, which is correct but slower."
        )
        stack = ParticleStack(modules, mode="loop", sample_ndim=probe.ndim - 1)
    else:
        message = (
            f"{name} could not be rewritten into batched operations ({reason}); "
            "it is batched with torch.func.vmap instead, which is correct but "
            "slower."
        )
    warnings.warn(message, UserWarning, stacklevel=4)
    return stack
