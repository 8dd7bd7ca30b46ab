"""Embedding, dropout, pooling and identity layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.nn.functional as F
from torch import fx, nn

from .. import kernels
from ..registry import function_rule, module_rule
from ..values import LoweringError, Value, arg

if TYPE_CHECKING:
    from ..driver import Lowerer

#: Pooling layers: the name of their function and the attributes it takes.
_POOLS: dict[type, tuple[str, tuple[str, ...]]] = {
    nn.MaxPool1d: ("max_pool1d", ("kernel_size", "stride", "padding", "dilation")),
    nn.MaxPool2d: ("max_pool2d", ("kernel_size", "stride", "padding", "dilation")),
    nn.AvgPool1d: ("avg_pool1d", ("kernel_size", "stride", "padding")),
    nn.AvgPool2d: ("avg_pool2d", ("kernel_size", "stride", "padding")),
    nn.AdaptiveAvgPool1d: ("adaptive_avg_pool1d", ("output_size",)),
    nn.AdaptiveAvgPool2d: ("adaptive_avg_pool2d", ("output_size",)),
    nn.AdaptiveMaxPool1d: ("adaptive_max_pool1d", ("output_size",)),
    nn.AdaptiveMaxPool2d: ("adaptive_max_pool2d", ("output_size",)),
}


@module_rule(nn.Embedding)
def embedding(lw: Lowerer, node: fx.Node, mod: nn.Embedding) -> Value:
    if mod.max_norm is not None or mod.scale_grad_by_freq or mod.sparse:
        raise LoweringError(
            f"{node.target}: Embedding with max_norm, scale_grad_by_freq or sparse"
        )
    x = lw.tensor(node.args[0], node.target)
    w = lw.param(mod, "weight")
    out = lw.fn(kernels.embedding, x.node, w.node, not x.batched, mod.padding_idx)
    ndim = None if x.ndim is None else x.ndim + 1
    return Value(out, "tensor", True, ndim, exclusive=True)


def _dropout(lw: Lowerer, a: Any, p: float) -> Value:
    """Dropout in "train" mode, each copy with its own mask; else nothing."""
    x = lw.tensor(a, "dropout")
    if lw.mode != "train" or p == 0:
        return lw.alias(a)
    out = lw.fn(kernels.dropout, x.node, p, not x.batched, lw.generators, lw.m())
    return Value(out, "tensor", True, x.ndim, exclusive=True)


@module_rule(nn.Dropout)
def dropout_module(lw: Lowerer, node: fx.Node, mod: nn.Dropout) -> Value:
    if mod.inplace:
        lw.check_inplace(node, node.args[0])
    return _dropout(lw, node.args[0], float(mod.p))


@function_rule(F.dropout)
def dropout_function(lw: Lowerer, node: fx.Node) -> Value:
    args, kwargs = node.args, node.kwargs
    p = arg(args, kwargs, 1, "p", 0.5)
    if not isinstance(p, (int, float)):
        raise LoweringError("dropout with a computed p")
    if arg(args, kwargs, 3, "inplace", False):
        lw.check_inplace(node, args[0])
    return _dropout(lw, args[0], float(p))


@module_rule(*_POOLS)
def pool(lw: Lowerer, node: fx.Node, mod: nn.Module) -> Value:
    x = lw.tensor(node.args[0], node.target)
    if getattr(mod, "return_indices", False):
        raise LoweringError(f"{node.target}: pooling with return_indices")
    name, names = _POOLS[type(mod)]
    kwargs = {n: getattr(mod, n) for n in names}
    for extra in ("ceil_mode", "count_include_pad", "divisor_override"):
        if hasattr(mod, extra):
            kwargs[extra] = getattr(mod, extra)
    if x.batched:
        out = lw.fn(kernels.pool, x.node, name, kwargs)
    else:
        out = lw.fn(kernels.POOL_FUNCTIONS[name], x.node, **kwargs)
    return Value(out, "tensor", x.batched, x.ndim, exclusive=True)


@module_rule(nn.Identity)
def identity(lw: Lowerer, node: fx.Node, mod: nn.Identity) -> Value:
    lw.tensor(node.args[0], node.target)
    return lw.alias(node.args[0])
