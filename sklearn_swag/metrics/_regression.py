"""Metrics of a predictive Gaussian mixture: proper scores and intervals.

Each takes the observed targets and a :class:`~sklearn_swag.NormalMixture`
(what ``MultiSWAGRegressor.predict_dist`` returns) and averages a proper score
or an interval statistic over the points.
"""

from numbers import Real

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._posterior.normal_mixture import NormalMixture
from .._sklearn_compat import NumberInterval, validate_params
from ._base import _average, _check_dist, _check_weights

#: The constraints that the four metrics share (``dist`` is checked by
#: ``_check_dist``, whose message names the estimator that returns it).
_CONSTRAINTS = {
    "y_true": ["array-like"],
    "dist": "no_validation",
    "sample_weight": ["array-like", None],
}
_CONFIDENCE = {"confidence": [NumberInterval(Real, 0, 1, closed="both")]}


def _check_targets(y_true: ArrayLike, dist: NormalMixture) -> NDArray:
    """Check ``dist`` and return ``y_true`` as a float array of its batch shape."""
    _check_dist(dist, NormalMixture)
    try:
        y = np.asarray(y_true, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError("y_true must be an array of real numbers.") from exc
    if dist.single_output and y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    expected = (
        (dist.n_points,) if dist.single_output else (dist.n_points, dist.n_outputs)
    )
    if y.shape != expected:
        accepted = str(expected)
        if dist.single_output:
            accepted += f" or {(dist.n_points, 1)}"
        raise ValueError(
            f"y_true of shape {y.shape} does not match dist, a mixture over "
            f"{dist.n_points} points and {dist.n_outputs} outputs: expected shape "
            f"{accepted}."
        )
    if not np.all(np.isfinite(y)):
        raise ValueError("y_true must be finite (no NaN or infinity).")
    return y


@validate_params(_CONSTRAINTS, prefer_skip_nested_validation=True)
def mean_negative_log_likelihood(
    y_true: ArrayLike, dist: NormalMixture, *, sample_weight: ArrayLike | None = None
) -> float:
    """Mean negative log predictive density of the observed targets.

    With several outputs, the density of a point is the joint density of its
    outputs (see :meth:`NormalMixture.logpdf`). Lower is better; the score is
    proper, so it rewards both accurate means and honest uncertainty, and it
    punishes an over-confident prediction without bound.

    Parameters
    ----------
    y_true : array-like of shape (n_points,) or (n_points, n_outputs)
        Observed targets. For a single-output ``dist`` a column of shape
        (n_points, 1) is accepted as well.

    dist : NormalMixture
        Predictive distribution at the same points, for instance
        ``estimator.predict_dist(X)``.

    sample_weight : array-like of shape (n_points,), default=None
        Weights of the points in the average. None weighs them equally.

    Returns
    -------
    nll : float
        Weighted mean over the points of ``-dist.logpdf(y_true)``.

    See Also
    --------
    mean_crps : A proper score in the units of the targets, bounded for
        over-confident predictions.
    neg_nll_scorer : The scorer that maximises its negation.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_swag import NormalMixture, mean_negative_log_likelihood
    >>> dist = NormalMixture(np.zeros((2, 3, 1)), np.ones((2, 3, 1)))
    >>> nll = mean_negative_log_likelihood(np.zeros(3), dist)
    >>> isinstance(nll, float)
    True
    """
    y = _check_targets(y_true, dist)
    weights = _check_weights(sample_weight, dist.n_points)
    return _average(-dist.logpdf(y), weights)


@validate_params(_CONSTRAINTS, prefer_skip_nested_validation=True)
def mean_crps(
    y_true: ArrayLike, dist: NormalMixture, *, sample_weight: ArrayLike | None = None
) -> float:
    """Mean continuous ranked probability score of the observed targets.

    The CRPS [1]_ (see :meth:`NormalMixture.crps`) is computed in closed form
    per point and output (marginally), averaged over the outputs and then over
    the points. Lower is better; it is in the units of the targets and is the
    mean absolute error for a point prediction.

    Parameters
    ----------
    y_true : array-like of shape (n_points,) or (n_points, n_outputs)
        Observed targets. For a single-output ``dist`` a column of shape
        (n_points, 1) is accepted as well.

    dist : NormalMixture
        Predictive distribution at the same points.

    sample_weight : array-like of shape (n_points,), default=None
        Weights of the points in the average. None weighs them equally.

    Returns
    -------
    crps : float
        Weighted mean of the CRPS.

    See Also
    --------
    mean_negative_log_likelihood : The logarithmic score.
    neg_crps_scorer : The scorer that maximises its negation.

    References
    ----------
    .. [1] T. Gneiting and A. E. Raftery, "Strictly Proper Scoring Rules,
       Prediction, and Estimation", Journal of the American Statistical
       Association 102, 2007.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_swag import NormalMixture, mean_crps
    >>> dist = NormalMixture(np.zeros((2, 3, 1)), np.ones((2, 3, 1)))
    >>> crps = mean_crps(np.zeros(3), dist, sample_weight=[1.0, 2.0, 1.0])
    >>> isinstance(crps, float)
    True
    """
    y = _check_targets(y_true, dist)
    weights = _check_weights(sample_weight, dist.n_points)
    return _average(dist.crps(y), weights)


@validate_params({**_CONSTRAINTS, **_CONFIDENCE}, prefer_skip_nested_validation=True)
def interval_coverage(
    y_true: ArrayLike,
    dist: NormalMixture,
    confidence: float = 0.95,
    *,
    sample_weight: ArrayLike | None = None,
) -> float:
    """Fraction of the targets inside the equal-tailed predictive interval.

    The interval is ``dist.interval(confidence)``, per output, end points
    included. A calibrated model covers about ``confidence`` of the targets;
    less means over-confident intervals, more means too wide ones.

    Parameters
    ----------
    y_true : array-like of shape (n_points,) or (n_points, n_outputs)
        Observed targets. For a single-output ``dist`` a column of shape
        (n_points, 1) is accepted as well.

    dist : NormalMixture
        Predictive distribution at the same points.

    confidence : float, default=0.95
        Probability mass of the interval, in [0, 1].

    sample_weight : array-like of shape (n_points,), default=None
        Weights of the points in the average. None weighs them equally.

    Returns
    -------
    coverage : float
        Weighted fraction of the targets (and outputs) inside their interval,
        in [0, 1].

    See Also
    --------
    mean_interval_width : The price paid for the coverage.
    NormalMixture.interval : The intervals.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_swag import NormalMixture, interval_coverage
    >>> dist = NormalMixture(np.zeros((2, 3, 1)), np.ones((2, 3, 1)))
    >>> interval_coverage([0.0, 1.0, 5.0], dist, confidence=0.9)
    0.6666666666666666
    """
    y = _check_targets(y_true, dist)
    confidence = float(confidence)
    weights = _check_weights(sample_weight, dist.n_points)
    lower, upper = dist.interval(confidence)
    inside = (lower <= y) & (y <= upper)
    return _average(inside.astype(np.float64), weights)


@validate_params({**_CONSTRAINTS, **_CONFIDENCE}, prefer_skip_nested_validation=True)
def mean_interval_width(
    y_true: ArrayLike,
    dist: NormalMixture,
    confidence: float = 0.95,
    *,
    sample_weight: ArrayLike | None = None,
) -> float:
    """Mean width of the equal-tailed predictive intervals.

    The width of ``dist.interval(confidence)``, averaged over the outputs and
    the points. ``y_true`` only fixes the points and their weights, so that all
    metrics of this module share one signature; its values are not used.

    Parameters
    ----------
    y_true : array-like of shape (n_points,) or (n_points, n_outputs)
        Observed targets, checked against the shape of ``dist``.

    dist : NormalMixture
        Predictive distribution at the same points.

    confidence : float, default=0.95
        Probability mass of the interval, in [0, 1].

    sample_weight : array-like of shape (n_points,), default=None
        Weights of the points in the average. None weighs them equally.

    Returns
    -------
    width : float
        Weighted mean of ``upper - lower``, in the units of the targets;
        infinite for ``confidence=1``.

    See Also
    --------
    interval_coverage : What the width buys.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_swag import NormalMixture, mean_interval_width
    >>> dist = NormalMixture(np.zeros((2, 3, 1)), np.ones((2, 3, 1)))
    >>> width = mean_interval_width(np.zeros(3), dist, confidence=0.9)
    >>> isinstance(width, float)
    True
    """
    _check_targets(y_true, dist)
    confidence = float(confidence)
    weights = _check_weights(sample_weight, dist.n_points)
    lower, upper = dist.interval(confidence)
    return _average(upper - lower, weights)
