"""Elementwise functions, operators and activations.

Most only need their batched operands aligned, which the driver's
:meth:`~..driver.Lowerer.pointwise` does; in-place forms are lowered out of
place where nothing else can see the difference.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import fx, nn

from .... import _torch_compat
from .. import kernels
from ..registry import function_rule, method_rule, module_rule
from ..values import Value

if TYPE_CHECKING:
    from ..driver import Lowerer

#: Functions with the position of their ``inplace`` argument.
_WITH_INPLACE = {
    F.relu: 1,
    F.relu6: 1,
    F.elu: 2,
    F.celu: 2,
    F.selu: 1,
    F.silu: 1,
    F.mish: 1,
    F.leaky_relu: 2,
    F.hardtanh: 3,
    F.hardswish: 1,
    F.hardsigmoid: 1,
}

#: Functions without an ``inplace`` argument.
_FUNCTIONS = (
    F.gelu,
    F.softplus,
    F.softsign,
    F.tanhshrink,
    F.logsigmoid,
    F.tanh,
    F.sigmoid,
    torch.relu,
    torch.selu,
    torch.celu,
    torch.tanh,
    torch.sigmoid,
    torch.exp,
    torch.log,
    torch.log1p,
    torch.expm1,
    torch.sqrt,
    torch.rsqrt,
    torch.abs,
    torch.sin,
    torch.cos,
    torch.erf,
    torch.square,
    torch.neg,
    torch.reciprocal,
    torch.sign,
    torch.floor,
    torch.ceil,
    torch.clamp,
    torch.clip,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.pow,
    torch.maximum,
    torch.minimum,
    torch.where,
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.floordiv,
    operator.mod,
    operator.pow,
    operator.neg,
    operator.pos,
    operator.abs,
    operator.eq,
    operator.ne,
    operator.lt,
    operator.le,
    operator.gt,
    operator.ge,
)

#: In-place operators, lowered as their out-of-place counterparts.
_INPLACE_OPERATORS = {
    operator.iadd: operator.add,
    operator.isub: operator.sub,
    operator.imul: operator.mul,
    operator.itruediv: operator.truediv,
}

#: Tensor methods; each also in place, with a trailing underscore.
_METHODS = (
    "relu",
    "tanh",
    "sigmoid",
    "exp",
    "log",
    "log1p",
    "expm1",
    "sqrt",
    "rsqrt",
    "abs",
    "sin",
    "cos",
    "erf",
    "square",
    "neg",
    "reciprocal",
    "sign",
    "floor",
    "ceil",
    "clamp",
    "clip",
    "clamp_min",
    "clamp_max",
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "maximum",
    "minimum",
)

#: Activation modules lowered as a function of their attributes.
_ACTIVATION_MODULES: dict[type, tuple[Callable, tuple[str, ...]]] = {
    nn.ReLU6: (F.relu6, ()),
    nn.CELU: (F.celu, ("alpha",)),
    nn.SELU: (torch.selu, ()),
    nn.GELU: (F.gelu, ("approximate",)),
    nn.SiLU: (F.silu, ()),
    nn.Mish: (F.mish, ()),
    nn.Tanh: (torch.tanh, ()),
    nn.Sigmoid: (torch.sigmoid, ()),
    nn.Softplus: (F.softplus, ("beta", "threshold")),
    nn.Hardtanh: (F.hardtanh, ("min_val", "max_val")),
    nn.Hardswish: (F.hardswish, ()),
    nn.Hardsigmoid: (F.hardsigmoid, ()),
    nn.Softsign: (F.softsign, ()),
    nn.Tanhshrink: (F.tanhshrink, ()),
    nn.LogSigmoid: (F.logsigmoid, ()),
}


def _function(inplace_pos: int | None) -> Callable[[Lowerer, fx.Node], Value]:
    def pointwise_function(lw: Lowerer, node: fx.Node) -> Value:
        return lw.pointwise(node, node.args, dict(node.kwargs), inplace_pos=inplace_pos)

    return pointwise_function


for _target, _pos in _WITH_INPLACE.items():
    function_rule(_target)(_function(_pos))
del _target, _pos
function_rule(*_FUNCTIONS)(_function(None))


@function_rule(*_INPLACE_OPERATORS)
def inplace_operator(lw: Lowerer, node: fx.Node) -> Value:
    """``a += b`` as ``a + b`` where nothing else sees ``a``."""
    lw.check_inplace(node, node.args[0])
    function = _INPLACE_OPERATORS[node.target]
    return lw.pointwise(node, node.args, dict(node.kwargs), function=function)


@method_rule(*_METHODS)
def pointwise_method(lw: Lowerer, node: fx.Node) -> Value:
    return lw.pointwise(node, node.args, dict(node.kwargs))


@method_rule(*(name + "_" for name in _METHODS))
def inplace_method(lw: Lowerer, node: fx.Node) -> Value:
    """``a.add_(b)`` as ``a.add(b)`` where nothing else sees ``a``."""
    lw.check_inplace(node, node.args[0])
    method = node.target[:-1]
    return lw.pointwise(node, node.args, dict(node.kwargs), method=method)


@module_rule(nn.ReLU, nn.ELU, nn.LeakyReLU, *_ACTIVATION_MODULES)
def activation(lw: Lowerer, node: fx.Node, mod: nn.Module) -> Value:
    """An activation layer; ReLU, ELU and LeakyReLU in place where they may be."""
    a = node.args[0]
    x = lw.tensor(a, node.target)
    if getattr(mod, "inplace", False):
        lw.check_inplace(node, a)
    overwrite = lw.may_overwrite(a)
    if isinstance(mod, nn.ReLU):
        out = lw.fn(torch.relu_ if overwrite else torch.relu, x.node)
    elif isinstance(mod, nn.ELU):
        alpha = float(mod.alpha)
        in_place = overwrite and alpha >= 0
        elu = _torch_compat.elu_ if in_place else _torch_compat.elu
        out = lw.fn(elu, x.node, alpha)
    elif isinstance(mod, nn.LeakyReLU):
        slope = float(mod.negative_slope)
        in_place = overwrite and slope > 0
        leaky = _torch_compat.leaky_relu_ if in_place else _torch_compat.leaky_relu
        out = lw.fn(leaky, x.node, slope)
    else:
        function, names = _ACTIVATION_MODULES[type(mod)]
        out = lw.fn(function, x.node, **{n: getattr(mod, n) for n in names})
    return Value(out, "tensor", x.batched, x.ndim, exclusive=True)


@module_rule(nn.PReLU)
def prelu(lw: Lowerer, node: fx.Node, mod: nn.PReLU) -> Value:
    x = lw.tensor(node.args[0], node.target)
    w = lw.param(mod, "weight")
    out = lw.fn(kernels.prelu, x.node, w.node, not x.batched)
    return Value(out, "tensor", True, x.ndim, exclusive=True)
