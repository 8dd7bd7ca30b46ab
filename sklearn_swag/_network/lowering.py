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
"""

from __future__ import annotations

import builtins
import copy
import operator
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["LoweredNetwork", "LoweringError", "lower"]

_MODES = ("train", "eval", "refresh")


class LoweringError(Exception):
    """The network uses something that cannot be lowered.

    The message names the operation (node, module, function or method).
    """


# -- runtime helpers: what the compiled graphs call ------------------------------------
# Each takes plain values (tensors, numbers, tuples), so that the generated code
# needs no object it cannot print.


def _particles(t: torch.Tensor, m: int) -> torch.Tensor:
    """A shared tensor as ``M`` identical copies, without copying it."""
    return t.expand(m, *t.shape)


def _prepend(m: int, shape: Sequence[int]) -> tuple[int, ...]:
    return (m, *shape)


def _lift(t: torch.Tensor, peers: tuple[tuple[Any, bool], ...]) -> torch.Tensor:
    """Insert axes after the particle axis of ``t`` to broadcast with ``peers``.

    ``peers`` are the other operands, each with whether it is batched.
    """
    rank = max((p.ndim - b for p, b in peers if isinstance(p, torch.Tensor)), default=0)
    missing = rank - (t.ndim - 1)
    if missing > 0:
        return t[(slice(None),) + (None,) * missing]
    return t


def _linear(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    shared: bool,
) -> torch.Tensor:
    """Stacked ``nn.Linear`` on inputs of any number of dimensions."""
    m, n_out, n_in = weight.shape
    lead = h.shape[:-1] if shared else h.shape[1:-1]
    if shared:
        if h.ndim == 2 and n_in == 1:
            h = h.unsqueeze(0)
            wt = weight.transpose(1, 2)
            if bias is None:
                return h * wt
            return torch.addcmul(bias.unsqueeze(1), h, wt)
        h = h.reshape(1, -1, n_in).expand(m, -1, -1)
    else:
        h = h.reshape(m, -1, n_in)
    if bias is None:
        out = torch.bmm(h, weight.transpose(1, 2))
    else:
        out = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
    return out.view(m, *lead, n_out)


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _conv(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    shared: bool,
    dims: int,
    stride: tuple[int, ...],
    padding: tuple[int, ...] | str,
    dilation: tuple[int, ...],
    groups: int,
    pad: tuple[int, ...] | None,
    pad_mode: str,
) -> torch.Tensor:
    """Stacked convolution: the particle axis folded into the channels.

    The result is ``(M, N, C_out, ...)`` as a view of a ``(N, M, C_out, ...)``
    tensor, which is what the next convolution folds again without a copy.
    """
    conv = _CONV[dims]
    m = weight.shape[0]
    if h.ndim != dims + 3 - shared:
        raise ValueError(
            f"conv{dims}d of each copy expects inputs with {dims + 2} "
            f"dimensions, got {h.ndim - (not shared)}."
        )
    flat_bias = None if bias is None else bias.reshape(-1)
    flat_weight = weight.reshape(-1, *weight.shape[2:])
    if shared and groups == 1:
        # one ordinary convolution with the filters of every copy side by side
        if pad is not None:
            h = F.pad(h, pad, mode=pad_mode)
        out = conv(h, flat_weight, flat_bias, stride, padding, dilation, 1)
    else:
        if shared:
            h = h.expand(m, *h.shape)
        n = h.shape[1]
        h = h.transpose(0, 1).reshape(n, -1, *h.shape[3:])
        if pad is not None:
            h = F.pad(h, pad, mode=pad_mode)
        out = conv(h, flat_weight, flat_bias, stride, padding, dilation, m * groups)
    return out.view(out.shape[0], m, -1, *out.shape[2:]).transpose(0, 1)


def _batch_norm(
    h: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    count: torch.Tensor | None,
    eps: float,
    momentum: float,
    batch_stats: bool,
    update: bool,
    cumulative: bool,
) -> torch.Tensor:
    """Stacked ``BatchNorm``: every copy with its own statistics.

    ``h`` is ``(M, N, C, ...)``. The particle axis is folded into the channels
    and torch's own kernel normalises the ``M * C`` channels, so outputs and
    gradients are those of each copy's ``BatchNorm`` to the last bit (a
    re-derived normalisation would differ by round-off, which Adam amplifies
    where a gradient is zero in exact arithmetic, as for the bias of a layer
    before ``BatchNorm``). With ``batch_stats`` each copy is normalised by its
    own batch statistics; with ``update`` the running statistics (``(M, C)``)
    and counts (``(M,)``) are updated in place, by ``momentum`` or, with
    ``cumulative``, as cumulative averages.
    """
    m, n, c = h.shape[:3]
    spatial = h.shape[3:]
    folded = h.transpose(0, 1).reshape(n, m * c, *spatial)
    w = None if weight is None else weight.reshape(-1)
    b = None if bias is None else bias.reshape(-1)
    if not batch_stats:
        out = F.batch_norm(
            folded, running_mean.view(-1), running_var.view(-1), w, b, False, 0.0, eps
        )
        return out.view(n, m, c, *spatial).transpose(0, 1)
    if folded.numel() // (m * c) <= 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got "
            f"input size {tuple(h.shape[1:])} for each copy."
        )
    native = (
        update
        and not cumulative
        and running_mean.is_contiguous()
        and running_var.is_contiguous()
    )
    if native:  # torch updates the running statistics itself
        with torch.no_grad():
            count.add_(1)
        out = F.batch_norm(
            folded,
            running_mean.view(-1),
            running_var.view(-1),
            w,
            b,
            True,
            momentum,
            eps,
        )
    else:
        out = F.batch_norm(folded, None, None, w, b, True, 0.0, eps)
    if update and not native:
        with torch.no_grad():
            # Two passes by hand: torch.var_mean over a leading axis is about
            # 25x slower on a CPU.
            dims = (0, *range(2, folded.ndim))
            mean = folded.mean(dim=dims, keepdim=True)
            n_values = folded.numel() // mean.numel()
            var = (folded - mean).square_().sum(dim=dims).div_(n_values - 1)
            mean = mean.view(-1)
            factor: float | torch.Tensor = momentum
            if count is not None:
                count.add_(1)
                if cumulative:
                    factor = count.to(running_mean.dtype).reciprocal().unsqueeze(1)
            running_mean.lerp_(mean.view(m, c), factor)
            running_var.lerp_(var.view(m, c), factor)
    return out.view(n, m, c, *spatial).transpose(0, 1)


def _affine(
    out: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    trailing: int,
    shared: bool,
) -> torch.Tensor:
    """``out * weight + bias`` with per-copy ``weight`` over the last dims."""
    ref = weight if weight is not None else bias
    if ref is None:
        return out
    m = ref.shape[0]
    ones = (1,) * (out.ndim - trailing - (not shared))
    shape = (m, *ones, *ref.shape[1:])
    if weight is None:
        return out + bias.view(shape)
    if bias is None:
        return out * weight.view(shape)
    return torch.addcmul(bias.view(shape), out, weight.view(shape))


def _layer_norm(
    h: torch.Tensor,
    normalized_shape: tuple[int, ...],
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    shared: bool,
) -> torch.Tensor:
    out = F.layer_norm(h, normalized_shape, None, None, eps)
    return _affine(out, weight, bias, len(normalized_shape), shared)


def _group_norm(
    h: torch.Tensor,
    groups: int,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    m: int,
) -> torch.Tensor:
    """Stacked ``GroupNorm``: the particle axis folded into the rows."""
    if h.ndim < 3:
        raise ValueError("GroupNorm of each copy expects (N, C, ...) inputs.")
    out = F.group_norm(h.flatten(0, 1), groups, None, None, eps).view(h.shape)
    shape = (m, 1, h.shape[2]) + (1,) * (h.ndim - 3)
    if weight is None:
        return out if bias is None else out + bias.view(shape)
    if bias is None:
        return out * weight.view(shape)
    return torch.addcmul(bias.view(shape), out, weight.view(shape))


def _prelu(h: torch.Tensor, weight: torch.Tensor, shared: bool) -> torch.Tensor:
    m, c = weight.shape
    rank = h.ndim - (not shared)
    if c == 1:
        slope = weight.view(m, *(1,) * rank)
    elif rank >= 2:
        slope = weight.view(m, 1, c, *(1,) * (rank - 2))
    else:
        raise ValueError("PReLU with several parameters needs a channel dim.")
    return torch.where(h >= 0, h, slope * h)


def _embedding(
    idx: torch.Tensor,
    weight: torch.Tensor,
    shared: bool,
    padding_idx: int | None,
) -> torch.Tensor:
    """Stacked ``nn.Embedding``: copy ``m`` looks its indices up in ``weight[m]``."""
    m, n_rows, dim = weight.shape
    if padding_idx is not None:  # that row gets no gradient, as in torch
        rows = torch.arange(n_rows, device=weight.device) == padding_idx
        weight = torch.where(rows.unsqueeze(1), weight.detach(), weight)
    if shared:
        out = weight.index_select(1, idx.reshape(-1))
        return out.view(m, *idx.shape, dim)
    offsets = torch.arange(m, device=idx.device) * n_rows
    idx = idx + offsets.view(m, *(1,) * (idx.ndim - 1))
    return F.embedding(idx, weight.reshape(m * n_rows, dim))


def _dropout(
    h: torch.Tensor,
    p: float,
    shared: bool,
    generators: Sequence[torch.Generator] | None,
    m: int,
) -> torch.Tensor:
    """Training-mode dropout, each copy's mask from its own generator if given."""
    if shared:
        h = h.expand(m, *h.shape)
    if p >= 1.0:
        return h * 0.0
    if generators is None:
        return F.dropout(h, p, True)
    if len(generators) != h.shape[0]:
        raise ValueError(
            f"Got {len(generators)} generators for {h.shape[0]} weight vectors."
        )
    keep = torch.stack(
        [torch.rand(h.shape[1:], generator=g, device=h.device) for g in generators]
    ).ge_(p)
    return h * keep / (1.0 - p)


def _reduce_all(x: torch.Tensor, name: str, kwargs: dict) -> torch.Tensor:
    """A reduction over every dimension of each copy."""
    if x.ndim < 2:
        raise ValueError(f"cannot reduce ({name}) a value with no dimensions")
    return getattr(x, name)(dim=tuple(range(1, x.ndim)), **kwargs)


_POOLS: dict[type, tuple[Callable, tuple[str, ...]]] = {
    nn.MaxPool1d: (F.max_pool1d, ("kernel_size", "stride", "padding", "dilation")),
    nn.MaxPool2d: (F.max_pool2d, ("kernel_size", "stride", "padding", "dilation")),
    nn.AvgPool1d: (F.avg_pool1d, ("kernel_size", "stride", "padding")),
    nn.AvgPool2d: (F.avg_pool2d, ("kernel_size", "stride", "padding")),
    nn.AdaptiveAvgPool1d: (F.adaptive_avg_pool1d, ("output_size",)),
    nn.AdaptiveAvgPool2d: (F.adaptive_avg_pool2d, ("output_size",)),
    nn.AdaptiveMaxPool1d: (F.adaptive_max_pool1d, ("output_size",)),
    nn.AdaptiveMaxPool2d: (F.adaptive_max_pool2d, ("output_size",)),
}
_POOL_FUNCTIONS = {function.__name__: function for function, _ in _POOLS.values()}


def _pool(h: torch.Tensor, name: str, kwargs: dict) -> torch.Tensor:
    """A pooling layer of every copy: the particle axis folded into the rows."""
    if h.transpose(0, 1).is_contiguous():  # the layout a convolution leaves
        out = _POOL_FUNCTIONS[name](h.transpose(0, 1).flatten(0, 1), **kwargs)
        return out.view(h.shape[1], h.shape[0], *out.shape[1:]).transpose(0, 1)
    out = _POOL_FUNCTIONS[name](h.flatten(0, 1), **kwargs)
    return out.view(*h.shape[:2], *out.shape[1:])


def _expand(t: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """Each copy's ``expand(*sizes)``, new dims after the particle axis."""
    missing = len(sizes) - (t.ndim - 1)
    if missing < 0:
        raise ValueError("expand to fewer dimensions than the tensor has")
    if missing:
        t = t[(slice(None),) + (None,) * missing]
    return t.expand(-1, *sizes)


def _squeeze_all(x: torch.Tensor) -> torch.Tensor:
    return x.squeeze(tuple(d for d in range(1, x.ndim) if x.shape[d] == 1))


# -- static facts about the values of the trace ----------------------------------------
@dataclass
class _Value:
    """What lowering knows about one value of the traced network.

    Attributes
    ----------
    node : torch.fx.Node or object
        The value in the new graph (or a Python constant).
    kind : {"tensor", "seq", "other"}
        A tensor, a tuple or list of tensors (from ``chunk``/``split``), or any
        other value (an int, a shape, a dtype).
    batched : bool
        Whether the value has a leading particle axis (for "seq": every item).
    ndim : int or None
        Dimensions of each copy's value, when known.
    shape : tuple of int or None
        Each copy's shape, when known (parameters).
    producer : str or None
        "linear", "conv" or "add" for results of those lowerings, whose
        backward does not need them: an activation may overwrite them.
    exclusive : bool
        Whether the tensor is fresh, not shared with any other value of the
        network (an in-place operation on it is invisible elsewhere).
    """

    node: Any
    kind: str = "other"
    batched: bool = False
    ndim: int | None = None
    shape: tuple[int, ...] | None = None
    producer: str | None = None
    exclusive: bool = False


def _arg(args: Sequence, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _with_arg(
    args: Sequence, kwargs: dict, i: int, name: str, value: Any
) -> tuple[tuple, dict]:
    """``args, kwargs`` with argument ``i`` / ``name`` set to ``value``."""
    args, kwargs = tuple(args), dict(kwargs)
    if len(args) > i:
        args = args[:i] + (value,) + args[i + 1 :]
    else:
        kwargs[name] = value
    return args, kwargs


def _without_arg(args: Sequence, kwargs: dict, i: int, name: str) -> tuple[tuple, dict]:
    args, kwargs = tuple(args), dict(kwargs)
    if len(args) > i:
        args = args[:i] + args[i + 1 :]
    kwargs.pop(name, None)
    return args, kwargs


def _shift(d: Any, batched: bool) -> Any:
    """Dimension ``d`` of one copy as a dimension of the stacked value."""
    if not batched or d is None:
        return d
    if isinstance(d, (tuple, list)):
        return type(d)(_shift(e, True) for e in d)
    if isinstance(d, bool) or not isinstance(d, int):
        raise LoweringError(f"dimension {d!r} is not a constant integer")
    return d + 1 if d >= 0 else d


def _fetch(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _name(target: Any) -> str:
    if isinstance(target, str):
        return target
    module = getattr(target, "__module__", None) or ""
    return f"{module}.{getattr(target, '__name__', repr(target))}".lstrip(".")


# Pointwise functions, with the position of their ``inplace`` argument.
_POINTWISE_FUNCTIONS: dict[Callable, int | None] = {
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
    F.gelu: None,
    F.softplus: None,
    F.softsign: None,
    F.tanhshrink: None,
    F.logsigmoid: None,
    F.tanh: None,
    F.sigmoid: None,
    torch.relu: None,
    torch.selu: None,
    torch.celu: None,
    torch.tanh: None,
    torch.sigmoid: None,
    torch.exp: None,
    torch.log: None,
    torch.log1p: None,
    torch.expm1: None,
    torch.sqrt: None,
    torch.rsqrt: None,
    torch.abs: None,
    torch.sin: None,
    torch.cos: None,
    torch.erf: None,
    torch.square: None,
    torch.neg: None,
    torch.reciprocal: None,
    torch.sign: None,
    torch.floor: None,
    torch.ceil: None,
    torch.clamp: None,
    torch.clip: None,
    torch.add: None,
    torch.sub: None,
    torch.mul: None,
    torch.div: None,
    torch.pow: None,
    torch.maximum: None,
    torch.minimum: None,
    torch.where: None,
    operator.add: None,
    operator.sub: None,
    operator.mul: None,
    operator.truediv: None,
    operator.floordiv: None,
    operator.mod: None,
    operator.pow: None,
    operator.neg: None,
    operator.pos: None,
    operator.abs: None,
    operator.eq: None,
    operator.ne: None,
    operator.lt: None,
    operator.le: None,
    operator.gt: None,
    operator.ge: None,
}

#: In-place operators, lowered as their out-of-place counterparts.
_INPLACE_OPERATORS = {
    operator.iadd: operator.add,
    operator.isub: operator.sub,
    operator.imul: operator.mul,
    operator.itruediv: operator.truediv,
}

_POINTWISE_METHODS = {
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
}

#: Methods returning a value of the same shape that may alias their input.
_CAST_METHODS = {
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
}

#: Reductions over ``dim`` (all dims of each copy when ``dim`` is left out).
_REDUCTIONS = {"sum", "mean", "amax", "amin", "var", "std"}
#: Operations along one required ``dim`` keeping the shape.
_ALONG_DIM = {"softmax", "log_softmax", "cumsum", "logsumexp"}

_ADDS = {operator.add, operator.iadd, torch.add, "add", "add_"}

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


# -- lowering one trace into one graph -----------------------------------------
class _Lowerer:
    """Builds the batched graph for one mode, input sharing and input rank."""

    def __init__(
        self, net: LoweredNetwork, mode: str, shared: bool, x_ndim: int | None
    ) -> None:
        self.net = net
        self.mode = mode
        self.shared = shared
        self.x_ndim = x_ndim
        self.graph = fx.Graph()
        self.root = nn.Module()
        self.params = self.graph.placeholder("params")
        self.buffers = self.graph.placeholder("buffers")
        self.x = self.graph.placeholder("x")
        self.generators = self.graph.placeholder("generators")
        self.env: dict[fx.Node, _Value] = {}
        self._slots: dict[tuple[str, int], fx.Node] = {}
        self._constants: dict[int, fx.Node] = {}
        self._m: fx.Node | None = None
        self._seen_input = False

    # emitting --------------------------------------------------------------------
    def fn(self, target: Callable, *args: Any, **kwargs: Any) -> fx.Node:
        return self.graph.call_function(target, args, kwargs)

    def meth(self, name: str, *args: Any, **kwargs: Any) -> fx.Node:
        return self.graph.call_method(name, args, kwargs)

    def like(self, node: fx.Node, args: tuple, kwargs: dict) -> fx.Node:
        """The operation of ``node`` on new arguments."""
        if node.op == "call_method":
            return self.meth(node.target, *args, **kwargs)
        return self.fn(node.target, *args, **kwargs)

    def slot(self, group: str, i: int) -> fx.Node:
        key = (group, i)
        if key not in self._slots:
            holder = self.params if group == "params" else self.buffers
            self._slots[key] = self.fn(operator.getitem, holder, i)
        return self._slots[key]

    def m(self) -> fx.Node:
        """The number of copies, read off the first parameter (or buffer)."""
        if self._m is None:
            group = "params" if self.net.param_names else "buffers"
            self._m = self.meth("size", self.slot(group, 0), 0)
        return self._m

    # values ----------------------------------------------------------------------
    def v(self, a: Any) -> _Value:
        if isinstance(a, fx.Node):
            return self.env[a]
        if isinstance(a, torch.Tensor):
            raise LoweringError("a tensor literal in the trace")
        return _Value(a)

    def tensor(self, a: Any, what: str) -> _Value:
        value = self.v(a)
        if value.kind != "tensor":
            raise LoweringError(f"{what} expects a tensor")
        return value

    def plain(self, a: Any, what: str) -> Any:
        """An argument without any batched value, mapped to the new graph."""

        def one(n: fx.Node) -> Any:
            value = self.env[n]
            if value.batched:
                raise LoweringError(f"{what}: unsupported batched argument {n.name}")
            return value.node

        return fx.node.map_arg(a, one)

    def alias(self, a: fx.Node) -> _Value:
        """``a`` passed through unchanged."""
        value = self.env[a]
        return replace(value, exclusive=value.exclusive and len(a.users) == 1)

    def attribute(self, t: Any, what: str) -> _Value | None:
        """A tensor attribute of the network: parameter, buffer or constant."""
        if t is None:
            return None
        if not isinstance(t, torch.Tensor):
            raise LoweringError(f"{what} is not a tensor")
        shape = tuple(t.shape)
        i = self.net._param_index.get(id(t))
        if i is not None:
            return _Value(self.slot("params", i), "tensor", True, t.ndim, shape)
        j = self.net._buffer_index.get(id(t))
        if j is not None:
            return _Value(self.slot("buffers", j), "tensor", True, t.ndim, shape)
        if id(t) not in self._constants:
            name = f"_constant{len(self._constants)}"
            device = self.net._device_for_constants
            value = t.detach() if device is None else t.detach().to(device)
            setattr(self.root, name, value)
            self._constants[id(t)] = self.graph.get_attr(name)
        return _Value(self._constants[id(t)], "tensor", False, t.ndim, shape)

    def param(self, module: nn.Module, name: str) -> _Value | None:
        value = self.attribute(getattr(module, name), f"{type(module).__name__}.{name}")
        if value is not None and not value.batched:
            raise LoweringError(
                f"{type(module).__name__}.{name} is neither a parameter nor a buffer"
            )
        return value

    def check_inplace(self, node: fx.Node, a: Any) -> None:
        """An in-place operation is lowered out of place only where that is the same."""
        fresh = (
            isinstance(a, fx.Node)
            and a.op not in ("placeholder", "get_attr")
            and self.env[a].exclusive
            and len(a.users) == 1
        )
        if not fresh:
            raise LoweringError(
                f"in-place operation {_name(node.target)} ({node.name}) on a value "
                "that is an input, a parameter, a view or used elsewhere"
            )

    def may_overwrite(self, a: Any) -> bool:
        """Whether a ReLU, ELU or LeakyReLU may overwrite ``a``.

        Only the fresh result of a linear layer, a convolution or an addition
        (whose backward does not need it) that nothing else uses.
        """
        if not isinstance(a, fx.Node):
            return False
        value = self.env[a]
        return (
            value.kind == "tensor"
            and value.producer in ("linear", "conv", "add")
            and value.exclusive
            and len(a.users) == 1
        )

    # driving ---------------------------------------------------------------------
    def run(self) -> fx.Graph:
        for node in self.net._graph.nodes:
            try:
                if node.op == "output":
                    self.output(node)
                    break
                self.env[node] = self.lower_node(node)
            except LoweringError:
                raise
            except Exception as exc:  # a bug or an unforeseen use: fall back
                raise LoweringError(
                    f"cannot lower {node.format_node()}: {exc}"
                ) from exc
        return self.graph

    def output(self, node: fx.Node) -> None:
        value = self.v(node.args[0])
        if value.kind != "tensor":
            raise LoweringError("the network must return a single tensor")
        out = value.node
        if not value.batched:
            out = self.fn(_particles, out, self.m())
        self.graph.output(out)

    def lower_node(self, node: fx.Node) -> _Value:
        if node.op == "placeholder":
            if self._seen_input:
                raise LoweringError("forward must take exactly one tensor argument")
            self._seen_input = True
            ndim = None if self.x_ndim is None else self.x_ndim - (not self.shared)
            return _Value(self.x, "tensor", not self.shared, ndim)
        if node.op == "get_attr":
            return self.attribute(_fetch(self.net._module, node.target), node.target)
        if node.op == "call_module":
            sub = self.net._module.get_submodule(node.target)
            rule = _MODULE_RULES.get(type(sub))
            if rule is None:
                raise LoweringError(
                    f"unsupported module {type(sub).__name__} ({node.target})"
                )
            return rule(self, node, sub)
        if node.op == "call_function":
            return self.call(node, node.target)
        if node.op == "call_method":
            return self.call(node, node.target)
        raise LoweringError(f"unsupported node {node.format_node()}")

    def call(self, node: fx.Node, target: Any) -> _Value:
        args, kwargs = node.args, dict(node.kwargs)
        if node.op == "call_method":
            if target in _POINTWISE_METHODS:
                return self.pointwise(node, args, kwargs)
            if target.endswith("_") and target[:-1] in _POINTWISE_METHODS:
                self.check_inplace(node, args[0])
                return self.pointwise(node, args, kwargs, method=target[:-1])
            if target in _CAST_METHODS:
                return self.cast(node)
            if target in _REDUCTIONS or target in _ALONG_DIM:
                return self.along_dim(node, target)
            rule = _METHOD_RULES.get(target)
            if rule is None:
                raise LoweringError(f"unsupported tensor method .{target}()")
            return rule(self, node)
        if target in _INPLACE_OPERATORS:
            self.check_inplace(node, args[0])
            return self.pointwise(
                node, args, kwargs, function=_INPLACE_OPERATORS[target]
            )
        if target in _POINTWISE_FUNCTIONS:
            return self.pointwise(node, args, kwargs)
        name = getattr(target, "__name__", None)
        if target in _TORCH_REDUCTIONS:
            return self.along_dim(node, name)
        rule = _FUNCTION_RULES.get(target)
        if rule is None:
            raise LoweringError(f"unsupported function {_name(target)}")
        return rule(self, node)

    # generic rules ---------------------------------------------------------------
    def pointwise(
        self,
        node: fx.Node,
        args: Sequence,
        kwargs: dict,
        *,
        method: str | None = None,
        function: Callable | None = None,
    ) -> _Value:
        """An elementwise operation, its batched operands aligned."""
        target = function or method or node.target
        inplace_pos = _POINTWISE_FUNCTIONS.get(target) if callable(target) else None
        if inplace_pos is not None:
            if _arg(args, kwargs, inplace_pos, "inplace", False):
                self.check_inplace(node, args[0])
            args, kwargs = _without_arg(args, kwargs, inplace_pos, "inplace")
        if target is torch.where and len(args) + len(kwargs) != 3:
            raise LoweringError("torch.where with one argument")
        operands = [a for a in (*args, *kwargs.values()) if isinstance(a, fx.Node)]
        values = [self.env[a] for a in operands]
        nested = set(_nodes_in((tuple(args), kwargs))) - set(operands)
        if any(self.env[n].kind != "other" for n in nested):
            raise LoweringError(f"{_name(target)} of a structure holding tensors")
        if any(v.kind == "seq" for v in values):
            raise LoweringError(f"{_name(target)} of a tuple of tensors")
        tensors = [
            (a, v) for a, v in zip(operands, values, strict=True) if v.kind == "tensor"
        ]
        ranks = [v.ndim for _, v in tensors]
        ndim = max(ranks) if ranks and None not in ranks else None
        kind = "tensor" if tensors else "other"
        producer = "add" if target in _ADDS else None
        new: dict[fx.Node, Any] = {}
        batched = any(v.batched for _, v in tensors)
        if batched:
            for a, v in tensors:
                if not v.batched or a in new:
                    continue
                if ndim is None:
                    peers = tuple((u.node, u.batched) for b, u in tensors if b is not a)
                    new[a] = self.fn(_lift, v.node, peers)
                elif v.ndim < ndim:
                    index = (slice(None),) + (None,) * (ndim - v.ndim)
                    new[a] = self.fn(operator.getitem, v.node, index)
        args, kwargs = fx.node.map_arg(
            (tuple(args), kwargs), lambda n: new.get(n, self.env[n].node)
        )
        out = self.emit(node, target, args, kwargs, method, function)
        return _Value(out, kind, batched, ndim, producer=producer, exclusive=True)

    def emit(
        self,
        node: fx.Node,
        target: Any,
        args: tuple,
        kwargs: dict,
        method: str | None,
        function: Callable | None,
    ) -> fx.Node:
        """Emit an elementwise call, in place where an activation may be."""
        source = node.args[0] if node.args else None
        if target in (torch.relu, F.relu, F.elu, F.leaky_relu):
            slope = _arg(args, kwargs, 1, "negative_slope", 0.01)
            alpha = _arg(args, kwargs, 1, "alpha", 1.0)
            allowed = (
                target in (torch.relu, F.relu)
                or (target is F.elu and isinstance(alpha, float) and alpha >= 0)
                or (target is F.leaky_relu and isinstance(slope, float) and slope > 0)
            )
            if allowed and self.may_overwrite(source):
                if target is torch.relu:
                    return self.fn(torch.relu_, *args, **kwargs)
                return self.fn(target, *args, **kwargs, inplace=True)
        if method is not None:
            return self.meth(method, *args, **kwargs)
        if function is not None:
            return self.fn(function, *args, **kwargs)
        return self.like(node, args, kwargs)

    def cast(self, node: fx.Node) -> _Value:
        """Casts and copies (``.float()``, ``.to(...)``, ``.contiguous()``...)."""
        x = self.tensor(node.args[0], f".{node.target}()")
        extra = (node.args[1:], node.kwargs)
        if any(self.env[n].kind != "other" for n in _nodes_in(extra)):
            raise LoweringError(f".{node.target}() with a tensor argument")
        args, kwargs = self.plain(extra, f".{node.target}()")
        out = self.meth(node.target, x.node, *args, **kwargs)
        return replace(x, node=out, exclusive=node.target == "clone", producer=None)

    def along_dim(self, node: fx.Node, name: str) -> _Value:
        """Reductions and other operations along ``dim``."""
        args, kwargs = node.args, dict(node.kwargs)
        x = self.tensor(args[0], name)
        rest = self.plain((args[1:], kwargs), name)
        if not x.batched:
            out = self.like(node, (x.node, *rest[0]), rest[1])
            ndim = x.ndim if name in _ALONG_DIM - {"logsumexp"} else None
            return _Value(out, "tensor", False, ndim, exclusive=True)
        dim = _arg(args, kwargs, 1, "dim")
        if dim is None and name in _ALONG_DIM:
            raise LoweringError(f"{name} without an explicit dim")
        keepdim = bool(kwargs.get("keepdim", False))
        if name in ("sum", "mean", "amax", "amin", "logsumexp") and len(args) > 2:
            keepdim = bool(args[2])
        if dim is None:
            if len(args) > 1:
                raise LoweringError(f"{name} with positional arguments but no dim")
            kw = {k: w for k, w in rest[1].items() if k != "dim"}
            out = self.fn(_reduce_all, x.node, name, kw)
            ndim = x.ndim if keepdim else 0
            return _Value(out, "tensor", True, ndim, exclusive=True)
        args, kwargs = _with_arg(rest[0], rest[1], 0, "dim", _shift(dim, True))
        out = self.like(node, (x.node, *args), kwargs)
        ndim = x.ndim
        if ndim is not None and name not in _ALONG_DIM - {"logsumexp"} and not keepdim:
            ndim -= len(dim) if isinstance(dim, (tuple, list)) else 1
        return _Value(out, "tensor", True, ndim, exclusive=True)

    # modules ---------------------------------------------------------------------
    def m_linear(self, node: fx.Node, mod: nn.Linear) -> _Value:
        x = self.tensor(node.args[0], node.target)
        return self.linear(x, self.param(mod, "weight"), self.param(mod, "bias"))

    def linear(self, x: _Value, w: _Value, b: _Value | None) -> _Value:
        if w.ndim != 2 or (b is not None and (not b.batched or b.ndim != 1)):
            raise LoweringError("linear with unsupported weight or bias")
        n_in = w.shape[1] if w.shape is not None else None
        if x.ndim == 2:
            wt = self.meth("transpose", w.node, 1, 2)
            bias = None if b is None else self.meth("unsqueeze", b.node, 1)
            h = x.node
            if not x.batched and n_in == 1:  # one shared feature: outer product
                h = self.meth("unsqueeze", h, 0)
                if bias is None:
                    out = self.fn(torch.mul, h, wt)
                else:
                    out = self.fn(torch.addcmul, bias, h, wt)
            else:
                if not x.batched:
                    h = self.meth("expand", h, self.m(), -1, -1)
                if bias is None:
                    out = self.fn(torch.bmm, h, wt)
                else:
                    out = self.fn(torch.baddbmm, bias, h, wt)
        else:
            bias = None if b is None else b.node
            out = self.fn(_linear, x.node, w.node, bias, not x.batched)
        return _Value(out, "tensor", True, x.ndim, producer="linear", exclusive=True)

    def m_conv(self, node: fx.Node, mod: nn.Conv1d | nn.Conv2d | nn.Conv3d) -> _Value:
        x = self.tensor(node.args[0], node.target)
        dims = len(mod.kernel_size)
        if x.ndim is not None and x.ndim != dims + 2:
            raise LoweringError(
                f"{node.target}: each copy's input must have {dims + 2} dimensions"
            )
        w, b = self.param(mod, "weight"), self.param(mod, "bias")
        if mod.padding_mode == "zeros":
            pad, padding = None, mod.padding
        else:
            pad, padding = tuple(mod._reversed_padding_repeated_twice), 0
        out = self.fn(
            _conv,
            x.node,
            w.node,
            None if b is None else b.node,
            not x.batched,
            dims,
            tuple(mod.stride),
            padding if isinstance(padding, str) else _tuple(padding, dims),
            tuple(mod.dilation),
            mod.groups,
            pad,
            mod.padding_mode,
        )
        return _Value(out, "tensor", True, x.ndim, producer="conv", exclusive=True)

    def m_batch_norm(self, node: fx.Node, mod: _BatchNorm) -> _Value:
        x = self.tensor(node.args[0], node.target)
        ranks = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}
        if x.ndim is not None and x.ndim not in ranks[type(mod)]:
            raise LoweringError(f"{node.target}: input with {x.ndim} dimensions")
        tracking = mod.running_mean is not None
        batch_stats = self.mode != "eval" or not tracking
        update = tracking and self.mode != "eval"
        cumulative = self.mode == "refresh" or mod.momentum is None
        h = x.node if x.batched else self.fn(_particles, x.node, self.m())
        nodes = [
            None if v is None else v.node
            for v in (
                self.param(mod, "weight"),
                self.param(mod, "bias"),
                self.param(mod, "running_mean"),
                self.param(mod, "running_var"),
                self.param(mod, "num_batches_tracked"),
            )
        ]
        momentum = 0.0 if mod.momentum is None else float(mod.momentum)
        out = self.fn(
            _batch_norm,
            h,
            *nodes,
            float(mod.eps),
            momentum,
            batch_stats,
            update,
            cumulative,
        )
        return _Value(out, "tensor", True, x.ndim, exclusive=True)

    def m_layer_norm(self, node: fx.Node, mod: nn.LayerNorm) -> _Value:
        x = self.tensor(node.args[0], node.target)
        w, b = self.param(mod, "weight"), self.param(mod, "bias")
        out = self.fn(
            _layer_norm,
            x.node,
            tuple(mod.normalized_shape),
            None if w is None else w.node,
            None if b is None else b.node,
            float(mod.eps),
            not x.batched,
        )
        batched = x.batched or w is not None or b is not None
        return _Value(out, "tensor", batched, x.ndim, exclusive=True)

    def m_group_norm(self, node: fx.Node, mod: nn.GroupNorm) -> _Value:
        x = self.tensor(node.args[0], node.target)
        w, b = self.param(mod, "weight"), self.param(mod, "bias")
        h = x.node if x.batched else self.fn(_particles, x.node, self.m())
        out = self.fn(
            _group_norm,
            h,
            mod.num_groups,
            None if w is None else w.node,
            None if b is None else b.node,
            float(mod.eps),
            self.m(),
        )
        return _Value(out, "tensor", True, x.ndim, exclusive=True)

    def m_embedding(self, node: fx.Node, mod: nn.Embedding) -> _Value:
        if mod.max_norm is not None or mod.scale_grad_by_freq or mod.sparse:
            raise LoweringError(
                f"{node.target}: Embedding with max_norm, scale_grad_by_freq or sparse"
            )
        x = self.tensor(node.args[0], node.target)
        w = self.param(mod, "weight")
        out = self.fn(_embedding, x.node, w.node, not x.batched, mod.padding_idx)
        ndim = None if x.ndim is None else x.ndim + 1
        return _Value(out, "tensor", True, ndim, exclusive=True)

    def m_dropout(self, node: fx.Node, mod: nn.Dropout) -> _Value:
        if mod.inplace:
            self.check_inplace(node, node.args[0])
        return self.dropout(node.args[0], float(mod.p))

    def dropout(self, a: Any, p: float) -> _Value:
        x = self.tensor(a, "dropout")
        if self.mode != "train" or p == 0:
            return self.alias(a)
        out = self.fn(_dropout, x.node, p, not x.batched, self.generators, self.m())
        return _Value(out, "tensor", True, x.ndim, exclusive=True)

    def m_pool(self, node: fx.Node, mod: nn.Module) -> _Value:
        x = self.tensor(node.args[0], node.target)
        if getattr(mod, "return_indices", False):
            raise LoweringError(f"{node.target}: pooling with return_indices")
        function, names = _POOLS[type(mod)]
        kwargs = {n: getattr(mod, n) for n in names}
        for extra in ("ceil_mode", "count_include_pad", "divisor_override"):
            if hasattr(mod, extra):
                kwargs[extra] = getattr(mod, extra)
        if x.batched:
            out = self.fn(_pool, x.node, function.__name__, kwargs)
        else:
            out = self.fn(function, x.node, **kwargs)
        return _Value(out, "tensor", x.batched, x.ndim, exclusive=True)

    def m_identity(self, node: fx.Node, mod: nn.Module) -> _Value:
        self.tensor(node.args[0], node.target)
        return self.alias(node.args[0])

    def m_activation(self, node: fx.Node, mod: nn.Module) -> _Value:
        a = node.args[0]
        x = self.tensor(a, node.target)
        if getattr(mod, "inplace", False):
            self.check_inplace(node, a)
        overwrite = self.may_overwrite(a)
        if isinstance(mod, nn.ReLU):
            out = self.fn(torch.relu_ if overwrite else torch.relu, x.node)
        elif isinstance(mod, nn.ELU):
            alpha = float(mod.alpha)
            elu = torch._C._nn.elu_ if overwrite and alpha >= 0 else torch._C._nn.elu
            out = self.fn(elu, x.node, alpha)
        elif isinstance(mod, nn.LeakyReLU):
            slope = float(mod.negative_slope)
            leaky = torch._C._nn.leaky_relu
            if overwrite and slope > 0:
                leaky = torch._C._nn.leaky_relu_
            out = self.fn(leaky, x.node, slope)
        else:
            function, names = _ACTIVATION_MODULES[type(mod)]
            out = self.fn(function, x.node, **{n: getattr(mod, n) for n in names})
        return _Value(out, "tensor", x.batched, x.ndim, exclusive=True)

    def m_prelu(self, node: fx.Node, mod: nn.PReLU) -> _Value:
        x = self.tensor(node.args[0], node.target)
        w = self.param(mod, "weight")
        out = self.fn(_prelu, x.node, w.node, not x.batched)
        return _Value(out, "tensor", True, x.ndim, exclusive=True)

    def m_softmax(self, node: fx.Node, mod: nn.Softmax | nn.LogSoftmax) -> _Value:
        x = self.tensor(node.args[0], node.target)
        if mod.dim is None:
            raise LoweringError(f"{node.target}: softmax without an explicit dim")
        name = "softmax" if isinstance(mod, nn.Softmax) else "log_softmax"
        out = self.meth(name, x.node, _shift(mod.dim, x.batched))
        return _Value(out, "tensor", x.batched, x.ndim, exclusive=True)

    def m_flatten(self, node: fx.Node, mod: nn.Flatten) -> _Value:
        x = self.tensor(node.args[0], node.target)
        return self.flatten(x, mod.start_dim, mod.end_dim)

    def flatten(self, x: _Value, start: int, end: int) -> _Value:
        out = self.fn(
            torch.flatten, x.node, _shift(start, x.batched), _shift(end, x.batched)
        )
        ndim = None
        if x.ndim is not None and x.ndim > 0:
            ndim = x.ndim - ((end % x.ndim) - (start % x.ndim))
        return _Value(out, "tensor", x.batched, ndim)

    def m_unflatten(self, node: fx.Node, mod: nn.Unflatten) -> _Value:
        x = self.tensor(node.args[0], node.target)
        sizes = tuple(mod.unflattened_size)
        out = self.meth("unflatten", x.node, _shift(mod.dim, x.batched), sizes)
        ndim = None if x.ndim is None else x.ndim + len(sizes) - 1
        return _Value(out, "tensor", x.batched, ndim)

    # functions and methods ---------------------------------------------------------
    def f_linear(self, node: fx.Node) -> _Value:
        args, kwargs = node.args, node.kwargs
        x = self.tensor(args[0], "linear")
        w = self.tensor(_arg(args, kwargs, 1, "weight"), "linear")
        b_arg = _arg(args, kwargs, 2, "bias")
        b = None if b_arg is None else self.tensor(b_arg, "linear")
        if not w.batched and (b is None or not b.batched):
            out = self.fn(F.linear, x.node, w.node, None if b is None else b.node)
            return _Value(out, "tensor", x.batched, x.ndim, exclusive=True)
        return self.linear(x, w, b)

    def f_dropout(self, node: fx.Node) -> _Value:
        args, kwargs = node.args, node.kwargs
        p = _arg(args, kwargs, 1, "p", 0.5)
        if not isinstance(p, (int, float)):
            raise LoweringError("dropout with a computed p")
        if _arg(args, kwargs, 3, "inplace", False):
            self.check_inplace(node, args[0])
        return self.dropout(args[0], float(p))

    def f_getattr(self, node: fx.Node) -> _Value:
        x = self.v(node.args[0])
        name = node.args[1]
        if x.kind != "tensor" or len(node.args) != 2:
            raise LoweringError(f"getattr {name!r} of a non-tensor")
        if name in ("dtype", "device", "is_cuda", "requires_grad"):
            return _Value(self.fn(builtins.getattr, x.node, name))
        if name == "shape":
            out = self.fn(builtins.getattr, x.node, "shape")
            if x.batched:
                out = self.fn(operator.getitem, out, slice(1, None))
            return _Value(out)
        if name == "ndim":
            out = self.fn(builtins.getattr, x.node, "ndim")
            return _Value(self.fn(operator.sub, out, 1) if x.batched else out)
        raise LoweringError(f"unsupported tensor attribute .{name}")

    def f_getitem(self, node: fx.Node) -> _Value:
        base, index = node.args
        x = self.v(base)
        if x.kind == "seq":
            if not isinstance(index, int):
                if isinstance(index, slice) and not _nodes_in(index):
                    return replace(x, node=self.fn(operator.getitem, x.node, index))
                raise LoweringError("indexing a tuple of tensors with a computed index")
            out = self.fn(operator.getitem, x.node, index)
            return _Value(out, "tensor", x.batched, x.ndim)
        if x.kind == "other":
            out = self.fn(operator.getitem, x.node, self.plain(index, "getitem"))
            return _Value(out)
        items = index if isinstance(index, tuple) else (index,)
        ndim = x.ndim
        for item in items:
            if isinstance(item, (fx.Node, slice)):
                if any(self.env[n].kind != "other" for n in _nodes_in(item)):
                    raise LoweringError("indexing a tensor with a tensor")
                if isinstance(item, fx.Node):
                    ndim = None  # a computed int or slice
            elif item is None:
                ndim = None if ndim is None else ndim + 1
            elif isinstance(item, int) and not isinstance(item, bool):
                ndim = None if ndim is None else ndim - 1
            elif item is not Ellipsis:
                raise LoweringError(f"advanced indexing of a tensor with {item!r}")
        items = self.plain(items, "getitem")
        if x.batched:
            items = (slice(None), *items)
        out = self.fn(operator.getitem, x.node, items)
        return _Value(out, "tensor", x.batched, ndim)

    def r_size(self, node: fx.Node) -> _Value:
        x = self.tensor(node.args[0], "size")
        dim = _arg(node.args, node.kwargs, 1, "dim")
        if isinstance(dim, fx.Node):
            raise LoweringError("size of a computed dimension")
        if dim is None:
            out = self.meth("size", x.node)
            if x.batched:
                out = self.fn(operator.getitem, out, slice(1, None))
        else:
            out = self.meth("size", x.node, _shift(dim, x.batched))
        return _Value(out)

    def r_dim(self, node: fx.Node) -> _Value:
        x = self.tensor(node.args[0], "dim")
        out = self.meth("dim", x.node)
        return _Value(self.fn(operator.sub, out, 1) if x.batched else out)

    def r_numel(self, node: fx.Node) -> _Value:
        x = self.tensor(node.args[0], "numel")
        out = self.meth("numel", x.node)
        return _Value(self.fn(operator.floordiv, out, self.m()) if x.batched else out)

    def r_reshape(self, node: fx.Node) -> _Value:
        x = self.tensor(node.args[0], str(node.target))
        rest = node.args[1:] or (node.kwargs.get("shape", node.kwargs.get("size")),)
        if len(rest) == 1 and not isinstance(rest[0], int):
            rest = rest[0]
        if isinstance(rest, fx.Node):
            if self.env[rest].kind != "other":
                raise LoweringError("view/reshape with a tensor argument")
            shape = self.plain(rest, "reshape")
            if x.batched:
                shape = self.fn(_prepend, self.m(), shape)
            ndim = None
        else:
            if not isinstance(rest, (tuple, list)) or any(
                not isinstance(s, (int, fx.Node)) or isinstance(s, bool) for s in rest
            ):
                raise LoweringError(f"view/reshape with arguments {rest!r}")
            shape = tuple(self.plain(tuple(rest), "reshape"))
            if x.batched:
                shape = (self.m(), *shape)
            ndim = len(rest)
        out = self.meth("reshape", x.node, shape)
        return _Value(out, "tensor", x.batched, ndim)

    def r_flatten(self, node: fx.Node) -> _Value:
        args, kwargs = node.args, node.kwargs
        x = self.tensor(args[0], "flatten")
        start = _arg(args, kwargs, 1, "start_dim", 0)
        end = _arg(args, kwargs, 2, "end_dim", -1)
        if not isinstance(start, int) or not isinstance(end, int):
            raise LoweringError("flatten with computed dims")
        return self.flatten(x, start, end)

    def r_unflatten(self, node: fx.Node) -> _Value:
        args, kwargs = node.args, node.kwargs
        x = self.tensor(args[0], "unflatten")
        dim = _arg(args, kwargs, 1, "dim")
        sizes = self.plain(_arg(args, kwargs, 2, "sizes"), "unflatten")
        out = self.meth("unflatten", x.node, _shift(dim, x.batched), sizes)
        return _Value(out, "tensor", x.batched, None)

    def r_unsqueeze(self, node: fx.Node) -> _Value:
        x = self.tensor(node.args[0], "unsqueeze")
        dim = _arg(node.args, node.kwargs, 1, "dim")
        out = self.meth("unsqueeze", x.node, _shift(dim, x.batched))
        ndim = None if x.ndim is None else x.ndim + 1
        return _Value(out, "tensor", x.batched, ndim)

    def r_squeeze(self, node: fx.Node) -> _Value:
        x = self.tensor(node.args[0], "squeeze")
        dim = _arg(node.args, node.kwargs, 1, "dim")
        if dim is None and x.batched:
            out = self.fn(_squeeze_all, x.node)
        elif dim is None:
            out = self.meth("squeeze", x.node)
        else:
            out = self.meth("squeeze", x.node, _shift(dim, x.batched))
        return _Value(out, "tensor", x.batched, None)

    def r_permute(self, node: fx.Node) -> _Value:
        x = self.tensor(node.args[0], "permute")
        dims = node.args[1:] or (node.kwargs.get("dims"),)
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        if not all(isinstance(d, int) for d in dims):
            raise LoweringError("permute with computed dims")
        if x.batched:
            dims = (0, *_shift(tuple(dims), True))
        out = self.meth("permute", x.node, tuple(dims))
        return _Value(out, "tensor", x.batched, x.ndim)

    def r_transpose(self, node: fx.Node) -> _Value:
        args, kwargs = node.args, node.kwargs
        x = self.tensor(args[0], "transpose")
        d0 = _arg(args, kwargs, 1, "dim0")
        d1 = _arg(args, kwargs, 2, "dim1")
        out = self.meth(
            "transpose", x.node, _shift(d0, x.batched), _shift(d1, x.batched)
        )
        return _Value(out, "tensor", x.batched, x.ndim)

    def r_expand(self, node: fx.Node) -> _Value:
        x = self.tensor(node.args[0], "expand")
        sizes = node.args[1:]
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        if node.kwargs or any(
            not isinstance(s, (int, fx.Node)) or isinstance(s, bool) for s in sizes
        ):
            raise LoweringError("expand with unsupported arguments")
        sizes = tuple(self.plain(tuple(sizes), "expand"))
        if x.batched and x.ndim == len(sizes):
            out = self.meth("expand", x.node, -1, *sizes)
        elif x.batched:
            out = self.fn(_expand, x.node, sizes)
        else:
            out = self.meth("expand", x.node, *sizes)
        return _Value(out, "tensor", x.batched, len(sizes) - x.batched)

    def r_split(self, node: fx.Node) -> _Value:
        """``chunk``, ``split`` and ``unbind``: a tuple of tensors."""
        args, kwargs = node.args, dict(node.kwargs)
        x = self.tensor(args[0], "split")
        name = node.target if isinstance(node.target, str) else node.target.__name__
        pos = 1 if name == "unbind" else 2
        dim = _arg(args, kwargs, pos, "dim", 0)
        rest = self.plain((args[1:], kwargs), name)
        new_args, new_kwargs = _with_arg(
            rest[0], rest[1], pos - 1, "dim", _shift(dim, x.batched)
        )
        out = self.like(node, (x.node, *new_args), new_kwargs)
        ndim = x.ndim
        if name == "unbind" and ndim is not None:
            ndim -= 1
        return _Value(out, "seq", x.batched, ndim)

    def r_cat(self, node: fx.Node) -> _Value:
        args, kwargs = node.args, node.kwargs
        items = _arg(args, kwargs, 0, "tensors")
        dim = _arg(args, kwargs, 1, "dim", 0)
        if not isinstance(items, (tuple, list)) or not items:
            raise LoweringError("cat/stack of a computed sequence")
        values = [self.tensor(a, "cat") for a in items]
        batched = any(v.batched for v in values)
        nodes = [
            v.node
            if v.batched or not batched
            else self.fn(_particles, v.node, self.m())
            for v in values
        ]
        out = self.fn(node.target, nodes, _shift(dim, batched))
        ndims = {v.ndim for v in values}
        ndim = ndims.pop() if len(ndims) == 1 else None
        if ndim is not None and node.target is torch.stack:
            ndim += 1
        return _Value(out, "tensor", batched, ndim, exclusive=True)


def _tuple(value: Any, dims: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


def _nodes_in(a: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg(a, found.append)
    return found


_TORCH_REDUCTIONS = {
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
}

_MODULE_RULES: dict[type, Callable[[_Lowerer, fx.Node, Any], _Value]] = {
    nn.Linear: _Lowerer.m_linear,
    nn.Conv1d: _Lowerer.m_conv,
    nn.Conv2d: _Lowerer.m_conv,
    nn.Conv3d: _Lowerer.m_conv,
    nn.BatchNorm1d: _Lowerer.m_batch_norm,
    nn.BatchNorm2d: _Lowerer.m_batch_norm,
    nn.BatchNorm3d: _Lowerer.m_batch_norm,
    nn.LayerNorm: _Lowerer.m_layer_norm,
    nn.GroupNorm: _Lowerer.m_group_norm,
    nn.Embedding: _Lowerer.m_embedding,
    nn.Dropout: _Lowerer.m_dropout,
    nn.Identity: _Lowerer.m_identity,
    nn.ReLU: _Lowerer.m_activation,
    nn.ELU: _Lowerer.m_activation,
    nn.LeakyReLU: _Lowerer.m_activation,
    nn.PReLU: _Lowerer.m_prelu,
    nn.Softmax: _Lowerer.m_softmax,
    nn.LogSoftmax: _Lowerer.m_softmax,
    nn.Flatten: _Lowerer.m_flatten,
    nn.Unflatten: _Lowerer.m_unflatten,
    **dict.fromkeys(_ACTIVATION_MODULES, _Lowerer.m_activation),
    **dict.fromkeys(_POOLS, _Lowerer.m_pool),
}

_FUNCTION_RULES: dict[Any, Callable[[_Lowerer, fx.Node], _Value]] = {
    F.linear: _Lowerer.f_linear,
    F.dropout: _Lowerer.f_dropout,
    builtins.getattr: _Lowerer.f_getattr,
    operator.getitem: _Lowerer.f_getitem,
    torch.flatten: _Lowerer.r_flatten,
    torch.reshape: _Lowerer.r_reshape,
    torch.unsqueeze: _Lowerer.r_unsqueeze,
    torch.squeeze: _Lowerer.r_squeeze,
    torch.permute: _Lowerer.r_permute,
    torch.transpose: _Lowerer.r_transpose,
    torch.chunk: _Lowerer.r_split,
    torch.split: _Lowerer.r_split,
    torch.unbind: _Lowerer.r_split,
    torch.cat: _Lowerer.r_cat,
    torch.concat: _Lowerer.r_cat,
    torch.stack: _Lowerer.r_cat,
}

_METHOD_RULES: dict[str, Callable[[_Lowerer, fx.Node], _Value]] = {
    "size": _Lowerer.r_size,
    "dim": _Lowerer.r_dim,
    "ndimension": _Lowerer.r_dim,
    "numel": _Lowerer.r_numel,
    "view": _Lowerer.r_reshape,
    "reshape": _Lowerer.r_reshape,
    "flatten": _Lowerer.r_flatten,
    "unflatten": _Lowerer.r_unflatten,
    "unsqueeze": _Lowerer.r_unsqueeze,
    "squeeze": _Lowerer.r_squeeze,
    "permute": _Lowerer.r_permute,
    "transpose": _Lowerer.r_transpose,
    "expand": _Lowerer.r_expand,
    "chunk": _Lowerer.r_split,
    "split": _Lowerer.r_split,
    "unbind": _Lowerer.r_split,
}


#: Serialises tracing within a process (see :func:`_trace`).
_TRACE_LOCK = threading.Lock()


def _trace(module: nn.Module) -> fx.Graph:
    """The fx graph of ``module``, the same in training and in eval mode.

    fx records ``self.training`` as a constant: a forward that branches on it
    (other than to pass it to ``F.dropout``, which is lowered by the mode of
    the call) would be lowered for one mode only, so it is refused.
    """
    if type(module) in _MODULE_RULES:  # a lone layer: fx would trace into it
        graph = fx.Graph()
        graph.output(graph.call_module("", (graph.placeholder("x"),)))
        return graph
    flags = {m: m.training for m in module.modules()}
    graphs = []
    try:
        # fx patches torch.nn.Module.__call__ for the whole process while it
        # traces: two traces at once would record each other's modules.
        with _TRACE_LOCK:
            for training in (True, False):
                module.train(training)
                graphs.append(fx.Tracer().trace(module))
    except Exception as exc:
        raise LoweringError(
            f"cannot trace {type(module).__name__}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        for m, training in flags.items():
            m.training = training
    if _signature(graphs[0]) != _signature(graphs[1]):
        raise LoweringError(
            f"the forward of {type(module).__name__} depends on self.training"
        )
    return graphs[0]


def _signature(graph: fx.Graph) -> list[tuple[str, str, str]]:
    """The operations of ``graph``, ``F.dropout``'s ``training`` left out."""
    out = []
    for node in graph.nodes:
        args, kwargs = node.args, dict(node.kwargs)
        if node.target is F.dropout:
            args = args[:2]
            kwargs.pop("training", None)
        target = str(node.target)
        if node.op == "get_attr" and target.startswith("_tensor_constant"):
            target = "_tensor_constant"  # a fresh name at every trace
        names = fx.node.map_arg((args, kwargs), lambda n: n.name)
        out.append((node.op, target, repr(names)))
    return out


# -- the public objects --------------------------------------------------------
class LoweredNetwork:
    """One network, evaluated for many weight vectors at once.

    Built by :func:`lower`. Calling it evaluates ``M`` copies of the network,
    copy ``m`` with ``params[i][m]`` and ``buffers[j][m]``, as one batched
    computation.

    Parameters
    ----------
    module : torch.nn.Module
        The network; a copy of it is kept (and traced).

    Attributes
    ----------
    param_names : list of str
        The names of ``module.named_parameters()``, in order: what ``params``
        holds.
    buffer_names : list of str
        The names of ``module.named_buffers()``, in order: what ``buffers``
        holds.
    has_batch_norm : bool
        Whether the network has a ``BatchNorm`` layer.
    """

    def __init__(self, module: nn.Module) -> None:
        self._module = copy.deepcopy(module)
        self._setup()

    def _setup(self) -> None:
        module = self._module
        named_params = list(module.named_parameters())
        named_buffers = list(module.named_buffers())
        self.param_names = [name for name, _ in named_params]
        self.buffer_names = [name for name, _ in named_buffers]
        self.has_batch_norm = any(isinstance(m, _BatchNorm) for m in module.modules())
        self._param_index = {id(p): i for i, (_, p) in enumerate(named_params)}
        self._buffer_index = {id(b): j for j, (_, b) in enumerate(named_buffers)}
        self._device_for_constants: torch.device | None = None
        if not named_params and not named_buffers:
            raise LoweringError("a network without parameters or buffers")
        self._graph = _trace(module)
        self._lock = threading.Lock()
        self._compiled: dict[tuple, Callable] = {}
        for mode, shared in (("train", False), ("eval", True)):
            _Lowerer(self, mode, shared, None).run()  # fail early, not at a call

    def __call__(
        self,
        params: Sequence[torch.Tensor],
        buffers: Sequence[torch.Tensor],
        x: torch.Tensor,
        *,
        mode: str,
        shared_input: bool,
        generators: Sequence[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Evaluate every copy.

        Parameters
        ----------
        params : sequence of torch.Tensor
            One tensor per name of :attr:`param_names`, each ``(M, *shape)``.
        buffers : sequence of torch.Tensor
            One tensor per name of :attr:`buffer_names`, each ``(M, *shape)``;
            ``BatchNorm`` statistics are updated in them in place in the
            "train" and "refresh" modes.
        x : torch.Tensor
            ``(N, ...)`` rows shared by every copy, or ``(M, N, ...)``.
        mode : {"train", "eval", "refresh"}
            As ``module.train()``, as ``module.eval()``, or recomputing the
            ``BatchNorm`` statistics as cumulative averages over the batches
            since the caller reset them (no dropout).
        shared_input : bool
            Whether ``x`` is shared by every copy.
        generators : sequence of torch.Generator, optional
            In "train" mode, one per copy: the source of its dropout masks.
            Without them masks come from the global random state.

        Returns
        -------
        torch.Tensor
            ``(M, N, ...)``: every copy's output.
        """
        key = (mode, shared_input, x.ndim, x.device)
        fn = self._compiled.get(key)
        if fn is None:
            fn = self._compile(key)
        return fn(params, buffers, x, generators)

    def _compile(self, key: tuple) -> Callable:
        mode, shared, ndim, device = key
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")
        with self._lock:
            fn = self._compiled.get(key)
            if fn is None:
                self._device_for_constants = device
                lowerer = _Lowerer(self, mode, bool(shared), ndim)
                graph = lowerer.run()
                fn = fx.GraphModule(lowerer.root, graph).forward
                self._compiled[key] = fn
        return fn

    def __getstate__(self) -> dict:
        return {"module": self._module}

    def __setstate__(self, state: dict) -> None:
        self._module = state["module"]
        self._setup()

    def __repr__(self) -> str:
        return f"LoweredNetwork({type(self._module).__name__})"


def lower(module: nn.Module) -> LoweredNetwork:
    """Rewrite ``module`` into a function of stacked weights.

    Parameters
    ----------
    module : torch.nn.Module
        The network; its forward takes one tensor and returns one tensor.

    Returns
    -------
    LoweredNetwork

    Raises
    ------
    LoweringError
        The network cannot be traced by :mod:`torch.fx`, or uses a module,
        function or method that has no batched rewrite here.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.func import stack_module_state
    >>> nets = [nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    ...         for _ in range(4)]
    >>> params, buffers = stack_module_state(nets)
    >>> net = lower(nets[0])
    >>> out = net([params[n] for n in net.param_names], [], torch.zeros(5, 3),
    ...           mode="eval", shared_input=True)
    >>> out.shape
    torch.Size([4, 5, 1])
    """
    return LoweredNetwork(module)
