"""The driver: walk a network's trace, emitting batched nodes.

:func:`~.tracing.trace` records the network's forward with :mod:`torch.fx`. A
:class:`Lowerer` interprets that trace node by node, as a
:class:`torch.fx.Interpreter` does, but instead of computing values it emits
the batched operations of each node into a new graph and records what it
knows about the result (a :class:`~.values.Value`: batched or shared, rank,
whether it may be overwritten). Calls of modules, functions and methods go to
the rules of :mod:`.registry`; elementwise operations, which only need their
batched operands aligned, are lowered here.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from . import kernels
from .registry import FUNCTION_RULES, METHOD_RULES, MODULE_RULES
from .values import (
    LoweringError,
    UnforeseenLoweringError,
    Value,
    arg,
    nodes_in,
    qualified_name,
    without_arg,
)

if TYPE_CHECKING:
    from .network import LoweredNetwork

#: Targets whose result is a sum: its backward does not need it, so an
#: activation after it may overwrite it.
_ADDS = {operator.add, operator.iadd, torch.add, "add", "add_"}
#: Activations that may run in place on such a result.
_OVERWRITING = (torch.relu, F.relu, F.elu, F.leaky_relu)


class Lowerer(fx.Interpreter):
    """Builds the batched graph for one mode, input sharing and input rank.

    The interpreter's ``env`` maps each node of the trace to its
    :class:`~.values.Value`. Unlike a plain :class:`torch.fx.Interpreter`,
    each node is lowered from the node itself, not from the values of its
    arguments: a rule needs the trace's structure too (who else uses an
    argument, before an in-place operation).

    Parameters
    ----------
    net : LoweredNetwork
        The network: its module, trace, and the indices of its parameters and
        buffers.
    mode : {"train", "eval", "refresh"}
        The mode the graph computes.
    shared : bool
        Whether the input is shared by every copy.
    x_ndim : int or None
        Dimensions of the input tensor, if known.

    Attributes
    ----------
    new_graph : torch.fx.Graph
        The batched graph, a function of ``params``, ``buffers``, ``x`` and
        ``generators``.
    root : torch.nn.Module
        Holds the constant tensors that ``new_graph`` reads.
    """

    def __init__(
        self, net: LoweredNetwork, mode: str, shared: bool, x_ndim: int | None
    ) -> None:
        super().__init__(net._module, garbage_collect_values=False, graph=net._graph)
        self.extra_traceback = False  # our messages name the node themselves
        self.net = net
        self.mode = mode
        self.shared = shared
        self.x_ndim = x_ndim
        self.new_graph = fx.Graph()
        self.root = nn.Module()
        self.params = self.new_graph.placeholder("params")
        self.buffers = self.new_graph.placeholder("buffers")
        self.x = self.new_graph.placeholder("x")
        self.generators = self.new_graph.placeholder("generators")
        self._slots: dict[tuple[str, int], fx.Node] = {}
        self._constants: dict[int, fx.Node] = {}
        self._m: fx.Node | None = None
        self._seen_input = False

    # driving ---------------------------------------------------------------------
    def run(self) -> fx.Graph:  # type: ignore[override]
        """Lower every node of the trace; the batched graph."""
        return super().run(enable_io_processing=False)

    def run_node(self, n: fx.Node) -> Any:
        """Lower one node; an unforeseen failure is an
        :class:`~.values.UnforeseenLoweringError`."""
        lower = getattr(self, f"lower_{n.op}", None)
        if lower is None:
            raise LoweringError(f"unsupported node {n.format_node()}")
        try:
            return lower(n)
        except LoweringError:
            raise
        except Exception as exc:  # a bug or an unforeseen use
            raise UnforeseenLoweringError(
                f"cannot lower {n.format_node()}: {type(exc).__name__}: {exc}"
            ) from exc

    def lower_placeholder(self, node: fx.Node) -> Value:
        if self._seen_input:
            raise LoweringError("forward must take exactly one tensor argument")
        self._seen_input = True
        ndim = None if self.x_ndim is None else self.x_ndim - (not self.shared)
        return Value(self.x, "tensor", not self.shared, ndim)

    def lower_get_attr(self, node: fx.Node) -> Value:
        obj: Any = self.module
        for part in node.target.split("."):
            obj = getattr(obj, part)
        return self.attribute(obj, node.target)

    def lower_call_module(self, node: fx.Node) -> Value:
        sub = self.module.get_submodule(node.target)
        rule = MODULE_RULES.get(type(sub))
        if rule is None:
            raise LoweringError(
                f"unsupported module {type(sub).__name__} ({node.target})"
            )
        return rule(self, node, sub)

    def lower_call_function(self, node: fx.Node) -> Value:
        rule = FUNCTION_RULES.get(node.target)
        if rule is None:
            raise LoweringError(f"unsupported function {qualified_name(node.target)}")
        return rule(self, node)

    def lower_call_method(self, node: fx.Node) -> Value:
        rule = METHOD_RULES.get(node.target)
        if rule is None:
            raise LoweringError(f"unsupported tensor method .{node.target}()")
        return rule(self, node)

    def lower_output(self, node: fx.Node) -> fx.Graph:
        value = self.v(node.args[0])
        if value.kind != "tensor":
            raise LoweringError("the network must return a single tensor")
        out = value.node
        if not value.batched:
            out = self.fn(kernels.particles, out, self.m())
        self.new_graph.output(out)
        return self.new_graph

    # emitting --------------------------------------------------------------------
    def fn(self, target: Any, *args: Any, **kwargs: Any) -> fx.Node:
        """Emit a call of the function ``target``."""
        return self.new_graph.call_function(target, args, kwargs)

    def meth(self, name: str, *args: Any, **kwargs: Any) -> fx.Node:
        """Emit a call of the tensor method ``name`` (on ``args[0]``)."""
        return self.new_graph.call_method(name, args, kwargs)

    def like(self, node: fx.Node, args: tuple, kwargs: dict) -> fx.Node:
        """The operation of ``node`` on new arguments."""
        if node.op == "call_method":
            return self.meth(node.target, *args, **kwargs)
        return self.fn(node.target, *args, **kwargs)

    def inline(self, function: Callable[..., Any], *args: Any) -> fx.Node:
        """Emit ``function(*args)`` operation by operation; its result's node.

        The nodes among ``args`` enter ``function`` as :class:`torch.fx.Proxy`
        objects, so that a kernel written once for tensors records its
        operations into the new graph (the torch.fx idiom for building a graph
        by running Python code); the compiled graph then runs them without a
        Python call around them. ``function`` may branch on Python values
        only, not on tensors or their shapes.
        """
        tracer = fx.proxy.GraphAppendingTracer(self.new_graph)
        proxies = [fx.Proxy(a, tracer) if isinstance(a, fx.Node) else a for a in args]
        return function(*proxies).node

    def slot(self, group: str, i: int) -> fx.Node:
        """``params[i]`` or ``buffers[i]``, emitted once."""
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
    def v(self, a: Any) -> Value:
        """The value of an argument: a node of the trace or a constant."""
        if isinstance(a, fx.Node):
            return self.env[a]
        if isinstance(a, torch.Tensor):
            raise LoweringError("a tensor literal in the trace")
        return Value(a)

    def tensor(self, a: Any, what: str) -> Value:
        """The value of an argument that must be a tensor."""
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

    def alias(self, a: fx.Node) -> Value:
        """``a`` passed through unchanged."""
        value = self.env[a]
        return replace(value, exclusive=value.exclusive and len(a.users) == 1)

    def attribute(self, t: Any, what: str) -> Value | None:
        """A tensor attribute of the network: parameter, buffer or constant."""
        if t is None:
            return None
        if not isinstance(t, torch.Tensor):
            raise LoweringError(f"{what} is not a tensor")
        shape = tuple(t.shape)
        i = self.net._param_index.get(id(t))
        if i is not None:
            return Value(self.slot("params", i), "tensor", True, t.ndim, shape)
        j = self.net._buffer_index.get(id(t))
        if j is not None:
            return Value(self.slot("buffers", j), "tensor", True, t.ndim, shape)
        if id(t) not in self._constants:
            name = f"_constant{len(self._constants)}"
            device = self.net._device_for_constants
            value = t.detach() if device is None else t.detach().to(device)
            setattr(self.root, name, value)
            self._constants[id(t)] = self.new_graph.get_attr(name)
        return Value(self._constants[id(t)], "tensor", False, t.ndim, shape)

    def param(self, module: nn.Module, name: str) -> Value | None:
        """A parameter or buffer of a submodule (None if it is None)."""
        value = self.attribute(getattr(module, name), f"{type(module).__name__}.{name}")
        if value is not None and not value.batched:
            raise LoweringError(
                f"{type(module).__name__}.{name} is neither a parameter nor a buffer"
            )
        return value

    # in-place operations -----------------------------------------------------------
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
                f"in-place operation {qualified_name(node.target)} ({node.name}) on "
                "a value that is an input, a parameter, a view or used elsewhere"
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

    # elementwise operations ----------------------------------------------------------
    def pointwise(
        self,
        node: fx.Node,
        args: Sequence,
        kwargs: dict,
        *,
        method: str | None = None,
        function: Any = None,
        inplace_pos: int | None = None,
    ) -> Value:
        """An elementwise operation, its batched operands aligned.

        ``method`` or ``function`` replaces the target of ``node`` (an in-place
        operation lowered out of place); ``inplace_pos`` is the position of the
        target's ``inplace`` argument, which is checked and dropped.
        """
        target = function or method or node.target
        if inplace_pos is not None:
            if arg(args, kwargs, inplace_pos, "inplace", False):
                self.check_inplace(node, args[0])
            args, kwargs = without_arg(args, kwargs, inplace_pos, "inplace")
        if target is torch.where and len(args) + len(kwargs) != 3:
            raise LoweringError("torch.where with one argument")
        operands = [a for a in (*args, *kwargs.values()) if isinstance(a, fx.Node)]
        values = [self.env[a] for a in operands]
        nested = set(nodes_in((tuple(args), kwargs))) - set(operands)
        if any(self.env[n].kind != "other" for n in nested):
            raise LoweringError(
                f"{qualified_name(target)} of a structure holding tensors"
            )
        if any(v.kind == "seq" for v in values):
            raise LoweringError(f"{qualified_name(target)} of a tuple of tensors")
        tensors = [
            (a, v) for a, v in zip(operands, values, strict=True) if v.kind == "tensor"
        ]
        ranks = [v.ndim for _, v in tensors]
        ndim = max(ranks) if ranks and None not in ranks else None
        batched = any(v.batched for _, v in tensors)
        new = self._aligned(tensors, ndim) if batched else {}
        args, kwargs = fx.node.map_arg(
            (tuple(args), kwargs), lambda n: new.get(n, self.env[n].node)
        )
        out = self.emit(node, target, args, kwargs, method, function)
        kind = "tensor" if tensors else "other"
        producer = "add" if target in _ADDS else None
        return Value(out, kind, batched, ndim, producer=producer, exclusive=True)

    def _aligned(
        self, tensors: list[tuple[fx.Node, Value]], ndim: int | None
    ) -> dict[fx.Node, fx.Node]:
        """New axes after the particle axis of batched operands of lower rank."""
        new: dict[fx.Node, fx.Node] = {}
        for a, v in tensors:
            if not v.batched or a in new:
                continue
            if ndim is None:
                peers = tuple((u.node, u.batched) for b, u in tensors if b is not a)
                new[a] = self.fn(kernels.lift, v.node, peers)
            elif v.ndim < ndim:
                index = (slice(None),) + (None,) * (ndim - v.ndim)
                new[a] = self.fn(operator.getitem, v.node, index)
        return new

    def emit(
        self,
        node: fx.Node,
        target: Any,
        args: tuple,
        kwargs: dict,
        method: str | None,
        function: Any,
    ) -> fx.Node:
        """Emit an elementwise call, in place where an activation may be."""
        source = node.args[0] if node.args else None
        if target in _OVERWRITING:
            slope = arg(args, kwargs, 1, "negative_slope", 0.01)
            alpha = arg(args, kwargs, 1, "alpha", 1.0)
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
