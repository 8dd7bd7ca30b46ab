"""Shapes, views, indexing, joining and casts.

A dimension of one copy is a dimension one further in the stacked tensor
(:func:`~..values.shift`); a shape read off a batched tensor leaves its
particle axis out.
"""

from __future__ import annotations

import builtins
import operator
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import fx, nn

from .. import kernels
from ..registry import function_rule, method_rule, module_rule
from ..values import LoweringError, Value, arg, nodes_in, shift, with_arg

if TYPE_CHECKING:
    from ..driver import Lowerer

#: Methods returning a value of the same shape that may alias their input.
_CASTS = (
    "float",
    "double",
    "half",
    "bfloat16",
    "long",
    "int",
    "bool",
    "to",
    "type",
    "contiguous",
    "clone",
    "detach",
)


@method_rule(*_CASTS)
def cast(lw: Lowerer, node: fx.Node) -> Value:
    """Casts and copies (``.float()``, ``.to(...)``, ``.contiguous()``...)."""
    x = lw.tensor(node.args[0], f".{node.target}()")
    extra = (node.args[1:], node.kwargs)
    if any(lw.env[n].kind != "other" for n in nodes_in(extra)):
        raise LoweringError(f".{node.target}() with a tensor argument")
    args, kwargs = lw.plain(extra, f".{node.target}()")
    out = lw.meth(node.target, x.node, *args, **kwargs)
    return replace(x, node=out, exclusive=node.target == "clone", producer=None)


# -- reading shapes --------------------------------------------------------------
@function_rule(builtins.getattr)
def tensor_attribute(lw: Lowerer, node: fx.Node) -> Value:
    """``x.shape``, ``x.ndim``, ``x.dtype``... of each copy."""
    x = lw.v(node.args[0])
    name = node.args[1]
    if x.kind == "seq" and name in ("values", "indices") and len(node.args) == 2:
        # the named result of max/min along a dim
        out = lw.fn(builtins.getattr, x.node, name)
        return Value(out, "tensor", x.batched, x.ndim)
    if x.kind != "tensor" or len(node.args) != 2:
        raise LoweringError(f"getattr {name!r} of a non-tensor")
    if name in ("dtype", "device", "is_cuda", "requires_grad"):
        return Value(lw.fn(builtins.getattr, x.node, name))
    if name == "shape":
        out = lw.fn(builtins.getattr, x.node, "shape")
        if x.batched:
            out = lw.fn(operator.getitem, out, slice(1, None))
        return Value(out)
    if name == "ndim":
        out = lw.fn(builtins.getattr, x.node, "ndim")
        return Value(lw.fn(operator.sub, out, 1) if x.batched else out)
    raise LoweringError(f"unsupported tensor attribute .{name}")


@method_rule("size")
def size(lw: Lowerer, node: fx.Node) -> Value:
    x = lw.tensor(node.args[0], "size")
    dim = arg(node.args, node.kwargs, 1, "dim")
    if isinstance(dim, fx.Node):
        raise LoweringError("size of a computed dimension")
    if dim is None:
        out = lw.meth("size", x.node)
        if x.batched:
            out = lw.fn(operator.getitem, out, slice(1, None))
    else:
        out = lw.meth("size", x.node, shift(dim, x.batched))
    return Value(out)


@method_rule("dim", "ndimension")
def dim(lw: Lowerer, node: fx.Node) -> Value:
    x = lw.tensor(node.args[0], "dim")
    out = lw.meth("dim", x.node)
    return Value(lw.fn(operator.sub, out, 1) if x.batched else out)


@method_rule("numel")
def numel(lw: Lowerer, node: fx.Node) -> Value:
    x = lw.tensor(node.args[0], "numel")
    out = lw.meth("numel", x.node)
    return Value(lw.fn(operator.floordiv, out, lw.m()) if x.batched else out)


# -- indexing --------------------------------------------------------------------
@function_rule(operator.getitem)
def getitem(lw: Lowerer, node: fx.Node) -> Value:
    """``x[index]``: basic indexing of a tensor, or an item of a sequence."""
    base, index = node.args
    x = lw.v(base)
    if x.kind == "seq":
        if not isinstance(index, int):
            if isinstance(index, slice) and not nodes_in(index):
                return replace(x, node=lw.fn(operator.getitem, x.node, index))
            raise LoweringError("indexing a tuple of tensors with a computed index")
        out = lw.fn(operator.getitem, x.node, index)
        return Value(out, "tensor", x.batched, x.ndim)
    if x.kind == "other":
        out = lw.fn(operator.getitem, x.node, lw.plain(index, "getitem"))
        return Value(out)
    items = index if isinstance(index, tuple) else (index,)
    ndim = x.ndim
    for item in items:
        if isinstance(item, (fx.Node, slice)):
            if any(lw.env[n].kind != "other" for n in nodes_in(item)):
                raise LoweringError("indexing a tensor with a tensor")
            if isinstance(item, fx.Node):
                ndim = None  # a computed int or slice
        elif item is None:
            ndim = None if ndim is None else ndim + 1
        elif isinstance(item, int) and not isinstance(item, bool):
            ndim = None if ndim is None else ndim - 1
        elif item is not Ellipsis:
            raise LoweringError(f"advanced indexing of a tensor with {item!r}")
    items = lw.plain(items, "getitem")
    if x.batched:
        items = (slice(None), *items)
    out = lw.fn(operator.getitem, x.node, items)
    return Value(out, "tensor", x.batched, ndim)


# -- views -----------------------------------------------------------------------
@function_rule(torch.reshape)
@method_rule("view", "reshape")
def reshape(lw: Lowerer, node: fx.Node) -> Value:
    x = lw.tensor(node.args[0], str(node.target))
    rest = node.args[1:] or (node.kwargs.get("shape", node.kwargs.get("size")),)
    if len(rest) == 1 and not isinstance(rest[0], int):
        rest = rest[0]
    if isinstance(rest, fx.Node):
        if lw.env[rest].kind != "other":
            raise LoweringError("view/reshape with a tensor argument")
        shape = lw.plain(rest, "reshape")
        if x.batched:
            shape = lw.fn(kernels.prepend, lw.m(), shape)
        ndim = None
    else:
        if not isinstance(rest, (tuple, list)) or any(
            not isinstance(s, (int, fx.Node)) or isinstance(s, bool) for s in rest
        ):
            raise LoweringError(f"view/reshape with arguments {rest!r}")
        shape = tuple(lw.plain(tuple(rest), "reshape"))
        if x.batched:
            shape = (lw.m(), *shape)
        ndim = len(rest)
    out = lw.meth("reshape", x.node, shape)
    return Value(out, "tensor", x.batched, ndim)


def _flatten(lw: Lowerer, x: Value, start: int, end: int) -> Value:
    out = lw.fn(torch.flatten, x.node, shift(start, x.batched), shift(end, x.batched))
    ndim = None
    if x.ndim is not None and x.ndim > 0:
        ndim = x.ndim - ((end % x.ndim) - (start % x.ndim))
    return Value(out, "tensor", x.batched, ndim)


@module_rule(nn.Flatten)
def flatten_module(lw: Lowerer, node: fx.Node, mod: nn.Flatten) -> Value:
    x = lw.tensor(node.args[0], node.target)
    return _flatten(lw, x, mod.start_dim, mod.end_dim)


@function_rule(torch.flatten)
@method_rule("flatten")
def flatten(lw: Lowerer, node: fx.Node) -> Value:
    args, kwargs = node.args, node.kwargs
    x = lw.tensor(args[0], "flatten")
    start = arg(args, kwargs, 1, "start_dim", 0)
    end = arg(args, kwargs, 2, "end_dim", -1)
    if not isinstance(start, int) or not isinstance(end, int):
        raise LoweringError("flatten with computed dims")
    return _flatten(lw, x, start, end)


@module_rule(nn.Unflatten)
def unflatten_module(lw: Lowerer, node: fx.Node, mod: nn.Unflatten) -> Value:
    x = lw.tensor(node.args[0], node.target)
    sizes = tuple(mod.unflattened_size)
    out = lw.meth("unflatten", x.node, shift(mod.dim, x.batched), sizes)
    ndim = None if x.ndim is None else x.ndim + len(sizes) - 1
    return Value(out, "tensor", x.batched, ndim)


@method_rule("unflatten")
def unflatten(lw: Lowerer, node: fx.Node) -> Value:
    args, kwargs = node.args, node.kwargs
    x = lw.tensor(args[0], "unflatten")
    dim = arg(args, kwargs, 1, "dim")
    sizes = lw.plain(arg(args, kwargs, 2, "sizes"), "unflatten")
    out = lw.meth("unflatten", x.node, shift(dim, x.batched), sizes)
    return Value(out, "tensor", x.batched, None)


@function_rule(torch.unsqueeze)
@method_rule("unsqueeze")
def unsqueeze(lw: Lowerer, node: fx.Node) -> Value:
    x = lw.tensor(node.args[0], "unsqueeze")
    dim = arg(node.args, node.kwargs, 1, "dim")
    out = lw.meth("unsqueeze", x.node, shift(dim, x.batched))
    ndim = None if x.ndim is None else x.ndim + 1
    return Value(out, "tensor", x.batched, ndim)


@function_rule(torch.squeeze)
@method_rule("squeeze")
def squeeze(lw: Lowerer, node: fx.Node) -> Value:
    x = lw.tensor(node.args[0], "squeeze")
    dim = arg(node.args, node.kwargs, 1, "dim")
    if dim is None and x.batched:
        out = lw.fn(kernels.squeeze_all, x.node)
    elif dim is None:
        out = lw.meth("squeeze", x.node)
    else:
        out = lw.meth("squeeze", x.node, shift(dim, x.batched))
    return Value(out, "tensor", x.batched, None)


@function_rule(torch.permute)
@method_rule("permute")
def permute(lw: Lowerer, node: fx.Node) -> Value:
    x = lw.tensor(node.args[0], "permute")
    dims = node.args[1:] or (node.kwargs.get("dims"),)
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    if not all(isinstance(d, int) for d in dims):
        raise LoweringError("permute with computed dims")
    if x.batched:
        dims = (0, *shift(tuple(dims), True))
    out = lw.meth("permute", x.node, tuple(dims))
    return Value(out, "tensor", x.batched, x.ndim)


@function_rule(torch.transpose)
@method_rule("transpose")
def transpose(lw: Lowerer, node: fx.Node) -> Value:
    args, kwargs = node.args, node.kwargs
    x = lw.tensor(args[0], "transpose")
    d0 = arg(args, kwargs, 1, "dim0")
    d1 = arg(args, kwargs, 2, "dim1")
    out = lw.meth("transpose", x.node, shift(d0, x.batched), shift(d1, x.batched))
    return Value(out, "tensor", x.batched, x.ndim)


@method_rule("expand")
def expand(lw: Lowerer, node: fx.Node) -> Value:
    x = lw.tensor(node.args[0], "expand")
    sizes = node.args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    if node.kwargs or any(
        not isinstance(s, (int, fx.Node)) or isinstance(s, bool) for s in sizes
    ):
        raise LoweringError("expand with unsupported arguments")
    sizes = tuple(lw.plain(tuple(sizes), "expand"))
    if x.batched and x.ndim == len(sizes):
        out = lw.meth("expand", x.node, -1, *sizes)
    elif x.batched:
        out = lw.fn(kernels.expand, x.node, sizes)
    else:
        out = lw.meth("expand", x.node, *sizes)
    return Value(out, "tensor", x.batched, len(sizes) - x.batched)


# -- splitting and joining -------------------------------------------------------
@function_rule(torch.chunk, torch.split, torch.unbind)
@method_rule("chunk", "split", "unbind")
def split(lw: Lowerer, node: fx.Node) -> Value:
    """``chunk``, ``split`` and ``unbind``: a tuple of tensors."""
    args, kwargs = node.args, dict(node.kwargs)
    x = lw.tensor(args[0], "split")
    name = node.target if isinstance(node.target, str) else node.target.__name__
    pos = 1 if name == "unbind" else 2
    dim = arg(args, kwargs, pos, "dim", 0)
    rest = lw.plain((args[1:], kwargs), name)
    new_args, new_kwargs = with_arg(
        rest[0], rest[1], pos - 1, "dim", shift(dim, x.batched)
    )
    out = lw.like(node, (x.node, *new_args), new_kwargs)
    ndim = x.ndim
    if name == "unbind" and ndim is not None:
        ndim -= 1
    return Value(out, "seq", x.batched, ndim)


@function_rule(torch.cat, torch.concat, torch.stack)
def cat(lw: Lowerer, node: fx.Node) -> Value:
    """``cat`` and ``stack``: shared items joining batched ones become batched."""
    args, kwargs = node.args, node.kwargs
    items = arg(args, kwargs, 0, "tensors")
    dim = arg(args, kwargs, 1, "dim", 0)
    if not isinstance(items, (tuple, list)) or not items:
        raise LoweringError("cat/stack of a computed sequence")
    values = [lw.tensor(a, "cat") for a in items]
    batched = any(v.batched for v in values)
    nodes = [
        v.node if v.batched or not batched else lw.fn(kernels.particles, v.node, lw.m())
        for v in values
    ]
    out = lw.fn(node.target, nodes, shift(dim, batched))
    ndims = {v.ndim for v in values}
    ndim = ndims.pop() if len(ndims) == 1 else None
    if ndim is not None and node.target is torch.stack:
        ndim += 1
    return Value(out, "tensor", batched, ndim, exclusive=True)
