"""Metrics and scorers of predictive distributions, for model selection.

The metrics take the observed targets and a :class:`~sklearn_swag.NormalMixture`
(what ``MultiSWAGRegressor.predict_dist`` returns) and average a proper score or
an interval statistic over the points. The scorers wrap them with the signature
``scorer(estimator, X, y, sample_weight=None)`` that ``GridSearchCV``,
``cross_validate`` and ``cross_val_score`` expect as ``scoring``; they call the
estimator's ``predict_dist``, reaching through a :class:`~sklearn.pipeline.Pipeline`
to its last step.
"""

import numbers
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.pipeline import Pipeline

from ._mixture import NormalMixture

__all__ = [
    "dist_scorers",
    "interval_coverage",
    "make_dist_scorer",
    "mean_crps",
    "mean_interval_width",
    "mean_negative_log_likelihood",
    "neg_crps_scorer",
    "neg_nll_scorer",
]


# --------------------------------------------------------------------------- checks


def _check_targets(y_true: ArrayLike, dist: NormalMixture) -> NDArray:
    """Check ``dist`` and return ``y_true`` as a float array of its batch shape."""
    if not isinstance(dist, NormalMixture):
        raise TypeError(
            "dist must be a NormalMixture, such as MultiSWAGRegressor.predict_dist "
            f"returns; got {type(dist).__name__}."
        )
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


def _check_sample_weight(sample_weight: ArrayLike | None, n_points: int):
    """Return None or the weights as a float array of shape (n_points,)."""
    if sample_weight is None:
        return None
    try:
        weights = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError("sample_weight must be an array of real numbers.") from exc
    if weights.shape != (n_points,):
        raise ValueError(
            f"sample_weight must have shape (n_points,) = {(n_points,)}; got "
            f"{weights.shape}."
        )
    if not np.all(np.isfinite(weights)):
        raise ValueError("sample_weight must be finite (no NaN or infinity).")
    if np.any(weights < 0):
        raise ValueError("sample_weight must be non-negative.")
    if not weights.sum() > 0:
        raise ValueError("sample_weight must not sum to zero.")
    return weights


def _check_confidence(confidence) -> float:
    """Return ``confidence`` as a float, checking that it is a number in [0, 1]."""
    if not isinstance(confidence, numbers.Real) or isinstance(confidence, bool):
        raise TypeError(
            f"confidence must be a real number; got {type(confidence).__name__}."
        )
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence must lie in [0, 1]; got {confidence!r}.")
    return float(confidence)


def _average(per_point: NDArray, weights: NDArray | None) -> float:
    """Weighted mean over points of the per-point values (outputs averaged first)."""
    if per_point.ndim == 2:
        per_point = per_point.mean(axis=1)
    return float(np.average(per_point, weights=weights))


# --------------------------------------------------------------------------- metrics


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
    weights = _check_sample_weight(sample_weight, dist.n_points)
    return _average(-dist.logpdf(y), weights)


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
    weights = _check_sample_weight(sample_weight, dist.n_points)
    return _average(dist.crps(y), weights)


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
    confidence = _check_confidence(confidence)
    weights = _check_sample_weight(sample_weight, dist.n_points)
    lower, upper = dist.interval(confidence)
    inside = (lower <= y) & (y <= upper)
    return _average(inside.astype(np.float64), weights)


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
    confidence = _check_confidence(confidence)
    weights = _check_sample_weight(sample_weight, dist.n_points)
    lower, upper = dist.interval(confidence)
    return _average(upper - lower, weights)


# --------------------------------------------------------------------------- scorers


def _predict_dist(estimator, X) -> NormalMixture:
    """``estimator.predict_dist(X)``, through the steps of a fitted Pipeline."""
    if hasattr(estimator, "predict_dist"):
        return estimator.predict_dist(X)
    final = estimator
    while isinstance(final, Pipeline) and not hasattr(final, "predict_dist"):
        final = final[-1]
    if not hasattr(final, "predict_dist"):
        where = (
            f"The last step of this {type(estimator).__name__}, {type(final).__name__},"
            if final is not estimator
            else type(estimator).__name__
        )
        raise TypeError(
            f"{where} has no predict_dist method. Distribution scorers need an "
            "estimator with predict_dist, such as MultiSWAGRegressor, or a "
            "Pipeline whose last step has one."
        )
    # Only Pipelines remain: transform through all steps but the last.
    if len(estimator) > 1:
        X = estimator[:-1].transform(X)
    return _predict_dist(estimator[-1], X)


class _DistScorer:
    """Scorer ``scorer(estimator, X, y_true, sample_weight=None)`` of ``predict_dist``.

    Made by :func:`make_dist_scorer`; a plain class of picklable attributes, so
    that it travels to the workers of a parallel search.
    """

    def __init__(self, metric: Callable, sign: int, kwargs: dict) -> None:
        self._metric = metric
        self._sign = sign
        self._kwargs = kwargs

    def __call__(self, estimator, X, y_true, sample_weight=None) -> float:
        """Score ``estimator`` on ``X`` against ``y_true``.

        Parameters
        ----------
        estimator : object
            Fitted estimator with a ``predict_dist`` method, or a fitted
            Pipeline whose last step has one.

        X : array-like of shape (n_samples, n_features)
            Test inputs.

        y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Observed targets.

        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the points, passed on to the metric when not None.

        Returns
        -------
        score : float
            The metric, negated if lower is better.
        """
        dist = _predict_dist(estimator, X)
        kwargs = dict(self._kwargs)
        if sample_weight is not None:
            kwargs["sample_weight"] = sample_weight
        return self._sign * float(self._metric(y_true, dist, **kwargs))

    def _accept_sample_weight(self) -> bool:
        # Asked by scikit-learn's multi-metric scorer (the dict form of
        # ``scoring``) before it passes sample_weight on without metadata
        # routing; ``tests/test_scoring.py`` catches a change of that protocol.
        return True

    def __repr__(self) -> str:
        name = getattr(self._metric, "__name__", repr(self._metric))
        arguments = [name]
        if self._sign < 0:
            arguments.append("greater_is_better=False")
        arguments += [f"{key}={value!r}" for key, value in self._kwargs.items()]
        return f"make_dist_scorer({', '.join(arguments)})"


def make_dist_scorer(
    metric: Callable, *, greater_is_better: bool = True, **kwargs
) -> _DistScorer:
    """Make a scorer of predictive distributions from a metric.

    The scorer has the signature ``scorer(estimator, X, y, sample_weight=None)``
    of ``scoring`` in :class:`~sklearn.model_selection.GridSearchCV`,
    :func:`~sklearn.model_selection.cross_validate` and
    :func:`~sklearn.model_selection.cross_val_score`. It calls
    ``estimator.predict_dist(X)``; for a :class:`~sklearn.pipeline.Pipeline`,
    which has no ``predict_dist``, it transforms ``X`` through all steps but the
    last and calls the last step's ``predict_dist`` (through nested Pipelines
    as well). It then returns ``metric(y, dist, **kwargs)``, negated if
    ``greater_is_better`` is False so that greater is always better.

    Parameters
    ----------
    metric : callable
        Function ``metric(y_true, dist, **kwargs)`` returning a float, such as
        :func:`mean_crps`. It must accept a ``sample_weight`` keyword if the
        scorer is given sample weights. To use a scorer in parallel (``n_jobs``
        other than 1), the metric must be picklable: a module-level function,
        not a lambda.

    greater_is_better : bool, default=True
        Whether a greater value of ``metric`` is better. If False the scorer
        returns the negated metric.

    **kwargs : dict
        Further keyword arguments of ``metric``, such as ``confidence``.

    Returns
    -------
    scorer : callable
        Picklable scorer object, whose ``repr`` shows how it was made.

    See Also
    --------
    dist_scorers : A dictionary of ready-made scorers for ``cross_validate``.
    sklearn.metrics.make_scorer : The same for metrics of point predictions.

    Examples
    --------
    >>> from sklearn_swag import interval_coverage, make_dist_scorer
    >>> make_dist_scorer(interval_coverage, confidence=0.9)
    make_dist_scorer(interval_coverage, confidence=0.9)

    Used in a search, with ``X`` and ``y`` arrays::

        from sklearn.model_selection import GridSearchCV
        from sklearn_swag import MultiSWAGRegressor, mean_crps

        scorer = make_dist_scorer(mean_crps, greater_is_better=False)
        search = GridSearchCV(
            MultiSWAGRegressor(), {"swag_epochs": [10, 30]}, scoring=scorer
        ).fit(X, y)
    """
    if not callable(metric):
        raise TypeError(f"metric must be callable; got {type(metric).__name__}.")
    return _DistScorer(metric, 1 if greater_is_better else -1, kwargs)


#: Scorer of the negated mean negative log likelihood, for ``scoring``.
#:
#: ``neg_nll_scorer(estimator, X, y_true, sample_weight=None)`` returns
#: ``-mean_negative_log_likelihood(y_true, estimator.predict_dist(X))``, so
#: that greater is better, as ``scoring`` in scikit-learn expects.
#:
#: Parameters
#: ----------
#: estimator : object
#:     Fitted estimator with a ``predict_dist`` method, or a fitted
#:     Pipeline whose last step has one.
#: X : array-like of shape (n_samples, n_features)
#:     Test inputs.
#: y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
#:     Observed targets.
#: sample_weight : array-like of shape (n_samples,), default=None
#:     Weights of the points in the mean.
#:
#: Returns
#: -------
#: score : float
#:     Minus :func:`mean_negative_log_likelihood`; greater is better.
#:
#: See Also
#: --------
#: neg_crps_scorer : The same for the CRPS.
#: dist_scorers : This scorer and others, by name.
#:
#: Examples
#: --------
#: >>> from sklearn_swag import neg_nll_scorer
#: >>> neg_nll_scorer
#: make_dist_scorer(mean_negative_log_likelihood, greater_is_better=False)
#:
#: In a search, with ``X`` and ``y`` arrays::
#:
#:     from sklearn.model_selection import GridSearchCV
#:     from sklearn_swag import MultiSWAGRegressor
#:
#:     search = GridSearchCV(
#:         MultiSWAGRegressor(), {"rank": [5, 20]}, scoring=neg_nll_scorer
#:     ).fit(X, y)
neg_nll_scorer = make_dist_scorer(mean_negative_log_likelihood, greater_is_better=False)

#: Scorer of the negated mean CRPS, for ``scoring``.
#:
#: ``neg_crps_scorer(estimator, X, y_true, sample_weight=None)`` returns
#: ``-mean_crps(y_true, estimator.predict_dist(X))``, so that greater is
#: better.
#:
#: Parameters
#: ----------
#: estimator : object
#:     Fitted estimator with a ``predict_dist`` method, or a fitted
#:     Pipeline whose last step has one.
#: X : array-like of shape (n_samples, n_features)
#:     Test inputs.
#: y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
#:     Observed targets.
#: sample_weight : array-like of shape (n_samples,), default=None
#:     Weights of the points in the mean.
#:
#: Returns
#: -------
#: score : float
#:     Minus :func:`mean_crps`; greater is better.
#:
#: See Also
#: --------
#: neg_nll_scorer : The same for the log likelihood.
#: dist_scorers : This scorer and others, by name.
#:
#: Examples
#: --------
#: >>> from sklearn_swag import neg_crps_scorer
#: >>> neg_crps_scorer
#: make_dist_scorer(mean_crps, greater_is_better=False)
#:
#: In a search, with ``X`` and ``y`` arrays::
#:
#:     from sklearn.model_selection import GridSearchCV
#:     from sklearn_swag import MultiSWAGRegressor
#:
#:     search = GridSearchCV(
#:         MultiSWAGRegressor(), {"rank": [5, 20]}, scoring=neg_crps_scorer
#:     ).fit(X, y)
neg_crps_scorer = make_dist_scorer(mean_crps, greater_is_better=False)


def dist_scorers(confidence: float = 0.95) -> dict[str, _DistScorer]:
    """Scorers of the predictive distribution, for ``cross_validate``.

    A dictionary of named scorers, ready for ``scoring`` in
    :func:`~sklearn.model_selection.cross_validate` or (with a ``refit`` name)
    :class:`~sklearn.model_selection.GridSearchCV`.

    Parameters
    ----------
    confidence : float, default=0.95
        Probability mass of the intervals of the coverage and width scorers,
        in (0, 1).

    Returns
    -------
    scorers : dict
        With ``pct`` the confidence in percent (``"95"`` for 0.95):

        - ``"neg_nll"``: :data:`neg_nll_scorer`, the negated mean negative log
          likelihood;
        - ``"neg_crps"``: :data:`neg_crps_scorer`, the negated mean CRPS;
        - ``f"coverage_{pct}"``: :func:`interval_coverage`, as is. It is for
          reporting calibration, not a score to maximise: the widest intervals
          cover everything. Compare it with ``confidence``;
        - ``f"neg_width_{pct}"``: the negated :func:`mean_interval_width`.

    See Also
    --------
    make_dist_scorer : Make a scorer of another metric.

    Notes
    -----
    Each scorer calls ``predict_dist`` on its own, so evaluating the four costs
    four predictions per split.

    Examples
    --------
    >>> from sklearn_swag import dist_scorers
    >>> sorted(dist_scorers(0.9))
    ['coverage_90', 'neg_crps', 'neg_nll', 'neg_width_90']

    With an estimator and ``X``, ``y`` arrays::

        from sklearn.model_selection import cross_validate

        results = cross_validate(estimator, X, y, scoring=dist_scorers())
        results["test_coverage_95"].mean()
    """
    confidence = _check_confidence(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence!r}.")
    pct = f"{100 * confidence:g}"
    return {
        "neg_nll": neg_nll_scorer,
        "neg_crps": neg_crps_scorer,
        f"coverage_{pct}": make_dist_scorer(interval_coverage, confidence=confidence),
        f"neg_width_{pct}": make_dist_scorer(
            mean_interval_width, greater_is_better=False, confidence=confidence
        ),
    }
