"""Reductions and other operations along a dimension (``sum``, ``softmax``...)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import fx, nn

from .. import kernels
from ..registry import function_rule, method_rule, module_rule
from ..values import LoweringError, Value, arg, shift, with_arg

if TYPE_CHECKING:
    from ..driver import Lowerer

#: Reductions over ``dim`` (all dims of each copy when ``dim`` is left out).
_REDUCTIONS = {"sum", "mean", "amax", "amin", "var", "std"}
#: Operations along one required ``dim`` keeping the shape.
_ALONG_DIM = {"softmax", "log_softmax", "cumsum", "logsumexp"}
#: Their ``torch`` and ``torch.nn.functional`` forms.
_FUNCTIONS = (
    torch.sum,
    torch.mean,
    torch.amax,
    torch.amin,
    torch.var,
    torch.std,
    torch.softmax,
    torch.log_softmax,
    torch.cumsum,
    torch.logsumexp,
    F.softmax,
    F.log_softmax,
)


@method_rule(*_REDUCTIONS, *_ALONG_DIM)
def along_dim_method(lw: Lowerer, node: fx.Node) -> Value:
    return along_dim(lw, node, node.target)


@function_rule(*_FUNCTIONS)
def along_dim_function(lw: Lowerer, node: fx.Node) -> Value:
    return along_dim(lw, node, getattr(node.target, "__name__", None))


def along_dim(lw: Lowerer, node: fx.Node, name: str) -> Value:
    """A reduction or another operation along ``dim``, named ``name``."""
    args, kwargs = node.args, dict(node.kwargs)
    x = lw.tensor(args[0], name)
    rest = lw.plain((args[1:], kwargs), name)
    if not x.batched:
        out = lw.like(node, (x.node, *rest[0]), rest[1])
        ndim = x.ndim if name in _ALONG_DIM - {"logsumexp"} else None
        return Value(out, "tensor", False, ndim, exclusive=True)
    dim = arg(args, kwargs, 1, "dim")
    if dim is None and name in _ALONG_DIM:
        raise LoweringError(f"{name} without an explicit dim")
    keepdim = bool(kwargs.get("keepdim", False))
    if name in ("sum", "mean", "amax", "amin", "logsumexp") and len(args) > 2:
        keepdim = bool(args[2])
    if dim is None:
        if len(args) > 1:
            raise LoweringError(f"{name} with positional arguments but no dim")
        kw = {k: w for k, w in rest[1].items() if k != "dim"}
        out = lw.fn(kernels.reduce_all, x.node, name, kw)
        ndim = x.ndim if keepdim else 0
        return Value(out, "tensor", True, ndim, exclusive=True)
    if name in ("softmax", "log_softmax") and _dim_only(args, kwargs):
        out = lw.fn(kernels.softmax, x.node, name, shift(dim, True))
        return Value(out, "tensor", True, x.ndim, exclusive=True)
    args, kwargs = with_arg(rest[0], rest[1], 0, "dim", shift(dim, True))
    out = lw.like(node, (x.node, *args), kwargs)
    ndim = x.ndim
    if ndim is not None and name not in _ALONG_DIM - {"logsumexp"} and not keepdim:
        ndim -= len(dim) if isinstance(dim, (tuple, list)) else 1
    return Value(out, "tensor", True, ndim, exclusive=True)


def _dim_only(args: tuple, kwargs: dict) -> bool:
    """Whether a (log-)softmax call passes its ``dim`` and nothing else that
    matters (fx records ``F.softmax``'s ``_stacklevel`` and ``dtype=None``)."""
    others = {k: v for k, v in kwargs.items() if k != "dim"}
    plain = all(
        k == "_stacklevel" or (k == "dtype" and v is None) for k, v in others.items()
    )
    return len(args) <= 2 and plain and isinstance(arg(args, kwargs, 1, "dim"), int)


@module_rule(nn.Softmax, nn.LogSoftmax)
def softmax_module(
    lw: Lowerer, node: fx.Node, mod: nn.Softmax | nn.LogSoftmax
) -> Value:
    x = lw.tensor(node.args[0], node.target)
    if mod.dim is None:
        raise LoweringError(f"{node.target}: softmax without an explicit dim")
    name = "softmax" if isinstance(mod, nn.Softmax) else "log_softmax"
    if x.batched:
        out = lw.fn(kernels.softmax, x.node, name, shift(mod.dim, True))
    else:
        out = lw.meth(name, x.node, mod.dim)
    return Value(out, "tensor", x.batched, x.ndim, exclusive=True)


@function_rule(torch.max, torch.min)
@method_rule("max", "min")
def max_min(lw: Lowerer, node: fx.Node) -> Value:
    """``max`` and ``min``: of every element, along ``dim`` (values and indices),
    or of two tensors elementwise."""
    args, kwargs = node.args, dict(node.kwargs)
    name = node.target if isinstance(node.target, str) else node.target.__name__
    x = lw.tensor(args[0], name)
    other = arg(args, kwargs, 1, "other")
    if isinstance(other, fx.Node) and lw.env[other].kind == "tensor":
        return lw.pointwise(node, args, kwargs)
    dim = arg(args, kwargs, 1, "dim")
    if dim is None:
        if len(args) > 1 or kwargs:
            raise LoweringError(f"{name} with unsupported arguments")
        reduce = "amax" if name == "max" else "amin"
        if x.batched:
            out = lw.fn(kernels.reduce_all, x.node, reduce, {})
        else:
            out = lw.like(node, (x.node,), {})
        return Value(out, "tensor", x.batched, 0, exclusive=True)
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise LoweringError(f"{name} along a computed dim")
    if len(args) > 3 or set(kwargs) - {"dim", "keepdim"}:
        raise LoweringError(f"{name} with unsupported arguments")
    keepdim = arg(args, kwargs, 2, "keepdim", False)
    if not isinstance(keepdim, bool):
        raise LoweringError(f"{name} with a computed keepdim")
    out = lw.like(node, (x.node, shift(dim, x.batched)), {"keepdim": keepdim})
    ndim = None if x.ndim is None else x.ndim - (not keepdim)
    return Value(out, "seq", x.batched, ndim)
