"""Observation noise: how the networks' outputs become a noise variance.

Two noise models, chosen with ``MultiSWAGRegressor(noise=...)``:

``"homoscedastic"``
    The network predicts the mean of each target; one noise variance per
    target is estimated after training, on held-out rows
    (:func:`held_out_noise_factor`).
``"heteroscedastic"``
    The network has two outputs per target, a mean and an unconstrained
    value that :func:`split_mean_variance` maps to a variance with a
    softplus. It is trained with the Gaussian negative log-likelihood
    (:class:`GaussianNLL`), as deep ensembles are (Lakshminarayanan et al.
    2017), so the noise is learned per point; held-out rows then calibrate
    its scale (:func:`held_out_noise_factor`).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import brentq
from torch import nn
from torch.nn import functional as F

#: Added to every predicted variance (in the units the network is trained
#: on: standardised targets by default), so that the likelihood stays bounded.
MIN_VARIANCE = 1e-6


def split_mean_variance(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance from a heteroscedastic network's output.

    Parameters
    ----------
    out : torch.Tensor of shape (..., 2 * n_outputs)
        The first ``n_outputs`` columns are the means, the last ``n_outputs``
        the unconstrained variances.

    Returns
    -------
    mean, variance : torch.Tensor of shape (..., n_outputs)
        ``variance = softplus(raw) + MIN_VARIANCE``.
    """
    n_outputs = out.shape[-1] // 2
    mean, raw = out[..., :n_outputs], out[..., n_outputs:]
    return mean, F.softplus(raw) + MIN_VARIANCE


class GaussianNLL(nn.Module):
    """Gaussian negative log-likelihood of a mean-and-variance output.

    The training loss of ``MultiSWAGRegressor(noise="heteroscedastic")``:
    per target and row,
    :math:`\\frac12 \\log(2\\pi\\sigma^2) + \\frac{(y - \\mu)^2}{2\\sigma^2}`
    with :math:`(\\mu, \\sigma^2)` from :func:`split_mean_variance`.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default="mean"
        As for the losses of :mod:`torch.nn`; "none" keeps one value per row
        and target.

    Examples
    --------
    >>> import torch
    >>> from sklearn_swag._posterior.noise import GaussianNLL
    >>> loss = GaussianNLL()
    >>> out = torch.tensor([[0.0, 20.0]])  # mean 0, variance softplus(20) ~ 20
    >>> round(float(loss(out, torch.tensor([[0.0]]))), 3)
    2.417
    """

    #: With ``reduction="none"`` it returns one value per row and target of
    #: inputs with any leading axes, so a particle stack can weight and
    #: reduce the values itself.
    elementwise = True

    def __init__(
        self, reduction: str = "mean", *, mean_fit: str = "mse", beta: float = 0.5
    ) -> None:
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(
                f'reduction must be "mean", "sum" or "none", got {reduction!r}.'
            )
        if mean_fit not in ("nll", "beta", "mse"):
            raise ValueError(
                f'mean_fit must be "nll", "beta" or "mse", got {mean_fit!r}.'
            )
        if not 0.0 <= float(beta) <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta!r}.")
        self.reduction = reduction
        self.mean_fit = mean_fit
        self.beta = beta

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.shape[-1] != 2 * target.shape[-1]:
            raise ValueError(
                "A heteroscedastic network returns a mean and a variance per "
                f"target: {2 * target.shape[-1]} columns for "
                f"{target.shape[-1]} target(s), got {input.shape[-1]}."
            )
        mean, var = split_mean_variance(input)
        if self.mean_fit == "mse":
            nll = _gaussian_nll(mean.detach(), target, var)
            loss = nll + 0.5 * (target - mean) ** 2
        elif self.mean_fit == "beta":
            loss = _gaussian_nll(mean, target, var) * var.detach() ** float(self.beta)
        else:
            loss = _gaussian_nll(mean, target, var)
        return self._reduced(loss)

    def stopping_values(
        self, input: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """What early stopping watches on the held-out rows, reduced as the loss is.

        With ``mean_fit="mse"``, the squared error of the means alone, as a
        homoscedastic model's ``MSELoss`` (so that ``tol`` means the same):
        the means stop where they fit the held-out rows best, and the
        variances, which a small held-out set lets overfit first, take the
        weights of that epoch (the held-out noise factor then calibrates
        their scale). Otherwise the loss itself.
        """
        if self.mean_fit != "mse":
            return self(input, target)
        mean, _ = split_mean_variance(input)
        return self._reduced((target - mean) ** 2)

    def _reduced(self, values: torch.Tensor) -> torch.Tensor:
        if self.reduction == "mean":
            return values.mean()
        return values.sum() if self.reduction == "sum" else values


def _gaussian_nll(mean, target, var):
    # var >= MIN_VARIANCE already, so the loss's clamp at eps changes nothing.
    # (It also checks var >= 0, which on a GPU waits for the device; skorch
    # waits for the loss at every step anyway.)
    return F.gaussian_nll_loss(
        mean, target, var, full=True, eps=MIN_VARIANCE, reduction="none"
    )


def held_out_noise_factor(
    residuals: np.ndarray,
    epistemic: np.ndarray,
    base: np.ndarray,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    r"""Noise factor per target that makes held-out residuals most likely.

    For each target, the :math:`c \ge 0` that maximises
    :math:`\sum_i \log \mathcal{N}(r_i; 0, v_i + c\,b_i)`, with
    :math:`r_i` the residual of the predictive mean at held-out row
    :math:`i`, :math:`v_i` its epistemic variance and :math:`b_i` the noise
    variance the networks predict there (1 for a homoscedastic model, where
    :math:`c` is then the noise variance itself). The predictive at each row
    is summarised by its mean and variance (moment matching), which makes the
    problem one-dimensional. Solved by Brent's method on the derivative.

    Parameters
    ----------
    residuals, epistemic, base : ndarray of shape (n_rows, n_outputs)
    weights : ndarray of shape (n_rows,) or None, default=None
        Row weights: each row's log-likelihood counts that many times.

    Returns
    -------
    ndarray of shape (n_outputs,)
    """
    r2 = np.asarray(residuals, dtype=np.float64) ** 2
    v = np.asarray(epistemic, dtype=np.float64)
    b = np.asarray(base, dtype=np.float64)
    w = np.ones(len(r2)) if weights is None else np.asarray(weights, np.float64)
    return np.array(
        [_ml_factor(r2[:, j], v[:, j], b[:, j], w) for j in range(r2.shape[1])]
    )


def fitted_noise_factor(
    y: np.ndarray,
    means: np.ndarray,
    variances: np.ndarray,
    noise: np.ndarray | None,
    weights: np.ndarray,
    *,
    held_out: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Noise factor of a fitted regressor, and the noise it multiplies.

    Parameters
    ----------
    y : ndarray of shape (n_rows, n_outputs)
        Targets of the rows the noise is fitted on, in the units the networks
        learn.
    means, variances : ndarray of shape (n_models, n_rows, n_outputs)
        Each particle's predictive moments at those rows.
    noise : ndarray of shape (n_models, n_rows, n_outputs) or None
        The noise variance each particle predicts (heteroscedastic), or None
        (homoscedastic).
    weights : ndarray of shape (n_rows,)
        Row weights.
    held_out : bool
        Whether the rows were held out from training: the factor is then the
        one that makes them most likely (:func:`held_out_noise_factor`).
        Otherwise it is the mean squared training residual (homoscedastic;
        optimistic for a network that fits its training data closely) or 1.

    Returns
    -------
    factor : ndarray of shape (n_outputs,)
        The noise variance (homoscedastic, at least 1e-12) or the calibration
        of the predicted variances (heteroscedastic, at least 1e-6).
    base : ndarray of shape (n_rows, n_outputs)
        The variances the factor multiplies: ones, or the particles' mean
        predicted noise variance.
    """
    residual = y.astype(np.float64) - means.mean(axis=0)
    epistemic = variances.mean(axis=0) + means.var(axis=0)
    base = np.ones_like(residual) if noise is None else noise.mean(axis=0)
    if held_out:
        factor = held_out_noise_factor(residual, epistemic, base, weights)
    elif noise is None:
        factor = np.average(residual**2, axis=0, weights=weights)
    else:
        factor = np.ones(residual.shape[1])
    return np.maximum(factor, 1e-12 if noise is None else 1e-6), base


def _ml_factor(r2: np.ndarray, v: np.ndarray, b: np.ndarray, w: np.ndarray) -> float:
    # A floor far below the data's scale keeps total**2 from underflowing
    # where the networks leave no epistemic variance (one particle, scale=0).
    floor = 1e-12 * max(float(np.mean(r2)), 1e-100)

    def slope(c: float) -> float:  # twice the derivative of the log-likelihood
        total = np.maximum(v + c * b, floor)
        return float(np.sum(w * b * (r2 - total) / total**2))

    # Every term decreases once c * b_i >= r2_i: the root lies below this.
    low, high = 0.0, float(np.max(np.where(w > 0, r2 / b, 0.0)))
    if high <= 0.0 or slope(low) <= 0.0:
        return 0.0
    if slope(high) >= 0.0:  # only by rounding: the slope is <= 0 there
        return high
    return brentq(slope, low, high, xtol=1e-12 * high, maxiter=200)


def check_output_width(out: torch.Tensor, expected: int, noise: str) -> None:
    """Fail before training when the network returns the wrong number of columns."""
    width = 1 if out.ndim == 1 else out.shape[-1]
    if width == expected:
        return
    what = (
        "a mean and a variance column per target"
        if noise == "heteroscedastic"
        else "one column per target"
    )
    raise ValueError(
        f"With noise={noise!r} the network must return {what}: {expected} "
        f"column(s) here, but it returns {width}."
    )
