"""Random draws of one thread from a generator of its own, not the global one.

Building a network draws its initial weights from torch's global generator,
which every thread of the process shares. Loading a model builds its network
again (its weights then come from the saved arrays), and used to borrow the
global generator for it with :func:`torch.random.fork_rng`: the draws advanced
the generator under a fit running in another thread, and restoring it at the
end rewound it there, so that the fit's predictions changed.

:func:`private_generator` gives the calling thread's random operations a
generator of their own instead, through a dispatch mode (which, like every
torch mode, is the calling thread's only): an operation with a ``generator``
argument left unset gets the private one, and one without such an argument
(``torch.randn(3)``) runs as its overload that has it (``randn.generator``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .._torch_compat import DispatchMode, op_arguments

__all__ = ["private_generator"]


@contextmanager
def private_generator(seed: int = 0) -> Iterator[None]:
    """Within the block, this thread's random operations on the CPU draw from
    a new generator seeded with ``seed``; the global generator is neither read
    nor advanced nor restored.

    Where torch has no dispatch modes, the global generator is borrowed (seeded
    and restored by :func:`torch.random.fork_rng`), which other threads see.

    Parameters
    ----------
    seed : int, default=0
        The seed of the private generator.

    Examples
    --------
    >>> import torch
    >>> state = torch.random.get_rng_state()
    >>> with private_generator(seed=1):
    ...     layer = torch.nn.Linear(3, 2)
    >>> torch.equal(torch.random.get_rng_state(), state)
    True
    """
    if DispatchMode is None:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
        return
    with _PrivateGenerator(torch.Generator().manual_seed(seed)):
        yield


if DispatchMode is not None:

    class _PrivateGenerator(DispatchMode):
        """Passes ``generator`` to every random operation on the CPU that has none."""

        def __init__(self, generator: torch.Generator) -> None:
            super().__init__()
            self.generator = generator

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = dict(kwargs or {})
            if kwargs.get("generator") is None and _on_cpu(args, kwargs):
                seeded = _with_generator(func)
                if seeded is not None:
                    func, kwargs["generator"] = seeded, self.generator
                elif func.overloadpacket.__name__ in _LIKE:
                    return _drawn_like(func, args, kwargs, self.generator)
            return func(*args, **kwargs)


def _on_cpu(args: tuple, kwargs: dict) -> bool:
    """Whether an operation works on the CPU: its first tensor, else its device."""
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.device.type == "cpu"
    device = kwargs.get("device")
    return device is None or torch.device(device).type == "cpu"


@functools.cache
def _with_generator(func: Any) -> Any:
    """``func`` if it takes a generator, else its overload that does, else None.

    The overload must take the same arguments and ``generator``: ``randn.default``
    gives ``randn.generator``, ``randint.low`` gives ``randint.low_generator``.
    """
    names = set(op_arguments(func))
    if "generator" in names:
        return func
    packet = func.overloadpacket
    for name in packet.overloads():
        overload = getattr(packet, name)
        if set(op_arguments(overload)) == names | {"generator"}:
            return overload
    return None


#: Operations drawing "like" a tensor, which older torch releases (2.4) give no
#: overload with a generator: drawn in place into an empty tensor instead.
_LIKE = frozenset({"rand_like", "randn_like", "randint_like"})


def _drawn_like(
    func: Any, args: tuple, kwargs: dict, generator: torch.Generator
) -> torch.Tensor:
    """``func(*args, **kwargs)`` (a ``*_like`` draw) from ``generator``."""
    name = func.overloadpacket.__name__
    template, *bounds = args
    kwargs.pop("generator", None)
    out = torch.ops.aten.empty_like.default(template, **kwargs)
    if name == "rand_like":
        return out.uniform_(0.0, 1.0, generator=generator)
    if name == "randn_like":
        return out.normal_(0.0, 1.0, generator=generator)
    low, high = (0, bounds[0]) if len(bounds) == 1 else bounds
    return out.random_(int(low), int(high), generator=generator)
