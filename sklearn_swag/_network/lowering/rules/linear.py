"""Linear layers and convolutions: one batched matrix product or convolution."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import fx, nn

from .... import _torch_compat
from .. import kernels
from ..registry import function_rule, module_rule
from ..values import LoweringError, Value, arg, as_tuple

if TYPE_CHECKING:
    from ..driver import Lowerer


def _linear(lw: Lowerer, x: Value, w: Value, b: Value | None) -> Value:
    """``x @ w.T + b`` with a batched weight."""
    if w.ndim != 2 or (b is not None and (not b.batched or b.ndim != 1)):
        raise LoweringError("linear with unsupported weight or bias")
    bias = None if b is None else b.node
    shared = not x.batched
    if x.ndim == 2:  # rows, known now: the operations go into the graph
        n_in = w.shape[1] if w.shape is not None else None
        outer = shared and n_in == 1
        out = lw.inline(kernels.linear_rows, x.node, w.node, bias, shared, outer)
    else:
        out = lw.fn(kernels.linear, x.node, w.node, bias, shared)
    return Value(out, "tensor", True, x.ndim, producer="linear", exclusive=True)


@module_rule(nn.Linear)
def linear_module(lw: Lowerer, node: fx.Node, mod: nn.Linear) -> Value:
    x = lw.tensor(node.args[0], node.target)
    return _linear(lw, x, lw.param(mod, "weight"), lw.param(mod, "bias"))


@function_rule(F.linear)
def linear_function(lw: Lowerer, node: fx.Node) -> Value:
    args, kwargs = node.args, node.kwargs
    x = lw.tensor(args[0], "linear")
    w = lw.tensor(arg(args, kwargs, 1, "weight"), "linear")
    b_arg = arg(args, kwargs, 2, "bias")
    b = None if b_arg is None else lw.tensor(b_arg, "linear")
    if not w.batched and (b is None or not b.batched):
        out = lw.fn(F.linear, x.node, w.node, None if b is None else b.node)
        return Value(out, "tensor", x.batched, x.ndim, exclusive=True)
    return _linear(lw, x, w, b)


@module_rule(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def conv_module(
    lw: Lowerer, node: fx.Node, mod: nn.Conv1d | nn.Conv2d | nn.Conv3d
) -> Value:
    x = lw.tensor(node.args[0], node.target)
    dims = len(mod.kernel_size)
    if x.ndim is not None and x.ndim != dims + 2:
        raise LoweringError(
            f"{node.target}: each copy's input must have {dims + 2} dimensions"
        )
    w, b = lw.param(mod, "weight"), lw.param(mod, "bias")
    if mod.padding_mode == "zeros":
        pad, padding = None, mod.padding
    else:
        pad, padding = _torch_compat.reversed_padding(mod), 0
    out = lw.fn(
        kernels.conv,
        x.node,
        w.node,
        None if b is None else b.node,
        not x.batched,
        dims,
        tuple(mod.stride),
        padding if isinstance(padding, str) else as_tuple(padding, dims),
        tuple(mod.dilation),
        mod.groups,
        pad,
        mod.padding_mode,
    )
    return Value(out, "tensor", True, x.ndim, producer="conv", exclusive=True)
