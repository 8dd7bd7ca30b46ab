"""Input checks and the weighted mean that the metrics of this package share."""

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._posterior.categorical_mixture import CategoricalMixture
from .._posterior.normal_mixture import NormalMixture

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


def _check_weights(sample_weight: ArrayLike | None, n_points: int):
    """Return None or the weights as a float array of shape (n_points,).

    Unlike scikit-learn's ``_check_sample_weight``, each message names what is
    wrong (the shape expected, a NaN, a negative weight, a zero sum).
    """
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


def _average(per_point: NDArray, weights: NDArray | None) -> float:
    """Weighted mean over points of the per-point values (outputs averaged first)."""
    if per_point.ndim == 2:
        per_point = per_point.mean(axis=1)
    return float(np.average(per_point, weights=weights))
