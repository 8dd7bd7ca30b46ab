"""The one place that uses torch's private APIs.

Each private name is looked up once, here, with a public fallback of the same
result: should a torch release drop one, the package keeps working, slower or
through a longer path, and ``tests/test_torch_compat.py`` fails, so that the
upgrade is noticed and this file is the only one to change.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "BatchNormBase",
    "DispatchMode",
    "DropoutBase",
    "GUARDED",
    "PADDING_ATTRIBUTE",
    "elu",
    "elu_",
    "leaky_relu",
    "leaky_relu_",
    "lookup",
    "op_arguments",
    "public_reversed_padding",
    "reversed_padding",
]

_MISSING = object()


def lookup(path: str) -> Any:
    """The object at the dotted ``path`` (from ``torch``), or None if missing."""
    obj: Any = torch
    for part in path.split(".")[1:]:
        obj = getattr(obj, part, _MISSING)
        if obj is _MISSING:
            return None
    return obj


#: Every private name guarded here, as a dotted path from ``torch``, with its
#: public fallback.
#:
#: ``F.elu`` and ``F.leaky_relu`` check for ``__torch_function__`` overrides and
#: an ``inplace`` flag at every call; the compiled graphs of the lowering call
#: the C++ functions directly. ``F.elu_`` and ``F.leaky_relu_`` are those C++
#: functions under public names. The base classes serve ``isinstance``; their
#: fallbacks are tuples of the public layers.
GUARDED: dict[str, Any] = {
    "torch._C._nn.elu": F.elu,
    "torch._C._nn.elu_": F.elu_,
    "torch._C._nn.leaky_relu": F.leaky_relu,
    "torch._C._nn.leaky_relu_": F.leaky_relu_,
    "torch.nn.modules.batchnorm._BatchNorm": (
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.BatchNorm3d,
        nn.SyncBatchNorm,
        nn.LazyBatchNorm1d,
        nn.LazyBatchNorm2d,
        nn.LazyBatchNorm3d,
    ),
    "torch.nn.modules.dropout._DropoutNd": (
        nn.Dropout,
        nn.Dropout1d,
        nn.Dropout2d,
        nn.Dropout3d,
        nn.AlphaDropout,
        nn.FeatureAlphaDropout,
    ),
    # Without it, a network is built under the borrowed global generator.
    "torch.utils._python_dispatch.TorchDispatchMode": None,
}


def _private(path: str) -> Any:
    """The private object at ``path``, or its fallback where torch lacks it."""
    found = lookup(path)
    return GUARDED[path] if found is None else found


#: ``elu(input, alpha)``, out of place.
elu = _private("torch._C._nn.elu")
#: ``elu_(input, alpha)``, in place.
elu_ = _private("torch._C._nn.elu_")
#: ``leaky_relu(input, negative_slope)``, out of place.
leaky_relu = _private("torch._C._nn.leaky_relu")
#: ``leaky_relu_(input, negative_slope)``, in place.
leaky_relu_ = _private("torch._C._nn.leaky_relu_")
#: The base class of every ``BatchNorm`` layer, for ``isinstance``.
BatchNormBase = _private("torch.nn.modules.batchnorm._BatchNorm")
#: The base class of the dropout layers, for ``isinstance``.
DropoutBase = _private("torch.nn.modules.dropout._DropoutNd")
#: The base class of modes that see every aten operation of one thread
#: (``__torch_dispatch__``), or None.
DispatchMode = _private("torch.utils._python_dispatch.TorchDispatchMode")


def op_arguments(op: Any) -> tuple[str, ...]:
    """The argument names of an aten operation (``torch.ops.aten.randn.default``).

    Read from its private ``_schema``; empty where that is missing.
    """
    schema = getattr(op, "_schema", None)
    return () if schema is None else tuple(a.name for a in schema.arguments)


# -- attributes of modules ---------------------------------------------------------
#: The private attribute of convolutions read by :func:`reversed_padding`.
PADDING_ATTRIBUTE = "_reversed_padding_repeated_twice"


def reversed_padding(conv: nn.Module) -> tuple[int, ...]:
    """The ``F.pad`` widths a convolution uses for a non-zero ``padding_mode``.

    Torch keeps them in ``conv._reversed_padding_repeated_twice``; without that
    attribute they are computed from the public ones as torch does: the padding
    of each dimension, last dimension first, on both sides (for ``"same"``, the
    total padding ``dilation * (kernel_size - 1)`` split with the smaller half
    first).

    Parameters
    ----------
    conv : torch.nn.Conv1d, torch.nn.Conv2d or torch.nn.Conv3d
        The convolution.

    Returns
    -------
    tuple of int
        Two widths per spatial dimension, as ``F.pad`` takes them.
    """
    found = getattr(conv, PADDING_ATTRIBUTE, None)
    if found is not None:
        return tuple(found)
    return public_reversed_padding(conv)


def public_reversed_padding(conv: nn.Module) -> tuple[int, ...]:
    """:func:`reversed_padding` computed from public attributes only."""
    padding = conv.padding
    if isinstance(padding, str):
        widths: list[int] = []
        for d, k in zip(
            reversed(conv.dilation), reversed(conv.kernel_size), strict=True
        ):
            total = d * (k - 1) if padding == "same" else 0
            widths += [total // 2, total - total // 2]
        return tuple(widths)
    return tuple(p for p in reversed(padding) for _ in range(2))
