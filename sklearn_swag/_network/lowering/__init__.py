"""Many copies of one network, evaluated as one batched computation.

:func:`lower` traces a network with :mod:`torch.fx` and rewrites every
operation of the trace into its batched counterpart: a value that differs from
copy to copy (a parameter, a buffer, the input when each copy has its own
rows, and everything computed from them) carries a leading particle axis of
length ``M``; a value shared by every copy (a constant, a shape, the input when
it is shared) does not. Which values are batched is decided once, while
lowering, so the compiled function costs about one Python call per operation,
as eager PyTorch does.

A linear layer becomes one batched matrix product, a convolution one grouped
convolution with the particle axis folded into the channels, a ``BatchNorm``
layer normalises every copy with its own statistics. Whatever cannot be
lowered faithfully raises :class:`LoweringError`, so that the caller can fall
back to a slower, general way of evaluating the copies.

Modules: :mod:`.network` (:class:`LoweredNetwork`, :func:`lower`),
:mod:`.tracing` (the trace, which patches nothing shared), :mod:`.driver`
(the walk over the trace), :mod:`.registry` and
:mod:`.rules` (one rule per operation, one module per op family),
:mod:`.kernels` (the batched functions the compiled graphs call) and
:mod:`.values` (what is known about each value).
"""

from .network import LoweredNetwork, lower
from .values import LoweringError, UnforeseenLoweringError, strict

__all__ = [
    "LoweredNetwork",
    "LoweringError",
    "UnforeseenLoweringError",
    "lower",
    "strict",
]
