"""The predictive distribution of the classifier: a mixture of categoricals.

Every particle's posterior draws give one vector of class probabilities each
(the softmax of the network's logits). A particle's component is the average
of its draws' probabilities; the prediction is the equal-weight average of
the components, that is the average over every particle and draw, never of
the logits. Its uncertainty splits into the expected entropy of the draws
(aleatoric: the classes overlap) and the mutual information between the
label and the weights (epistemic: the draws disagree), which add up to the
entropy of the averaged probabilities. :func:`fit_temperature` finds the
temperature that calibrates the averaged probabilities on held-out rows.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar
from scipy.special import entr, log_softmax, logsumexp


def _read_only(array: NDArray) -> NDArray:
    array = np.asarray(array, dtype=np.float64)
    array.setflags(write=False)
    return array


class CategoricalMixture:
    """Equal-weight mixture of categorical distributions, one per particle.

    What :meth:`MultiSWAGClassifier.predict_dist
    <sklearn_swag.MultiSWAGClassifier.predict_dist>` returns: for every row,
    each particle's class probabilities (averaged over its posterior draws)
    and the entropy its draws have on average.

    Parameters
    ----------
    particle_log_proba : array-like of shape (n_models, n_points, n_classes)
        Log of each particle's class probabilities: the log of the mean over
        its draws of their softmax probabilities.
    particle_expected_entropy : array-like of shape (n_models, n_points)
        Each particle's mean over its draws of the entropy (in nats) of the
        draw's probabilities.
    classes : array-like of shape (n_classes,), default=None
        The labels of the columns; None numbers them 0, 1, ...
    temperature : float, default=1.0
        Temperature of the averaged probabilities: :meth:`proba` is
        proportional to the averaged probabilities to the power
        ``1 / temperature``. The uncertainty split (:meth:`entropy`,
        :meth:`expected_entropy`, :meth:`mutual_information`) describes the
        mixture itself, at temperature 1.

    Attributes
    ----------
    n_models, n_points, n_classes : int
        Components, rows and classes.
    classes : ndarray of shape (n_classes,)
        Labels of the columns.
    particle_proba : ndarray of shape (n_models, n_points, n_classes)
        Each particle's class probabilities (read-only).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_swag import CategoricalMixture
    >>> p = np.array([[[0.9, 0.1]], [[0.1, 0.9]]])  # two particles that disagree
    >>> dist = CategoricalMixture(np.log(p), np.zeros((2, 1)))
    >>> dist.proba()
    array([[0.5, 0.5]])
    >>> bool(np.isclose(dist.mutual_information()[0], np.log(2)))
    True
    """

    def __init__(
        self,
        particle_log_proba: ArrayLike,
        particle_expected_entropy: ArrayLike,
        classes: ArrayLike | None = None,
        temperature: float = 1.0,
    ) -> None:
        log_p = np.asarray(particle_log_proba, dtype=np.float64)
        if log_p.ndim != 3:
            raise ValueError(
                "particle_log_proba must have shape (n_models, n_points, n_classes); "
                f"got {log_p.shape}."
            )
        if np.isnan(log_p).any() or (log_p > 1e-9).any():
            raise ValueError("particle_log_proba must hold log-probabilities (<= 0).")
        entropy = np.asarray(particle_expected_entropy, dtype=np.float64)
        if entropy.shape != log_p.shape[:2]:
            raise ValueError(
                f"particle_expected_entropy must have shape {log_p.shape[:2]}; got "
                f"{entropy.shape}."
            )
        if not np.isfinite(entropy).all() or (entropy < -1e-9).any():
            raise ValueError("particle_expected_entropy must be finite and >= 0.")
        self.n_models, self.n_points, self.n_classes = log_p.shape
        self.classes = (
            np.arange(self.n_classes) if classes is None else np.asarray(classes)
        )
        if self.classes.shape != (self.n_classes,):
            raise ValueError(
                f"classes must have {self.n_classes} entries; got {self.classes.shape}."
            )
        temperature = float(temperature)
        if not np.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        self.temperature = temperature
        # Renormalised, so that each particle's row is a distribution to the
        # last bit (a mean of float32 softmaxes sums to 1 within rounding).
        log_p = log_p - logsumexp(log_p, axis=-1, keepdims=True)
        self.particle_proba = _read_only(np.exp(log_p))
        self._particle_entropy = _read_only(np.clip(entropy, 0.0, None))
        mixture = logsumexp(log_p, axis=0) - np.log(self.n_models)
        self._mixture_log_proba = mixture - logsumexp(mixture, axis=-1, keepdims=True)

    def __repr__(self) -> str:
        return (
            f"CategoricalMixture(n_models={self.n_models}, n_points={self.n_points}, "
            f"n_classes={self.n_classes}, temperature={self.temperature:g})"
        )

    def log_proba(self) -> NDArray:
        """Log of the predictive class probabilities, computed stably.

        Returns
        -------
        ndarray of shape (n_points, n_classes)
            ``log(mean over particles and draws of softmax)``, by log-sum-exp,
            tempered by ``temperature``; finite wherever a probability
            underflows to 0.
        """
        if self.temperature == 1.0:
            return self._mixture_log_proba.copy()
        tempered = self._mixture_log_proba / self.temperature
        return tempered - logsumexp(tempered, axis=-1, keepdims=True)

    def proba(self) -> NDArray:
        """Predictive class probabilities.

        Returns
        -------
        ndarray of shape (n_points, n_classes)
            float64 rows that sum to 1.
        """
        p = np.exp(self.log_proba())
        return p / p.sum(axis=-1, keepdims=True)

    def predict(self) -> NDArray:
        """The most probable class of each row.

        Returns
        -------
        ndarray of shape (n_points,)
            Labels from ``classes``.
        """
        return self.classes[np.argmax(self._mixture_log_proba, axis=-1)]

    def entropy(self) -> NDArray:
        """Total predictive uncertainty: the entropy of the averaged probabilities.

        Returns
        -------
        ndarray of shape (n_points,)
            In nats, between 0 and ``log(n_classes)``.
        """
        p = np.exp(self._mixture_log_proba)
        return np.clip(entr(p).sum(axis=-1), 0.0, None)

    def expected_entropy(self) -> NDArray:
        """Aleatoric uncertainty: the mean entropy of the posterior draws.

        Returns
        -------
        ndarray of shape (n_points,)
            In nats; at most :meth:`entropy`.
        """
        return np.minimum(self._particle_entropy.mean(axis=0), self.entropy())

    def mutual_information(self) -> NDArray:
        """Epistemic uncertainty: how much the draws disagree.

        The mutual information between the label and the network's weights,
        ``entropy() - expected_entropy()`` (BALD, Houlsby et al. 2011): 0 when
        every draw predicts the same probabilities.

        Returns
        -------
        ndarray of shape (n_points,)
            In nats, non-negative.
        """
        return self.entropy() - self.expected_entropy()

    def particle_entropy(self) -> NDArray:
        """Entropy of each particle's probabilities.

        Returns
        -------
        ndarray of shape (n_models, n_points)
        """
        return np.clip(entr(self.particle_proba).sum(axis=-1), 0.0, None)

    def logpmf(self, y_index: ArrayLike) -> NDArray:
        """Log-probability of the observed classes.

        Parameters
        ----------
        y_index : array-like of shape (n_points,)
            Column index (0 to ``n_classes - 1``) of each row's class.

        Returns
        -------
        ndarray of shape (n_points,)
        """
        index = np.asarray(y_index)
        if index.shape != (self.n_points,) or not np.issubdtype(
            index.dtype, np.integer
        ):
            raise ValueError(
                f"y_index must hold {self.n_points} integer column indices; got "
                f"shape {index.shape} of {index.dtype}."
            )
        if index.size and (index.min() < 0 or index.max() >= self.n_classes):
            raise ValueError(f"y_index must lie in [0, {self.n_classes}).")
        return np.take_along_axis(self.log_proba(), index[:, None], axis=1)[:, 0]

    def labels(self, y: ArrayLike, name: str = "y") -> NDArray:
        """Labels ``y`` as an array of shape ``(n_points,)``, or a clear error.

        Parameters
        ----------
        y : array-like of shape (n_points,) or (n_points, 1)
            One label per point.
        name : str, default="y"
            What the message calls ``y``.

        Returns
        -------
        ndarray of shape (n_points,)
        """
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (self.n_points,):
            raise ValueError(
                f"{name} of shape {y.shape} does not match dist, a mixture over "
                f"{self.n_points} points: expected shape {(self.n_points,)} or "
                f"{(self.n_points, 1)}."
            )
        return y

    def class_index(self, y: ArrayLike) -> NDArray:
        """Column indices of labels ``y``; an unknown label is a clear error.

        Parameters
        ----------
        y : array-like of shape (n_points,)
            Labels from ``classes``.

        Returns
        -------
        ndarray of shape (n_points,), int
        """
        y = self.labels(y, "y")
        order = np.argsort(self.classes)
        sorted_classes = self.classes[order]
        position = np.clip(
            np.searchsorted(sorted_classes, y), 0, len(sorted_classes) - 1
        )
        unknown = sorted_classes[position] != y
        if np.any(unknown):
            raise ValueError(
                f"y holds labels the classifier was not fitted on: "
                f"{np.unique(y[unknown])[:5].tolist()}; known: "
                f"{self.classes.tolist()}."
            )
        return order[position]


#: Misclassified held-out rows a temperature below 1 needs (see fit_temperature).
_MIN_ERRORS_TO_SHARPEN = 5


def fit_temperature(
    log_proba: np.ndarray, y_index: np.ndarray, weights: np.ndarray
) -> float:
    """The temperature of ``log_proba`` that maximises the weighted likelihood.

    What ``MultiSWAGClassifier(temperature_scaling=True)`` fits on its
    held-out rows (Guo et al. 2017) and :class:`CategoricalMixture` applies.
    One scalar, searched on the log scale between 1/20 and 20: the tempered
    probabilities are ``softmax(log_proba / T)``. Sharpening (``T < 1``) needs
    evidence: on rows that are all, or all but a few, classified right, the
    likelihood grows without end as ``T`` falls, which says nothing of new
    rows (they are also the rows early stopping chose the epoch on). With
    fewer than ``_MIN_ERRORS_TO_SHARPEN`` misclassified rows the search starts
    at 1.

    Parameters
    ----------
    log_proba : ndarray of shape (n_rows, n_classes)
        Log of the predictive class probabilities.
    y_index : ndarray of shape (n_rows,)
        Column index of each row's class.
    weights : ndarray of shape (n_rows,)
        Row weights.

    Returns
    -------
    temperature : float
        Between 1/20 and 20.
    """

    def nll(log_t: float) -> float:
        tempered = log_softmax(log_proba / np.exp(log_t), axis=1)
        picked = np.take_along_axis(tempered, y_index[:, None], axis=1)[:, 0]
        return -float(np.average(picked, weights=weights))

    bound = np.log(20.0)
    n_errors = int(np.sum(np.argmax(log_proba, axis=1) != y_index))
    lower = -bound if n_errors >= _MIN_ERRORS_TO_SHARPEN else 0.0
    result = minimize_scalar(nll, bounds=(lower, bound), method="bounded")
    best = float(result.x) if nll(result.x) < nll(0.0) else 0.0
    return float(np.exp(best))
