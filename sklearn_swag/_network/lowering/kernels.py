"""The batched kernels: what the compiled graphs call at run time.

Each evaluates one layer for ``M`` copies at once, on a tensor whose leading
axis is the particle axis (a "batched" tensor) or on one tensor shared by
every copy (``shared``). Each takes plain values (tensors, numbers, tuples,
strings), so that the generated code needs no object it cannot print.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..softmax import log_softmax_classes, softmax_classes

# -- broadcasting against the particle axis ----------------------------------------


def particles(t: torch.Tensor, m: int) -> torch.Tensor:
    """A shared tensor as ``M`` identical copies, without copying it."""
    return t.expand(m, *t.shape)


def prepend(m: int, shape: Sequence[int]) -> tuple[int, ...]:
    """A shape of each copy as the shape of the stacked tensor."""
    return (m, *shape)


def lift(t: torch.Tensor, peers: tuple[tuple[Any, bool], ...]) -> torch.Tensor:
    """Insert axes after the particle axis of ``t`` to broadcast with ``peers``.

    ``peers`` are the other operands, each with whether it is batched.
    """
    rank = max((p.ndim - b for p, b in peers if isinstance(p, torch.Tensor)), default=0)
    missing = rank - (t.ndim - 1)
    if missing > 0:
        return t[(slice(None),) + (None,) * missing]
    return t


def expand(t: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """Each copy's ``expand(*sizes)``, new dims after the particle axis."""
    missing = len(sizes) - (t.ndim - 1)
    if missing < 0:
        raise ValueError("expand to fewer dimensions than the tensor has")
    if missing:
        t = t[(slice(None),) + (None,) * missing]
    return t.expand(-1, *sizes)


def squeeze_all(x: torch.Tensor) -> torch.Tensor:
    """Each copy's ``squeeze()``: the particle axis is kept even for one copy."""
    return x.squeeze(tuple(d for d in range(1, x.ndim) if x.shape[d] == 1))


def softmax(h: torch.Tensor, name: str, dim: int) -> torch.Tensor:
    """``softmax`` or ``log_softmax`` (``name``) of every copy along ``dim``.

    Over the last axis in the form torch's CPU kernel computes fastest for
    few classes (:mod:`~sklearn_swag._network.softmax`).
    """
    if dim in (-1, h.ndim - 1):
        return (log_softmax_classes if name == "log_softmax" else softmax_classes)(h)
    return getattr(torch, name)(h, dim)


def reduce_all(x: torch.Tensor, name: str, kwargs: dict) -> torch.Tensor:
    """A reduction over every dimension of each copy."""
    if x.ndim < 2:
        raise ValueError(f"cannot reduce ({name}) a value with no dimensions")
    return getattr(x, name)(dim=tuple(range(1, x.ndim)), **kwargs)


# -- layers with weights ---------------------------------------------------------


def linear(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    shared: bool,
) -> torch.Tensor:
    """Stacked ``nn.Linear`` on inputs of any number of dimensions.

    ``weight`` is ``(M, out, in)``, ``bias`` ``(M, out)``; ``h`` is
    ``(..., in)`` when ``shared``, else ``(M, ..., in)``. The leading dims of
    each copy become rows for :func:`linear_rows`.
    """
    m, n_out, n_in = weight.shape
    if h.ndim - (not shared) == 2:
        return linear_rows(h, weight, bias, shared, shared and n_in == 1)
    lead = h.shape[:-1] if shared else h.shape[1:-1]
    h = h.reshape(-1, n_in) if shared else h.reshape(m, -1, n_in)
    return linear_rows(h, weight, bias, shared, False).view(m, *lead, n_out)


def linear_rows(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    shared: bool,
    outer: bool,
) -> torch.Tensor:
    """Stacked ``nn.Linear`` on rows: ``(N, in)`` shared, or ``(M, N, in)``.

    One batched matrix product, or with ``outer`` (one shared feature) an
    outer product, which is faster. The result is ``(M, N, out)``. The branches
    depend on Python values only, so that the lowering can emit these
    operations into its graph by calling this function on proxies.
    """
    wt = weight.transpose(1, 2)
    if outer:
        h = h.unsqueeze(0)
        return h * wt if bias is None else torch.addcmul(bias.unsqueeze(1), h, wt)
    if shared:
        h = h.expand(weight.size(0), -1, -1)
    if bias is None:
        return torch.bmm(h, wt)
    return torch.baddbmm(bias.unsqueeze(1), h, wt)


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def conv(
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
    """Stacked convolution, in the form that is fastest where it runs.

    Shared inputs with ``groups=1`` take one ordinary convolution with the
    filters of every copy side by side. Otherwise, on a GPU the particle axis
    is folded into the channels (one grouped convolution; the result is a view
    of a ``(N, M, C_out, ...)`` tensor, which the next convolution folds again
    without a copy); on the CPU each copy runs its own convolution, because
    the CPU kernels for grouped convolutions, forward and backward, cost up to
    2x the convolutions one by one for 8 copies (``benchmarks/bench_conv.py``).
    There a 2-D convolution runs channels-last: its output is the stack of
    the copies' channels-last outputs (each copy ``(N, C, H, W)`` with the
    channels innermost), which the activations, ``BatchNorm`` and max pooling
    after it read as they are and the next convolution takes without a copy,
    forward and backward; an op that needs the usual layout (a ``view``, a
    ``flatten``) copies the values into it. Only the first convolution's input
    is converted. Each copy's result is its convolution's up to round-off
    (another order of summation).
    """
    conv_nd = _CONV[dims]
    m = weight.shape[0]
    if h.ndim != dims + 3 - shared:
        raise ValueError(
            f"conv{dims}d of each copy expects inputs with {dims + 2} "
            f"dimensions, got {h.ndim - (not shared)}."
        )
    if shared and groups == 1:
        # one ordinary convolution with the filters of every copy side by side
        if pad is not None:
            h = F.pad(h, pad, mode=pad_mode)
        flat_bias = None if bias is None else bias.reshape(-1)
        flat_weight = weight.reshape(-1, *weight.shape[2:])
        out = conv_nd(h, flat_weight, flat_bias, stride, padding, dilation, 1)
        return out.view(out.shape[0], m, -1, *out.shape[2:]).transpose(0, 1)
    if not folds_particles(h):
        inputs = [h] if shared else h.unbind(0)
        if pad is not None:
            inputs = [F.pad(x, pad, mode=pad_mode) for x in inputs]
        if dims == 2:  # see the docstring: each copy channels-last
            inputs = [_channels_last(x) for x in inputs]
        if shared:  # padded and converted once for every copy
            inputs = inputs * m
        biases = [None] * m if bias is None else bias.unbind(0)
        outs = [
            conv_nd(x, w, b, stride, padding, dilation, groups)
            for x, w, b in zip(inputs, weight.unbind(0), biases, strict=True)
        ]
        return torch.stack(outs)
    if shared:
        h = h.expand(m, *h.shape)
    n = h.shape[1]
    h = h.transpose(0, 1).reshape(n, -1, *h.shape[3:])
    if pad is not None:
        h = F.pad(h, pad, mode=pad_mode)
    flat_bias = None if bias is None else bias.reshape(-1)
    flat_weight = weight.reshape(-1, *weight.shape[2:])
    out = conv_nd(h, flat_weight, flat_bias, stride, padding, dilation, m * groups)
    return out.view(out.shape[0], m, -1, *out.shape[2:]).transpose(0, 1)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` with channels-last strides, which a CPU convolution keeps.

    ``contiguous(memory_format=torch.channels_last)`` leaves a tensor of one
    channel as it is (both layouts are the same memory), and torch's
    convolution then returns the usual layout; a copy into channels-last
    strides makes its output channels-last too.
    """
    if x.stride(1) == 1:
        return x
    return torch.empty_like(x, memory_format=torch.channels_last).copy_(x)


def folds_particles(h: torch.Tensor) -> bool:
    """Whether the kernels on ``h``'s device fold the particle axis into channels.

    Then a stacked convolution is one grouped convolution and a stacked
    BatchNorm one BatchNorm over ``M * C`` channels: on CUDA devices, whose
    kernels are made for many channels and groups. Not on the CPU, where each
    copy's own convolution and BatchNorm cost less than the grouped kernels
    and the copies that folding needs (``benchmarks/bench_conv.py``).
    """
    return h.device.type == "cuda"


def embedding(
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


def prelu(h: torch.Tensor, weight: torch.Tensor, shared: bool) -> torch.Tensor:
    """Stacked ``nn.PReLU``: one slope, or one per channel (dim 1), per copy."""
    m, c = weight.shape
    rank = h.ndim - (not shared)
    if c == 1:
        slope = weight.view(m, *(1,) * rank)
    elif rank >= 2:
        slope = weight.view(m, 1, c, *(1,) * (rank - 2))
    else:
        raise ValueError("PReLU with several parameters needs a channel dim.")
    return torch.where(h >= 0, h, slope * h)


# -- normalisation -----------------------------------------------------------------


def affine(
    out: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    shape: tuple[int, ...],
) -> torch.Tensor:
    """``out * weight + bias``, each viewed as ``shape`` to broadcast with ``out``.

    Either may be None; with neither, ``out`` itself.
    """
    if weight is None:
        return out if bias is None else out + bias.view(shape)
    if bias is None:
        return out * weight.view(shape)
    return torch.addcmul(bias.view(shape), out, weight.view(shape))


def layer_norm(
    h: torch.Tensor,
    normalized_shape: tuple[int, ...],
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    shared: bool,
) -> torch.Tensor:
    """Stacked ``nn.LayerNorm``: each copy's weight and bias over the last dims."""
    out = F.layer_norm(h, normalized_shape, None, None, eps)
    ref = weight if weight is not None else bias
    if ref is None:
        return out
    ones = (1,) * (out.ndim - len(normalized_shape) - (not shared))
    return affine(out, weight, bias, (ref.shape[0], *ones, *ref.shape[1:]))


def group_norm(
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
    return affine(out, weight, bias, (m, 1, h.shape[2]) + (1,) * (h.ndim - 3))


def batch_norm(
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
    if batch_stats and h[0].numel() // c <= 1:
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
    if (
        not folds_particles(h)
        and not h.transpose(0, 1).is_contiguous()
        and (native or not update)
    ):
        # where folding would copy h, each copy's own BatchNorm is cheaper
        return _batch_norm_one_by_one(
            h, weight, bias, running_mean, running_var, count, eps, momentum,
            batch_stats, update,
        )  # fmt: skip
    folded = h.transpose(0, 1).reshape(n, m * c, *spatial)
    w = None if weight is None else weight.reshape(-1)
    b = None if bias is None else bias.reshape(-1)
    if not batch_stats:
        out = F.batch_norm(
            folded, running_mean.view(-1), running_var.view(-1), w, b, False, 0.0, eps
        )
        return out.view(n, m, c, *spatial).transpose(0, 1)
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
        _update_statistics(
            folded, running_mean, running_var, count, momentum, cumulative
        )
    return out.view(n, m, c, *spatial).transpose(0, 1)


def _batch_norm_one_by_one(
    h, weight, bias, running_mean, running_var, count, eps, momentum, batch_stats,
    update,
) -> torch.Tensor:  # fmt: skip
    """:func:`batch_norm` as each copy's own ``F.batch_norm``, the outputs stacked.

    For the cases torch's kernel covers: evaluation, batch statistics alone, or
    batch statistics with running statistics updated by ``momentum`` (in place,
    through each copy's row of the contiguous ``(M, C)`` statistics).
    """
    m = h.shape[0]
    none = [None] * m
    weights = none if weight is None else weight.unbind(0)
    biases = none if bias is None else bias.unbind(0)
    if batch_stats and not update:
        means = variances = none
    else:
        means, variances = running_mean.unbind(0), running_var.unbind(0)
    if batch_stats and update:
        with torch.no_grad():
            count.add_(1)
    rate = momentum if update else 0.0
    return torch.stack(
        [
            F.batch_norm(x, mean, var, w, b, batch_stats, rate, eps)
            for x, mean, var, w, b in zip(
                h.unbind(0), means, variances, weights, biases, strict=True
            )
        ]
    )


@torch.no_grad()
def _update_statistics(
    folded: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    count: torch.Tensor | None,
    momentum: float,
    cumulative: bool,
) -> None:
    """Update ``(M, C)`` running statistics from ``(N, M * C, ...)`` values."""
    # Two passes by hand: torch.var_mean over a leading axis is about 25x
    # slower on a CPU.
    dims = (0, *range(2, folded.ndim))
    mean = folded.mean(dim=dims, keepdim=True)
    n_values = folded.numel() // mean.numel()
    var = (folded - mean).square_().sum(dim=dims).div_(n_values - 1)
    factor: float | torch.Tensor = momentum
    if count is not None:
        count.add_(1)
        if cumulative:
            factor = count.to(running_mean.dtype).reciprocal().unsqueeze(1)
    running_mean.lerp_(mean.view(running_mean.shape), factor)
    running_var.lerp_(var.view(running_var.shape), factor)


# -- layers without weights ------------------------------------------------------


def dropout(
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


#: The pooling functions, by name (the generated code passes names, not objects).
POOL_FUNCTIONS = {
    function.__name__: function
    for function in (
        F.max_pool1d,
        F.max_pool2d,
        F.avg_pool1d,
        F.avg_pool2d,
        F.adaptive_avg_pool1d,
        F.adaptive_avg_pool2d,
        F.adaptive_max_pool1d,
        F.adaptive_max_pool2d,
    )
}


def pool(h: torch.Tensor, name: str, kwargs: dict) -> torch.Tensor:
    """A pooling layer of every copy: the particle axis folded into the rows."""
    if h.transpose(0, 1).is_contiguous():  # the layout a grouped convolution leaves
        out = _pool(h.transpose(0, 1).flatten(0, 1), name, kwargs)
        return out.view(h.shape[1], h.shape[0], *out.shape[1:]).transpose(0, 1)
    out = _pool(h.flatten(0, 1), name, kwargs)
    return out.view(*h.shape[:2], *out.shape[1:])


def _pool(x: torch.Tensor, name: str, kwargs: dict) -> torch.Tensor:
    if name == "max_pool2d" and x.ndim == 4 and x.device.type == "cpu":
        return _ChannelsLastMaxPool2d.apply(x, *_max_pool2d_args(**kwargs))
    return POOL_FUNCTIONS[name](x, **kwargs)


def _max_pool2d_args(
    kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False
) -> tuple:
    pair = torch.nn.modules.utils._pair
    stride = kernel_size if stride is None or stride == [] else stride
    return pair(kernel_size), pair(stride), pair(padding), pair(dilation), ceil_mode


class _ChannelsLastMaxPool2d(torch.autograd.Function):
    """``F.max_pool2d`` of an ``(N, C, H, W)`` tensor, computed channels-last.

    The same values, indices and gradients to the last bit (a maximum has no
    round-off; ties go to the first element of the window either way). The
    output and the input's gradient come back in the input's layout:
    channels-last for a channels-last input (what :func:`conv` leaves on the
    CPU), contiguous otherwise. On the CPU, torch's max pooling of the
    channels-last layout costs 0.7x to 0.9x of the ``(N, C, H, W)`` one,
    forward and backward, even with both conversions (the forward alone about
    0.1x on 8x8 images).
    """

    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation, ceil_mode):
        cl = torch.channels_last
        ctx.channels_last = x.is_contiguous(memory_format=cl) and not x.is_contiguous()
        x_cl = x.contiguous(memory_format=cl)
        out, indices = torch.ops.aten.max_pool2d_with_indices(
            x_cl, kernel_size, stride, padding, dilation, ceil_mode
        )
        ctx.save_for_backward(x_cl, indices)
        ctx.args = (kernel_size, stride, padding, dilation, ceil_mode)
        return out if ctx.channels_last else out.contiguous()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x_cl, indices = ctx.saved_tensors
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(
            grad.contiguous(memory_format=torch.channels_last),
            x_cl,
            *ctx.args,
            indices,
        )
        if not ctx.channels_last:
            grad_x = grad_x.contiguous()
        return grad_x, None, None, None, None, None
