"""What lowering knows about each value, and how rules read a node's arguments."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import fx


class LoweringError(Exception):
    """The network uses something that cannot be lowered.

    The message names the operation (node, module, function or method).
    """


class UnforeseenLoweringError(LoweringError):
    """A rule failed in a way it does not foresee.

    A bug of the rewrite, or a use the rule should refuse by name: the caller
    falls back as for any :class:`LoweringError`, except in strict mode
    (:func:`strict`), where it is an error.
    """


def strict() -> bool:
    """Whether a fallback that is not for an unsupported operation is an error.

    Set by the environment variable ``SKLEARN_SWAG_STRICT`` (anything but
    empty or "0"), which the test suite sets: there a bug of the rewrite
    fails the test rather than hiding as slowness.
    """
    return os.environ.get("SKLEARN_SWAG_STRICT", "") not in ("", "0")


@dataclass
class Value:
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


def arg(args: Sequence, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    """Argument ``i`` of a call, given by position or as ``name``."""
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def with_arg(
    args: Sequence, kwargs: dict, i: int, name: str, value: Any
) -> tuple[tuple, dict]:
    """``args, kwargs`` with argument ``i`` / ``name`` set to ``value``."""
    args, kwargs = tuple(args), dict(kwargs)
    if len(args) > i:
        args = args[:i] + (value,) + args[i + 1 :]
    else:
        kwargs[name] = value
    return args, kwargs


def without_arg(args: Sequence, kwargs: dict, i: int, name: str) -> tuple[tuple, dict]:
    """``args, kwargs`` without argument ``i`` / ``name``."""
    args, kwargs = tuple(args), dict(kwargs)
    if len(args) > i:
        args = args[:i] + args[i + 1 :]
    kwargs.pop(name, None)
    return args, kwargs


def shift(d: Any, batched: bool) -> Any:
    """Dimension ``d`` of one copy as a dimension of the stacked value."""
    if not batched or d is None:
        return d
    if isinstance(d, (tuple, list)):
        return type(d)(shift(e, True) for e in d)
    if isinstance(d, bool) or not isinstance(d, int):
        raise LoweringError(f"dimension {d!r} is not a constant integer")
    return d + 1 if d >= 0 else d


def nodes_in(a: Any) -> list[fx.Node]:
    """The nodes inside an argument (a node, or tuples, lists, dicts, slices)."""
    found: list[fx.Node] = []
    fx.node.map_arg(a, found.append)
    return found


def as_tuple(value: Any, dims: int) -> tuple:
    """``value`` for each of ``dims`` dimensions (as ``nn.Conv2d`` reads it)."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


def qualified_name(target: Any) -> str:
    """A function's or method's name for messages."""
    if isinstance(target, str):
        return target
    module = getattr(target, "__module__", None) or ""
    return f"{module}.{getattr(target, '__name__', repr(target))}".lstrip(".")
