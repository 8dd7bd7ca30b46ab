"""Metrics and scorers of predictive distributions, for model selection.

The regression metrics take the observed targets and a
:class:`~sklearn_swag.NormalMixture` (what ``MultiSWAGRegressor.predict_dist``
returns) and average a proper score or an interval statistic over the points.
The classification metrics take class labels and either a
:class:`~sklearn_swag.CategoricalMixture` (what
``MultiSWAGClassifier.predict_dist`` returns: log loss and the split of the
uncertainty) or, as scikit-learn's metrics do, an array of class probabilities
(calibration error and Brier score), so that they apply to any classifier.

The scorers have the signature ``scorer(estimator, X, y, sample_weight=None)``
that ``GridSearchCV``, ``cross_validate`` and ``cross_val_score`` expect as
``scoring``. Those of distributions call the estimator's ``predict_dist``,
reaching through a :class:`~sklearn.pipeline.Pipeline` to its last step; those
of probabilities are :func:`sklearn.metrics.make_scorer` scorers of
``predict_proba``.
"""

import numbers
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import get_scorer, make_scorer
from sklearn.pipeline import Pipeline

from .._posterior.categorical_mixture import CategoricalMixture
from .._posterior.normal_mixture import NormalMixture

__all__ = [
    "classification_scorers",
    "dist_scorers",
    "expected_calibration_error",
    "interval_coverage",
    "make_dist_scorer",
    "mean_crps",
    "mean_expected_entropy",
    "mean_interval_width",
    "mean_log_loss",
    "mean_mutual_information",
    "mean_negative_log_likelihood",
    "mean_predictive_entropy",
    "multiclass_brier_score",
    "neg_crps_scorer",
    "neg_ece_scorer",
    "neg_nll_scorer",
]


# --------------------------------------------------------------------------- checks


#: The estimator whose ``predict_dist`` returns each kind of distribution, and
#: the metrics that score it, for the error messages.
_DIST_KINDS = {
    NormalMixture: ("MultiSWAGRegressor", "regression metrics such as mean_crps"),
    CategoricalMixture: (
        "MultiSWAGClassifier",
        "classification metrics such as mean_log_loss",
    ),
}


def _check_dist(dist, kind: type) -> None:
    """Raise a TypeError unless ``dist`` is a ``kind``, saying what fits instead."""
    if isinstance(dist, kind):
        return
    message = (
        f"dist must be a {kind.__name__}, such as {_DIST_KINDS[kind][0]}"
        f".predict_dist returns; got {type(dist).__name__}"
    )
    for other, (estimator, metrics) in _DIST_KINDS.items():
        if isinstance(dist, other):
            message += f", the distribution of {estimator}: score it with the {metrics}"
    raise TypeError(message + ".")


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


def _check_labels(y_true: ArrayLike, dist: CategoricalMixture) -> NDArray:
    """Check ``dist`` and return ``y_true`` as an array of shape (n_points,)."""
    _check_dist(dist, CategoricalMixture)
    y = np.asarray(y_true)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (dist.n_points,):
        raise ValueError(
            f"y_true of shape {y.shape} does not match dist, a mixture over "
            f"{dist.n_points} points: expected shape {(dist.n_points,)} or "
            f"{(dist.n_points, 1)}."
        )
    return y


def _check_n_bins(n_bins) -> int:
    """Return ``n_bins`` as an int, checking that it is an integer >= 1."""
    if not isinstance(n_bins, numbers.Integral) or isinstance(n_bins, bool):
        raise TypeError(f"n_bins must be an integer; got {type(n_bins).__name__}.")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1; got {n_bins!r}.")
    return int(n_bins)


def _check_proba(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    labels: ArrayLike | None,
    sample_weight: ArrayLike | None,
) -> tuple[NDArray, NDArray, NDArray | None]:
    """Check class probabilities and labels as :func:`sklearn.metrics.log_loss` does.

    Returns the column of each row's label, the probabilities as a float array
    of shape (n_samples, n_classes) (a vector of positive-class probabilities
    ``p`` becomes the columns ``[1 - p, p]``) and the weights (or None).
    """
    prob = np.asarray(y_prob)
    # Rows must sum to 1 within 1e-6, or within the precision of a narrower
    # float type (a float32 softmax sums to 1 only within about 1e-7 a class).
    tolerance = 1e-6
    if np.issubdtype(prob.dtype, np.floating):
        tolerance = max(tolerance, float(np.sqrt(np.finfo(prob.dtype).eps)))
    try:
        prob = prob.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError("y_prob must be an array of real numbers.") from exc
    if prob.ndim == 1:
        prob = prob[:, None]
    if prob.ndim != 2 or prob.shape[1] == 0:
        raise ValueError(
            "y_prob must have shape (n_samples,) or (n_samples, n_classes); got "
            f"{prob.shape}."
        )
    if prob.shape[1] == 1:
        prob = np.hstack([1.0 - prob, prob])
    if not np.all(np.isfinite(prob)):
        raise ValueError("y_prob must be finite (no NaN or infinity).")
    if np.any(prob < 0.0) or np.any(prob > 1.0):
        raise ValueError(
            f"y_prob must hold probabilities in [0, 1]; got values in "
            f"[{prob.min():g}, {prob.max():g}]."
        )
    error = np.abs(prob.sum(axis=1) - 1.0)
    if error.size and error.max() > tolerance:
        raise ValueError(
            f"The rows of y_prob must sum to 1 (within {tolerance:g}); row "
            f"{int(error.argmax())} sums to {prob[error.argmax()].sum():.9g}."
        )

    y = np.asarray(y_true)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y_true must have shape (n_samples,); got {y.shape}.")
    if len(y) != len(prob):
        raise ValueError(
            f"y_true and y_prob must have the same length; got {len(y)} and "
            f"{len(prob)}."
        )
    if len(y) == 0:
        raise ValueError("y_true and y_prob hold no samples.")

    n_classes = prob.shape[1]
    if labels is None:
        classes = np.unique(y)
        if len(classes) != n_classes:
            raise ValueError(
                f"y_true holds {len(classes)} classes but y_prob has {n_classes} "
                "columns (a vector y_prob stands for 2); pass the labels of the "
                f"columns as labels (classifier.classes_). Classes in y_true: "
                f"{classes.tolist()[:10]}."
            )
    else:
        labels = np.asarray(labels)
        classes = np.unique(labels)
        if labels.ndim != 1 or len(classes) != labels.size:
            raise ValueError(
                "labels must be a one-dimensional array of distinct labels."
            )
        if len(classes) != n_classes:
            raise ValueError(
                f"labels holds {len(classes)} classes but y_prob has {n_classes} "
                "columns (a vector y_prob stands for 2)."
            )
    # The columns are the labels in sorted order, as in LabelBinarizer.
    index = np.clip(np.searchsorted(classes, y), 0, n_classes - 1)
    unknown = classes[index] != y
    if np.any(unknown):
        raise ValueError(
            f"y_true holds labels that are not in labels: "
            f"{np.unique(y[unknown]).tolist()[:10]}; labels: {classes.tolist()[:10]}."
        )
    return index, prob, _check_sample_weight(sample_weight, len(y))


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


# ----------------------------------------------------- classification metrics


def expected_calibration_error(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    *,
    n_bins: int = 15,
    labels: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
) -> float:
    """Expected calibration error of the top label.

    The top-label ECE of Guo et al. [1]_: the confidence of a prediction (its
    largest probability) is binned into ``n_bins`` equal-width bins
    ``(k / n_bins, (k + 1) / n_bins]`` (a confidence of 0 falls in the first),
    and the gaps between the accuracy and the mean confidence of each bin are
    averaged, weighted by the share of the samples in the bin. 0 is perfect
    calibration; lower is better. It is not a proper score: a classifier
    that always predicts the class frequencies has no calibration error, so
    read it beside the log loss or the Brier score.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed labels.

    y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, as ``predict_proba`` returns them: the columns
        are the labels in sorted order. A vector holds the probabilities of the
        positive (greater) label of a binary problem, as a scorer of
        ``predict_proba`` passes them: it stands for the columns
        ``[1 - y_prob, y_prob]``. Rows must sum to 1.

    n_bins : int, default=15
        Number of bins of the confidence.

    labels : array-like of shape (n_classes,), default=None
        The labels of the columns of ``y_prob``, as in
        :func:`sklearn.metrics.log_loss` (sorted before use). None takes the
        labels found in ``y_true``; pass them (``classifier.classes_``) when
        ``y_true`` may lack a class.

    sample_weight : array-like of shape (n_samples,), default=None
        Weights of the samples. None weighs them equally.

    Returns
    -------
    ece : float
        The calibration error, in [0, 1].

    See Also
    --------
    neg_ece_scorer : The scorer that minimises it.
    sklearn.calibration.calibration_curve : The reliability diagram of a
        binary problem.

    Notes
    -----
    A prediction is correct when the label of its most probable column, the
    first one on a tie as in ``predict``, is the observed one.

    References
    ----------
    .. [1] C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On Calibration of
       Modern Neural Networks", ICML 2017.

    Examples
    --------
    >>> from sklearn_swag import expected_calibration_error
    >>> y_prob = [[0.75, 0.25], [0.75, 0.25], [0.75, 0.25], [0.25, 0.75]]
    >>> expected_calibration_error(["a", "a", "b", "b"], y_prob)
    0.0
    >>> ece = expected_calibration_error([1, 0, 1, 0], [0.9, 0.9, 0.9, 0.9])
    >>> round(ece, 6)  # confidence 0.9, accuracy 0.5
    0.4
    """
    index, prob, weights = _check_proba(y_true, y_prob, labels, sample_weight)
    n_bins = _check_n_bins(n_bins)
    confidence = prob.max(axis=1)
    correct = prob.argmax(axis=1) == index
    # Right-closed bins: a confidence on an inner edge goes to the lower bin.
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    bins = np.searchsorted(inner_edges, confidence, side="left")
    weights = np.ones(len(confidence)) if weights is None else weights
    # Per bin, weight * (accuracy - confidence) = sum of weight * (correct - conf).
    gaps = np.bincount(bins, weights=weights * (correct - confidence), minlength=n_bins)
    return float(np.abs(gaps).sum() / weights.sum())


def multiclass_brier_score(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    *,
    labels: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
) -> float:
    """Brier score of class probabilities, one definition for any number of classes.

    The mean over the samples of the squared distance between the predicted
    probabilities and the one-hot observed label, summed over the classes [1]_.
    Lower is better; it lies in [0, 2] and is a proper score.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Observed labels.

    y_prob : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities with the labels in sorted order, or for a
        binary problem a vector of the probabilities of the positive (greater)
        label, as in :func:`expected_calibration_error`.

    labels : array-like of shape (n_classes,), default=None
        The labels of the columns of ``y_prob``; None takes those of ``y_true``.

    sample_weight : array-like of shape (n_samples,), default=None
        Weights of the samples. None weighs them equally.

    Returns
    -------
    brier : float
        Weighted mean of ``sum((y_prob - onehot) ** 2, axis=1)``.

    See Also
    --------
    sklearn.metrics.brier_score_loss : The same for multiclass problems; for a
        binary one it is half this score by default.

    Notes
    -----
    Unlike scikit-learn's ``"neg_brier_score"`` scorer, the scorer of
    :func:`classification_scorers` needs no ``pos_label`` on a binary problem
    with string labels, and the score means the same for two classes as for
    more.

    References
    ----------
    .. [1] G. W. Brier, "Verification of Forecasts Expressed in Terms of
       Probability", Monthly Weather Review 78, 1950.

    Examples
    --------
    >>> from sklearn_swag import multiclass_brier_score
    >>> multiclass_brier_score(["a", "b"], [[1.0, 0.0], [0.5, 0.5]])
    0.25
    """
    index, prob, weights = _check_proba(y_true, y_prob, labels, sample_weight)
    residual = prob.copy()
    residual[np.arange(len(index)), index] -= 1.0
    return _average((residual**2).sum(axis=1), weights)


def mean_log_loss(
    y_true: ArrayLike,
    dist: CategoricalMixture,
    *,
    sample_weight: ArrayLike | None = None,
) -> float:
    """Mean negative log predictive probability of the observed labels.

    The log loss (cross-entropy) of the predictive distribution, computed from
    its log-probabilities (with its ``temperature``), so that a probability
    that underflows to 0 still gives a finite loss. Lower is better; a proper
    score.

    Parameters
    ----------
    y_true : array-like of shape (n_points,)
        Observed labels, from ``dist.classes``. A column of shape
        (n_points, 1) is accepted as well.

    dist : CategoricalMixture
        Predictive distribution at the same points, for instance
        ``classifier.predict_dist(X)``.

    sample_weight : array-like of shape (n_points,), default=None
        Weights of the points in the average. None weighs them equally.

    Returns
    -------
    log_loss : float
        Weighted mean over the points of
        ``-dist.logpmf(dist.class_index(y_true))``, in nats.

    See Also
    --------
    sklearn.metrics.log_loss : The same from an array of probabilities.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_swag import CategoricalMixture
    >>> from sklearn_swag import mean_log_loss
    >>> p = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.4, 0.6]]])
    >>> dist = CategoricalMixture(np.log(p), np.zeros((2, 2)), classes=["a", "b"])
    >>> loss = mean_log_loss(["a", "b"], dist)
    >>> isinstance(loss, float)
    True
    """
    y = _check_labels(y_true, dist)
    weights = _check_sample_weight(sample_weight, dist.n_points)
    return _average(-dist.logpmf(dist.class_index(y)), weights)


def mean_predictive_entropy(
    y_true: ArrayLike,
    dist: CategoricalMixture,
    *,
    sample_weight: ArrayLike | None = None,
) -> float:
    """Mean entropy of the predictive class probabilities: total uncertainty.

    The mean of :meth:`CategoricalMixture.entropy`, the entropy of the
    probabilities averaged over the particles and their draws, which is
    :func:`mean_expected_entropy` plus :func:`mean_mutual_information`. It
    measures uncertainty, not error: ``y_true`` only fixes the points, so
    that all metrics share one signature; its values are not used.

    Parameters
    ----------
    y_true : array-like of shape (n_points,)
        Observed labels, checked against the length of ``dist``.

    dist : CategoricalMixture
        Predictive distribution at the same points.

    sample_weight : array-like of shape (n_points,), default=None
        Weights of the points in the average. None weighs them equally.

    Returns
    -------
    entropy : float
        In nats, between 0 and ``log(n_classes)``, of the mixture at
        temperature 1.

    See Also
    --------
    mean_mutual_information : Its epistemic part.
    mean_expected_entropy : Its aleatoric part.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_swag import CategoricalMixture
    >>> from sklearn_swag import mean_predictive_entropy
    >>> p = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.4, 0.6]]])
    >>> dist = CategoricalMixture(np.log(p), np.zeros((2, 2)))
    >>> entropy = mean_predictive_entropy([0, 1], dist)
    >>> isinstance(entropy, float)
    True
    """
    _check_labels(y_true, dist)
    weights = _check_sample_weight(sample_weight, dist.n_points)
    return _average(dist.entropy(), weights)


def mean_expected_entropy(
    y_true: ArrayLike,
    dist: CategoricalMixture,
    *,
    sample_weight: ArrayLike | None = None,
) -> float:
    """Mean expected entropy of the posterior draws: aleatoric uncertainty.

    The mean of :meth:`CategoricalMixture.expected_entropy`, how uncertain
    each draw of the network is on average: high where the classes overlap.
    ``y_true`` only fixes the points; its values are not used.

    Parameters
    ----------
    y_true : array-like of shape (n_points,)
        Observed labels, checked against the length of ``dist``.

    dist : CategoricalMixture
        Predictive distribution at the same points.

    sample_weight : array-like of shape (n_points,), default=None
        Weights of the points in the average. None weighs them equally.

    Returns
    -------
    expected_entropy : float
        In nats, at most :func:`mean_predictive_entropy`.

    See Also
    --------
    mean_mutual_information : The epistemic rest of the entropy.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_swag import CategoricalMixture
    >>> from sklearn_swag import mean_expected_entropy
    >>> p = np.array([[[0.5, 0.5]], [[0.5, 0.5]]])  # two draws, both unsure
    >>> dist = CategoricalMixture(np.log(p), np.full((2, 1), np.log(2)))
    >>> bool(np.isclose(mean_expected_entropy([0], dist), np.log(2)))
    True
    """
    _check_labels(y_true, dist)
    weights = _check_sample_weight(sample_weight, dist.n_points)
    return _average(dist.expected_entropy(), weights)


def mean_mutual_information(
    y_true: ArrayLike,
    dist: CategoricalMixture,
    *,
    sample_weight: ArrayLike | None = None,
) -> float:
    """Mean mutual information between label and weights: epistemic uncertainty.

    The mean of :meth:`CategoricalMixture.mutual_information` (BALD), how much
    the particles and their draws disagree: 0 when they all predict the same
    probabilities, ``log(n_classes)`` at most. High away from the training
    data. ``y_true`` only fixes the points; its values are not used.

    Parameters
    ----------
    y_true : array-like of shape (n_points,)
        Observed labels, checked against the length of ``dist``.

    dist : CategoricalMixture
        Predictive distribution at the same points.

    sample_weight : array-like of shape (n_points,), default=None
        Weights of the points in the average. None weighs them equally.

    Returns
    -------
    mutual_information : float
        In nats, non-negative.

    See Also
    --------
    mean_expected_entropy : The aleatoric rest of the entropy.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_swag import CategoricalMixture
    >>> from sklearn_swag import mean_mutual_information
    >>> p = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # two sure draws that disagree
    >>> with np.errstate(divide="ignore"):
    ...     dist = CategoricalMixture(np.log(p), np.zeros((2, 1)))
    >>> bool(np.isclose(mean_mutual_information([0], dist), np.log(2)))
    True
    """
    _check_labels(y_true, dist)
    weights = _check_sample_weight(sample_weight, dist.n_points)
    return _average(dist.mutual_information(), weights)


# --------------------------------------------------------------------------- scorers


def _predict_dist(estimator, X) -> NormalMixture | CategoricalMixture:
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
            "estimator with predict_dist, such as MultiSWAGRegressor or "
            "MultiSWAGClassifier, or a Pipeline whose last step has one. To "
            "score predict_proba, use neg_ece_scorer or a scikit-learn scorer."
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
            Observed targets, or class labels.

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
        :func:`mean_crps` for a regressor or :func:`mean_log_loss` for a
        classifier. It must accept a ``sample_weight`` keyword if the
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
    classification_scorers : The same for classifiers.
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


#: Scorer of the negated expected calibration error, for ``scoring``.
#:
#: ``neg_ece_scorer(estimator, X, y_true, sample_weight=None)`` returns
#: ``-expected_calibration_error(y_true, estimator.predict_proba(X))`` with
#: 15 bins, so that greater is better. A scikit-learn scorer of
#: ``predict_proba`` (:func:`sklearn.metrics.make_scorer`), it scores any
#: classifier and Pipeline that has ``predict_proba``. On a binary problem it
#: gets the probabilities of ``classes_[1]`` only, which the metric reads as
#: the columns ``[1 - p, p]``; the columns are matched with the labels found
#: in ``y_true``, so every class must occur in the test set (stratified folds
#: see to that), as for scikit-learn's ``"neg_log_loss"``.
#:
#: Parameters
#: ----------
#: estimator : object
#:     Fitted classifier with a ``predict_proba`` method.
#: X : array-like of shape (n_samples, n_features)
#:     Test inputs.
#: y_true : array-like of shape (n_samples,)
#:     Observed labels.
#: sample_weight : array-like of shape (n_samples,), default=None
#:     Weights of the samples.
#:
#: Returns
#: -------
#: score : float
#:     Minus :func:`expected_calibration_error`; greater is better.
#:
#: See Also
#: --------
#: classification_scorers : This scorer, with ``n_bins`` chosen, and others.
#:
#: Examples
#: --------
#: >>> from sklearn.datasets import load_iris
#: >>> from sklearn.linear_model import LogisticRegression
#: >>> from sklearn_swag import neg_ece_scorer
#: >>> X, y = load_iris(return_X_y=True)
#: >>> score = neg_ece_scorer(LogisticRegression().fit(X, y), X, y)
#: >>> isinstance(score, float), score <= 0
#: (True, True)
neg_ece_scorer = make_scorer(
    expected_calibration_error,
    greater_is_better=False,
    response_method="predict_proba",
)


def classification_scorers(n_bins: int = 15) -> dict:
    """Scorers of a probabilistic classifier, for ``cross_validate``.

    A dictionary of named scorers, ready for ``scoring`` in
    :func:`~sklearn.model_selection.cross_validate` or (with a ``refit`` name)
    :class:`~sklearn.model_selection.GridSearchCV`. The first three score
    ``predict_proba`` and work for any classifier; the last two need the
    ``predict_dist`` of a MultiSWAG classifier.

    Parameters
    ----------
    n_bins : int, default=15
        Number of bins of the calibration error.

    Returns
    -------
    scorers : dict
        - ``"neg_log_loss"``: scikit-learn's negated log loss;
        - ``"neg_brier"``: the negated :func:`multiclass_brier_score`;
        - ``f"neg_ece_{n_bins}"``: the negated
          :func:`expected_calibration_error` with ``n_bins`` bins;
        - ``"mutual_information"``: :func:`mean_mutual_information`, the
          epistemic uncertainty;
        - ``"entropy"``: :func:`mean_predictive_entropy`, the total
          uncertainty.

        The last two report uncertainty, and are not scores to maximise.

    See Also
    --------
    dist_scorers : The same for regressors.
    make_dist_scorer : Make a scorer of another metric of ``predict_dist``.

    Notes
    -----
    The scorers of ``predict_proba`` share one prediction per split when
    scored together; each scorer of ``predict_dist`` predicts on its own.

    Examples
    --------
    >>> from sklearn_swag import classification_scorers
    >>> sorted(classification_scorers(10))
    ['entropy', 'mutual_information', 'neg_brier', 'neg_ece_10', 'neg_log_loss']

    With a classifier and ``X``, ``y`` arrays::

        from sklearn.model_selection import cross_validate

        results = cross_validate(classifier, X, y, scoring=classification_scorers())
        results["test_neg_ece_15"].mean()
    """
    n_bins = _check_n_bins(n_bins)
    return {
        "neg_log_loss": get_scorer("neg_log_loss"),
        "neg_brier": make_scorer(
            multiclass_brier_score,
            greater_is_better=False,
            response_method="predict_proba",
        ),
        f"neg_ece_{n_bins}": make_scorer(
            expected_calibration_error,
            greater_is_better=False,
            response_method="predict_proba",
            n_bins=n_bins,
        ),
        "mutual_information": make_dist_scorer(mean_mutual_information),
        "entropy": make_dist_scorer(mean_predictive_entropy),
    }
