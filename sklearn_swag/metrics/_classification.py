"""Metrics of classifiers: calibration, proper scores and the uncertainty split.

Of class probabilities, as scikit-learn's metrics take them, so that they
apply to any classifier: the calibration error and the Brier score. Of a
:class:`~sklearn_swag.CategoricalMixture` (what
``MultiSWAGClassifier.predict_dist`` returns): the log loss and the total,
aleatoric and epistemic uncertainty.
"""

from numbers import Integral

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._posterior.categorical_mixture import CategoricalMixture
from .._sklearn_compat import validate_params
from ._base import _average, _check_dist, _check_weights

#: The constraints of the metrics of probabilities.
_PROBA_CONSTRAINTS = {
    "y_true": ["array-like"],
    "y_prob": ["array-like"],
    "labels": ["array-like", None],
    "sample_weight": ["array-like", None],
}
#: The constraints of the metrics of a mixture (``dist`` is checked by
#: ``_check_dist``, whose message names the estimator that returns it).
_MIXTURE_CONSTRAINTS = {
    "y_true": ["array-like"],
    "dist": "no_validation",
    "sample_weight": ["array-like", None],
}


def _check_labels(y_true: ArrayLike, dist: CategoricalMixture) -> NDArray:
    """Check ``dist`` and return ``y_true`` as an array of shape (n_points,)."""
    _check_dist(dist, CategoricalMixture)
    return dist.labels(y_true, "y_true")


def _check_n_bins(n_bins) -> int:
    """Return ``n_bins`` as an int, checking that it is an integer >= 1.

    Written out rather than left to ``validate_params``, whose message
    ("The 'n_bins' parameter of ... must be an int in the range [1, inf)")
    differs from the one ``tests/metrics`` asserts.
    """
    if not isinstance(n_bins, Integral) or isinstance(n_bins, bool):
        raise TypeError(f"n_bins must be an integer; got {type(n_bins).__name__}.")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1; got {n_bins!r}.")
    return int(n_bins)


def _check_prob(y_prob: ArrayLike) -> NDArray:
    """Return ``y_prob`` as a float array of shape (n_samples, n_classes).

    A vector of positive-class probabilities ``p`` becomes the columns
    ``[1 - p, p]``; rows must be probabilities that sum to 1.
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
    return prob


def _check_proba(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    labels: ArrayLike | None,
    sample_weight: ArrayLike | None,
) -> tuple[NDArray, NDArray, NDArray | None]:
    """Check class probabilities and labels as :func:`sklearn.metrics.log_loss` does.

    Returns the column of each row's label, the probabilities as a float array
    of shape (n_samples, n_classes) (see ``_check_prob``) and the weights (or
    None).
    """
    prob = _check_prob(y_prob)
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
    return index, prob, _check_weights(sample_weight, len(y))


@validate_params(
    {**_PROBA_CONSTRAINTS, "n_bins": "no_validation"},  # see _check_n_bins
    prefer_skip_nested_validation=True,
)
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


@validate_params(_PROBA_CONSTRAINTS, prefer_skip_nested_validation=True)
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
    # Not sklearn.metrics.brier_score_loss(..., scale_by_half=False) (1.7+): it
    # warns "The y_prob values do not sum to one" from a row sum 1.5e-8 away
    # from 1, which _check_prob accepts (measured with scikit-learn 1.9.1: the
    # float32 softmax of three classes, or probabilities rounded to 7 decimals,
    # sum to 1 only within about 1e-7). tests/metrics compare this with it.
    residual = prob.copy()
    residual[np.arange(len(index)), index] -= 1.0
    return _average((residual**2).sum(axis=1), weights)


@validate_params(_MIXTURE_CONSTRAINTS, prefer_skip_nested_validation=True)
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
    weights = _check_weights(sample_weight, dist.n_points)
    return _average(-dist.logpmf(dist.class_index(y)), weights)


@validate_params(_MIXTURE_CONSTRAINTS, prefer_skip_nested_validation=True)
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
    weights = _check_weights(sample_weight, dist.n_points)
    return _average(dist.entropy(), weights)


@validate_params(_MIXTURE_CONSTRAINTS, prefer_skip_nested_validation=True)
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
    weights = _check_weights(sample_weight, dist.n_points)
    return _average(dist.expected_entropy(), weights)


@validate_params(_MIXTURE_CONSTRAINTS, prefer_skip_nested_validation=True)
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
    weights = _check_weights(sample_weight, dist.n_points)
    return _average(dist.mutual_information(), weights)
