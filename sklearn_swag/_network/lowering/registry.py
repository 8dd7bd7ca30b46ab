"""The rules of the lowering, keyed by module class, function or method name.

A rule turns one node of the trace into batched nodes of the new graph and
returns the :class:`~.values.Value` of its result. It is a plain function,
registered with one of the decorators below::

    @module_rule(nn.Linear)
    def linear_module(lw, node, mod): ...

    @function_rule(F.linear)
    def linear_function(lw, node): ...

    @method_rule("view", "reshape")
    def reshape(lw, node): ...

``lw`` is the :class:`~.driver.Lowerer` at work: it emits nodes
(``lw.fn``, ``lw.meth``), reads values (``lw.tensor``, ``lw.param``) and checks
in-place operations. ``node`` is the node of the trace and ``mod`` the
submodule it calls. The rules live in :mod:`.rules`, one module per op family.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

from torch import nn

#: Rules for ``call_module`` nodes, by the exact class of the module.
MODULE_RULES: dict[type[nn.Module], Callable[..., Any]] = {}
#: Rules for ``call_function`` nodes, by the function.
FUNCTION_RULES: dict[Any, Callable[..., Any]] = {}
#: Rules for ``call_method`` nodes, by the method's name.
METHOD_RULES: dict[str, Callable[..., Any]] = {}


def register(table: dict, keys: Iterable[Hashable], rule: Callable) -> None:
    """Enter ``rule`` under each key; a key holds one rule only."""
    for key in keys:
        if table.get(key, rule) is not rule:
            raise ValueError(f"two lowering rules for {key!r}")
        table[key] = rule


def module_rule(*classes: type[nn.Module]) -> Callable[[Callable], Callable]:
    """Register ``rule(lw, node, mod)`` for modules of these exact classes."""

    def decorate(rule: Callable) -> Callable:
        register(MODULE_RULES, classes, rule)
        return rule

    return decorate


def function_rule(*functions: Any) -> Callable[[Callable], Callable]:
    """Register ``rule(lw, node)`` for calls of these functions."""

    def decorate(rule: Callable) -> Callable:
        register(FUNCTION_RULES, functions, rule)
        return rule

    return decorate


def method_rule(*names: str) -> Callable[[Callable], Callable]:
    """Register ``rule(lw, node)`` for calls of the tensor methods ``names``."""

    def decorate(rule: Callable) -> Callable:
        register(METHOD_RULES, names, rule)
        return rule

    return decorate
