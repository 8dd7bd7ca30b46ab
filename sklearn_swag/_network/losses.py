"""The loss of a particle stack: every copy's own loss, summed.

:class:`ParticleLoss` sums the copies' losses, so that the gradient each copy
receives is the gradient of its own loss alone; :func:`elementwise_loss` turns
a criterion into one with values per element, for one call over every copy
and for row weights.
"""

from __future__ import annotations

import copy
import math
from functools import partial

import torch
from torch import nn
from torch.func import vmap
from torch.nn import functional as F

from .softmax import log_softmax_classes


def elementwise_loss(criterion: nn.Module):
    """The criterion with ``reduction="none"``, where its values are elementwise.

    torch's elementwise losses become plain functions (the loss runs at every
    step, where a module's call machinery costs as much as the arithmetic); a
    criterion that declares ``elementwise = True`` (its ``reduction="none"``
    values keep the leading axes of its input, as
    :class:`~sklearn_swag._posterior.noise.GaussianNLL` does) becomes a copy with
    ``reduction="none"``. Other criteria give None.
    """
    if getattr(criterion, "reduction", None) not in ("mean", "sum"):
        return None
    if getattr(criterion, "elementwise", False):
        copy_ = copy.deepcopy(criterion)
        copy_.reduction = "none"
        return copy_
    kind = type(criterion)
    if kind is nn.CrossEntropyLoss and criterion.weight is None:
        return partial(_cross_entropy, label_smoothing=criterion.label_smoothing)
    if kind is nn.MSELoss:
        return _squared_error
    if kind is nn.L1Loss:
        return partial(F.l1_loss, reduction="none")
    if kind is nn.SmoothL1Loss:
        return partial(F.smooth_l1_loss, reduction="none", beta=criterion.beta)
    if kind is nn.HuberLoss:
        return partial(F.huber_loss, reduction="none", delta=criterion.delta)
    return None


def _squared_error(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """``F.mse_loss(y_pred, y_true, reduction="none")`` for inputs of one shape,
    as two operations without ``F.mse_loss``'s checks, which cost as much as
    the arithmetic on a tiny network's step."""
    return (y_pred - y_true).square()


def _cross_entropy(
    logits: torch.Tensor, y_true: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy of every row, as ``nn.CrossEntropyLoss`` computes it.

    ``logits`` of shape (..., n_classes), ``y_true`` of shape (..., 1) holding
    class indices (as floats, as the targets travel); values of shape (..., 1).
    """
    log_p = log_softmax_classes(logits)
    values = -log_p.gather(-1, y_true.long())
    if label_smoothing:
        smooth = -log_p.mean(dim=-1, keepdim=True)
        values = (1.0 - label_smoothing) * values + label_smoothing * smooth
    return values


class ParticleLoss(nn.Module):
    """Sum of the per-particle losses of a stacked prediction.

    Parameters
    ----------
    criterion : torch.nn.Module
        The loss of one network, ``criterion(y_pred, y_true)`` with
        ``y_pred`` of shape ``(N, n_outputs)``, returning a scalar.
    weighted : bool, default=False
        Whether the last column of the targets holds row weights: each
        particle's loss is then the weighted mean (or sum) of its rows'
        values, as if every row were repeated as often as its weight says.
        Needs a criterion with elementwise values (:func:`elementwise_loss`).
    class_targets : bool, default=False
        Whether the targets are class indices (one column, as floats): a
        criterion without elementwise values then gets them as a long tensor
        of shape ``(N,)``, as ``nn.CrossEntropyLoss`` and ``nn.NLLLoss`` want.

    Attributes
    ----------
    last_losses : torch.Tensor of shape (P,) or None
        The per-particle losses of the latest batch.
    nonfinite : torch.Tensor of shape (P,) or None
        True for every particle whose loss was ever NaN or infinite since
        :meth:`new_particles`.
    """

    def __init__(
        self, criterion: nn.Module, weighted: bool = False, class_targets: bool = False
    ) -> None:
        super().__init__()
        self.criterion = criterion
        self.weighted = weighted
        self.class_targets = class_targets
        self._record = _LossRecord()
        self._batched: bool | None = None
        self._elementwise = elementwise_loss(criterion)
        self._mean = getattr(criterion, "reduction", None) == "mean"
        if weighted and self._elementwise is None:
            raise ValueError(
                f"Row weights need a criterion with elementwise values; "
                f"{type(criterion).__name__} has none (see elementwise_loss)."
            )

    def train(self, mode: bool = True) -> ParticleLoss:
        if self.training == mode:
            return self  # skorch asks at every step; walking the tree costs
        return super().train(mode)

    @property
    def last_losses(self) -> torch.Tensor | None:
        return self._record.last

    @property
    def nonfinite(self) -> torch.Tensor | None:
        total = self._record.total
        return None if total is None else ~torch.isfinite(total)

    def any_nonfinite(self) -> bool:
        """Whether any particle's loss was ever NaN or infinite (one sync)."""
        total = self._record.total
        return total is not None and not math.isfinite(float(total.sum()))

    def new_particles(self) -> None:
        """Forget the per-particle state: the next batch is of other particles."""
        self._record = _LossRecord()

    def per_particle(
        self, y_pred: torch.Tensor, y_true: torch.Tensor, *, stopping: bool = False
    ) -> torch.Tensor:
        """Loss of each particle, shape ``(P,)``.

        With ``stopping``, the values early stopping watches instead, where
        the criterion defines them (``stopping_values``, elementwise criteria
        only): see :meth:`GaussianNLL.stopping_values
        <sklearn_swag._posterior.noise.GaussianNLL.stopping_values>`.
        """
        elementwise = self._elementwise
        if stopping and elementwise is not None:
            elementwise = getattr(elementwise, "stopping_values", elementwise)
        if y_true.dtype != y_pred.dtype:
            y_true = y_true.to(y_pred.dtype)
        if y_true.ndim == y_pred.ndim - 1:
            y_true = y_true.expand(y_pred.shape[0], *y_true.shape)
        if self.weighted:
            return self._weighted(
                elementwise, y_pred, y_true[..., :-1], y_true[..., -1:]
            )
        if elementwise is not None:
            # One call for every particle: mean (or sum) per particle afterwards.
            values = elementwise(y_pred, y_true)
            dims = tuple(range(1, values.ndim))
            return values.mean(dim=dims) if self._mean else values.sum(dim=dims)
        if self.class_targets:
            y_true = y_true[..., 0].long()
        if self._batched is None or self._batched:
            try:
                losses = vmap(self.criterion)(y_pred, y_true)
                self._batched = True
                return _one_per_particle(losses, self.criterion)
            except Exception:  # noqa: BLE001 - fall back to a plain loop
                if self._batched:
                    raise
                self._batched = False
        return _one_per_particle(
            torch.stack(
                [self.criterion(p, t) for p, t in zip(y_pred, y_true, strict=True)]
            ),
            self.criterion,
        )

    def _weighted(
        self,
        elementwise,
        y_pred: torch.Tensor,
        y_true: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        """Weighted loss of each particle; ``weights`` is ``(P, N, 1)``."""
        values = elementwise(y_pred, y_true)  # (P, N, k)
        dims = tuple(range(1, values.ndim))
        total = (values * weights).sum(dim=dims)
        if not self._mean:
            return total
        return total / (weights.sum(dim=(1, 2)) * values.shape[-1])

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        losses = self.per_particle(y_pred, y_true)
        self._record.add(losses.detach())
        return losses.sum()


class _LossRecord:
    """What a :class:`ParticleLoss` remembers of its batches, at one operation a
    step.

    ``last`` is the latest batch's losses; ``total`` their float64 sum over
    every batch since the record began, which is finite exactly when every
    loss was: float32 losses cannot add up past float64's range, and a NaN or
    infinite one leaves the sum NaN or infinite for good. A plain object, so
    that writing it skips ``nn.Module``'s attribute machinery.
    """

    __slots__ = ("last", "total")

    def __init__(self) -> None:
        self.last: torch.Tensor | None = None
        self.total: torch.Tensor | None = None

    def add(self, losses: torch.Tensor) -> None:
        if self.total is None:
            self.total = losses.to(torch.float64, copy=True)
        else:
            self.total.add_(losses)
        self.last = losses


def _one_per_particle(losses: torch.Tensor, criterion) -> torch.Tensor:
    """``losses`` of shape ``(P,)``, or a clear error naming the criterion."""
    if losses.ndim != 1:
        raise ValueError(
            f"The criterion {criterion!r} must return one scalar loss per "
            f"network; it returned values of shape {tuple(losses.shape[1:])}. "
            "Reduce them to a scalar (a mean or a sum over the rows)."
        )
    return losses
