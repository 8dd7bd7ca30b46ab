"""Normalisation layers: ``BatchNorm``, ``LayerNorm`` and ``GroupNorm``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import fx, nn

from .. import kernels
from ..registry import module_rule
from ..values import LoweringError, Value

if TYPE_CHECKING:
    from ..driver import Lowerer

#: The ranks of each copy's input that each ``BatchNorm`` accepts.
_BATCH_NORM_RANKS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}


def _node(value: Value | None) -> fx.Node | None:
    return None if value is None else value.node


@module_rule(*_BATCH_NORM_RANKS)
def batch_norm(
    lw: Lowerer, node: fx.Node, mod: nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d
) -> Value:
    """Each copy normalised with its own statistics, updated by the mode."""
    x = lw.tensor(node.args[0], node.target)
    if x.ndim is not None and x.ndim not in _BATCH_NORM_RANKS[type(mod)]:
        raise LoweringError(f"{node.target}: input with {x.ndim} dimensions")
    tracking = mod.running_mean is not None
    batch_stats = lw.mode != "eval" or not tracking
    update = tracking and lw.mode != "eval"
    cumulative = lw.mode == "refresh" or mod.momentum is None
    h = x.node if x.batched else lw.fn(kernels.particles, x.node, lw.m())
    names = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    nodes = [_node(lw.param(mod, name)) for name in names]
    momentum = 0.0 if mod.momentum is None else float(mod.momentum)
    out = lw.fn(
        kernels.batch_norm,
        h,
        *nodes,
        float(mod.eps),
        momentum,
        batch_stats,
        update,
        cumulative,
    )
    return Value(out, "tensor", True, x.ndim, exclusive=True)


@module_rule(nn.LayerNorm)
def layer_norm(lw: Lowerer, node: fx.Node, mod: nn.LayerNorm) -> Value:
    x = lw.tensor(node.args[0], node.target)
    w, b = lw.param(mod, "weight"), lw.param(mod, "bias")
    out = lw.fn(
        kernels.layer_norm,
        x.node,
        tuple(mod.normalized_shape),
        _node(w),
        _node(b),
        float(mod.eps),
        not x.batched,
    )
    batched = x.batched or w is not None or b is not None
    return Value(out, "tensor", batched, x.ndim, exclusive=True)


@module_rule(nn.GroupNorm)
def group_norm(lw: Lowerer, node: fx.Node, mod: nn.GroupNorm) -> Value:
    x = lw.tensor(node.args[0], node.target)
    w, b = lw.param(mod, "weight"), lw.param(mod, "bias")
    h = x.node if x.batched else lw.fn(kernels.particles, x.node, lw.m())
    out = lw.fn(
        kernels.group_norm,
        h,
        mod.num_groups,
        _node(w),
        _node(b),
        float(mod.eps),
        lw.m(),
    )
    return Value(out, "tensor", True, x.ndim, exclusive=True)
