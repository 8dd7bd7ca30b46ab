"""Tracing a network with :mod:`torch.fx`, patching nothing that other threads see.

:meth:`torch.fx.Tracer.trace` patches ``torch.nn.Module.__call__`` and
``__getattr__`` (and the ``math`` functions of the forward's module) for the
whole process while it traces. A module that another thread calls meanwhile
is then recorded into the trace or fails (``module is not installed as a
submodule``), whatever lock the trace itself holds: a fit in one thread broke
while another thread loaded a model.

:func:`trace` routes the calls per instance instead. For the time of the
trace, every module of the network (the lowering's own copy) is given a
subclass of its class, made for this trace, whose ``__call__`` and
``__getattr__`` report to the tracer as fx's patches would; each module gets
its class back afterwards. Only the traced instances change, so a trace needs
no lock, and two traces, or a trace and any network running in another thread,
never see each other.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .registry import MODULE_RULES
from .values import LoweringError

__all__ = ["trace"]

_POSITIONAL = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
)


def trace(module: nn.Module) -> fx.Graph:
    """The fx graph of ``module``, the same in training and in eval mode.

    fx records ``self.training`` as a constant: a forward that branches on it
    (other than to pass it to ``F.dropout``, which is lowered by the mode of
    the call) would be lowered for one mode only, so it is refused.

    Parameters
    ----------
    module : torch.nn.Module
        The network, owned by the caller: no other thread may use it while it
        is traced (its modules' classes and training flags change meanwhile).

    Returns
    -------
    torch.fx.Graph
        The forward's operations; its ``get_attr`` nodes name attributes of
        ``module`` (tensor constants the trace meets are set on it).

    Raises
    ------
    LoweringError
        The forward cannot be traced, or depends on ``self.training``.
    """
    if type(module) in MODULE_RULES:  # a lone layer: fx would trace into it
        graph = fx.Graph()
        graph.output(graph.call_module("", (graph.placeholder("x"),)))
        return graph
    flags = {m: m.training for m in module.modules()}
    graphs = []
    try:
        for training in (True, False):
            module.train(training)
            graphs.append(_record(module))
    except LoweringError:
        raise
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


def _record(module: nn.Module) -> fx.Graph:
    """One trace of ``module.forward``, as :meth:`torch.fx.Tracer.trace` makes it.

    The tracer is a plain :class:`torch.fx.Tracer` (looked up at every call,
    so that a subclass put in its place decides which modules are leaves); it
    is set up as its ``trace`` sets itself up, and then the forward runs on a
    placeholder with the modules' calls routed to the tracer.
    """
    forward = type(module).forward
    parameters = list(inspect.signature(inspect.unwrap(forward)).parameters.values())
    if len(parameters) != 2 or parameters[1].kind not in _POSITIONAL:
        raise LoweringError(
            f"the forward of {type(module).__name__} must take exactly one "
            "tensor argument"
        )
    tracer = fx.Tracer()
    tracer.root = module
    tracer.root_module_name = module._get_name()
    tracer.submodule_paths = {m: name for name, m in module.named_modules()}
    tracer.graph = fx.Graph(tracer_cls=type(tracer))
    tracer.tensor_attrs = _tensor_attributes(module)
    classes = {m: type(m) for m in tracer.submodule_paths}
    routed: dict[type, type] = {}
    cache: dict[str, Any] = {}  # one get_attr node per parameter, as fx keeps
    try:
        for m, cls in classes.items():
            if cls not in routed:
                routed[cls] = _routed_class(cls, tracer, cache)
            m.__class__ = routed[cls]
        x = tracer.create_proxy("placeholder", parameters[1].name, (), {})
        out = forward(module, x)
        tracer.create_node("output", "output", (tracer.create_arg(out),), {})
    finally:
        for m, cls in classes.items():
            m.__class__ = cls
        tracer.submodule_paths = None
    for node in tracer.graph.nodes:
        node.meta.clear()  # fx's notes name the routed classes: none may outlive us
    return tracer.graph


def _routed_class(cls: type, tracer: fx.Tracer, cache: dict[str, Any]) -> type:
    """A subclass of ``cls`` whose calls and attributes go to ``tracer``.

    What fx's process-wide patches of ``torch.nn.Module`` do, for the
    instances of this one trace: a call becomes :meth:`torch.fx.Tracer.call_module`
    (a ``call_module`` node for a leaf, the forward traced through otherwise),
    and a parameter read from a module becomes a ``get_attr`` node.
    """
    call, getattr_ = cls.__call__, cls.__getattr__

    def __call__(self, *args, **kwargs):
        return tracer.call_module(self, functools.partial(call, self), args, kwargs)

    def __getattr__(self, name):
        return tracer.getattr(name, getattr_(self, name), cache)

    namespace = {
        "__call__": __call__,
        "__getattr__": __getattr__,
        # fx tells leaves (torch.nn's own layers) by their module's name.
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
    }
    return type(cls)(cls.__name__, (cls,), namespace)


def _tensor_attributes(module: nn.Module) -> dict[Any, str]:
    """Tensors held as plain attributes, by dotted name (fx's ``tensor_attrs``)."""
    found: dict[Any, str] = {}
    for prefix, sub in module.named_modules():
        for name, value in vars(sub).items():
            if isinstance(value, (torch.Tensor, torch.ScriptObject)):
                found[value] = f"{prefix}.{name}" if prefix else name
    return found


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
