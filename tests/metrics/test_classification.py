"""Tests of the classification metrics (against numpy) and of their scorers."""

import inspect
import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_classification
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import brier_score_loss, check_scoring, log_loss
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from sklearn_swag import (
    classification_scorers,
    expected_calibration_error,
    make_dist_scorer,
    mean_crps,
    mean_expected_entropy,
    mean_log_loss,
    mean_mutual_information,
    mean_predictive_entropy,
    multiclass_brier_score,
    neg_ece_scorer,
    neg_nll_scorer,
)
from sklearn_swag._posterior.categorical_mixture import CategoricalMixture
from sklearn_swag._posterior.normal_mixture import NormalMixture

MIXTURE_METRICS = [
    mean_log_loss,
    mean_predictive_entropy,
    mean_expected_entropy,
    mean_mutual_information,
]

# ------------------------------------------------------------------ references


def _ece_loop(y_index, prob, n_bins, weights=None):
    """Top-label ECE, one bin at a time, bins (lo, hi] with 0 in the first."""
    weights = np.ones(len(prob)) if weights is None else np.asarray(weights, float)
    confidence = prob.max(axis=1)
    correct = (prob.argmax(axis=1) == y_index).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for k in range(n_bins):
        in_bin = (confidence > edges[k]) & (confidence <= edges[k + 1])
        if k == 0:
            in_bin |= confidence == 0.0
        weight = weights[in_bin].sum()
        if weight > 0:
            accuracy = np.sum(weights[in_bin] * correct[in_bin]) / weight
            mean_confidence = np.sum(weights[in_bin] * confidence[in_bin]) / weight
            ece += weight / weights.sum() * abs(accuracy - mean_confidence)
    return ece


def _brier_numpy(y_index, prob, weights=None):
    onehot = np.eye(prob.shape[1])[y_index]
    return np.average(((prob - onehot) ** 2).sum(axis=1), weights=weights)


def _entropy(p):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=-1)


def _random_proba(n=200, n_classes=3, seed=0):
    rng = np.random.RandomState(seed)
    prob = softmax(rng.normal(scale=2.0, size=(n, n_classes)), axis=1)
    y_index = rng.randint(n_classes, size=n)
    return y_index, prob, rng


# ------------------------------------------------------------------------- ECE


@pytest.mark.parametrize("n_classes", [2, 3, 5])
@pytest.mark.parametrize("n_bins", [1, 5, 15, 100])
@pytest.mark.parametrize("weighted", [False, True])
def test_ece_matches_a_loop(n_classes, n_bins, weighted):
    y_index, prob, rng = _random_proba(n_classes=n_classes, seed=n_bins + n_classes)
    # Make about half the predictions right, so that the bins are not all empty
    # of correct ones.
    right = rng.uniform(size=len(y_index)) < 0.5
    y_index = np.where(right, prob.argmax(axis=1), y_index)
    weights = rng.uniform(0.0, 3.0, size=len(y_index)) if weighted else None
    ece = expected_calibration_error(
        y_index, prob, n_bins=n_bins, sample_weight=weights
    )
    assert isinstance(ece, float)
    assert_allclose(ece, _ece_loop(y_index, prob, n_bins, weights), rtol=1e-12)


@pytest.mark.parametrize("n_bins", [1, 2, 3, 15])
def test_ece_is_zero_when_calibrated(n_bins):
    # Confidence 0.75 everywhere, three predictions in four right.
    prob = np.tile([0.75, 0.125, 0.125], (8, 1))
    y = np.array([0, 0, 0, 1, 0, 0, 0, 2])
    assert expected_calibration_error(y, prob, n_bins=n_bins) == 0.0
    binary = np.tile([0.25, 0.75], (4, 1))
    assert expected_calibration_error([1, 1, 1, 0], binary, n_bins=n_bins) == 0.0


def test_ece_of_miscalibrated_predictions():
    # Confidence 0.9, accuracy 0.5: one bin with a gap of 0.4.
    prob = np.tile([0.9, 0.1], (4, 1))
    assert_allclose(expected_calibration_error([0, 1, 0, 1], prob), 0.4)
    # Two bins of half the weight each: gaps 0.05 (conf 0.95, all right) and
    # 0.55 (conf 0.55, all wrong).
    prob = np.array([[0.95, 0.05], [0.05, 0.95], [0.55, 0.45], [0.45, 0.55]])
    y = [0, 1, 1, 0]
    assert_allclose(expected_calibration_error(y, prob, n_bins=10), 0.3)
    # One bin pools them: accuracy 0.5, confidence 0.75.
    assert_allclose(expected_calibration_error(y, prob, n_bins=1), 0.25)


def test_ece_bins_are_closed_on_the_right():
    # With two bins, a confidence of exactly 0.5 is in (0, 0.5] and one of
    # exactly 1 in (0.5, 1]: gaps 0.5 (right at 0.5) and 1 (wrong at 1), each
    # of half the weight. Bins closed on the left would pool them: 0.25.
    prob = np.array([[0.5, 0.5], [0.0, 1.0]])
    ece = expected_calibration_error([0, 0], prob, n_bins=2, labels=[0, 1])
    assert_allclose(ece, 0.75)
    assert_allclose(_ece_loop(np.array([0, 0]), prob, 2), 0.75)
    # A tie counts as a prediction of the first column, as argmax does.
    ece = expected_calibration_error([1], [[0.5, 0.5]], n_bins=2, labels=[0, 1])
    assert_allclose(ece, 0.5)


def test_ece_with_string_labels():
    y_index, prob, _ = _random_proba(seed=3)
    names = np.array(["cat", "dog", "eel"])
    expected = expected_calibration_error(y_index, prob)
    assert expected_calibration_error(names[y_index], prob) == expected
    assert expected_calibration_error(list(names[y_index]), prob) == expected
    # Columns are the labels in sorted order, whatever order they are given in.
    shuffled = ["eel", "cat", "dog"]
    assert expected_calibration_error(names[y_index], prob, labels=shuffled) == (
        expected
    )


def test_ece_needs_labels_when_y_true_lacks_a_class():
    y_index, prob, _ = _random_proba(seed=4)
    keep = y_index != 1
    y, prob = np.array(["a", "b", "c"])[y_index[keep]], prob[keep]
    with pytest.raises(ValueError, match="pass the labels of the columns as labels"):
        expected_calibration_error(y, prob)
    ece = expected_calibration_error(y, prob, labels=["a", "b", "c"])
    assert_allclose(ece, _ece_loop(y_index[keep], prob, 15), rtol=1e-12)


def test_ece_of_binary_positive_probabilities():
    rng = np.random.RandomState(5)
    p = rng.uniform(size=100)
    y = (rng.uniform(size=100) < p).astype(int)
    full = np.column_stack([1 - p, p])
    expected = expected_calibration_error(y, full, n_bins=7)
    assert expected_calibration_error(y, p, n_bins=7) == expected
    assert expected_calibration_error(y, p[:, None], n_bins=7) == expected
    assert_allclose(expected, _ece_loop(y, full, 7), rtol=1e-12)
    # String labels: the vector is the probability of the greater label.
    labels = np.where(y == 1, "yes", "no")
    assert expected_calibration_error(labels, p, n_bins=7) == expected
    # One class in y_true cannot tell which column it is.
    with pytest.raises(ValueError, match="1 classes"):
        expected_calibration_error(np.ones(100), p)
    ece = expected_calibration_error(np.ones(100), p, labels=[0, 1])
    assert_allclose(ece, _ece_loop(np.ones(100, int), full, 15), rtol=1e-12)


def test_ece_weights_are_repetitions():
    y_index, prob, rng = _random_proba(n=60, seed=6)
    counts = rng.randint(0, 4, size=60)
    weighted = expected_calibration_error(y_index, prob, sample_weight=counts)
    repeated = expected_calibration_error(
        np.repeat(y_index, counts), np.repeat(prob, counts, axis=0)
    )
    assert_allclose(weighted, repeated, rtol=1e-12)


def test_ece_accepts_float32_rounding():
    rng = np.random.RandomState(7)
    prob = softmax(rng.normal(size=(50, 200)).astype(np.float32), axis=1)
    y = rng.randint(200, size=50)
    ece = expected_calibration_error(y, prob, labels=np.arange(200))
    assert_allclose(ece, _ece_loop(y, prob.astype(np.float64), 15), rtol=1e-10)


@pytest.mark.parametrize(
    "case, error, match",
    [
        ("negative", ValueError, r"probabilities in \[0, 1\]"),
        ("above-one", ValueError, r"probabilities in \[0, 1\]"),
        ("nan", ValueError, "y_prob must be finite"),
        ("text-prob", ValueError, "real numbers"),
        ("not-normalised", ValueError, "must sum to 1"),
        ("three-d", ValueError, r"y_prob must have shape"),
        ("short-y", ValueError, "same length"),
        ("wide-y", ValueError, r"y_true must have shape \(n_samples,\)"),
        ("empty", ValueError, "no samples"),
        ("too-few-labels", ValueError, "labels holds 2 classes but y_prob has 3"),
        ("repeated-labels", ValueError, "distinct labels"),
        ("unknown-label", ValueError, r"not in labels: \[7\]"),
        ("negative-weights", ValueError, "non-negative"),
        ("short-weights", ValueError, "sample_weight must have shape"),
    ],
)
@pytest.mark.parametrize("metric", [expected_calibration_error, multiclass_brier_score])
def test_proba_metric_validation(metric, case, error, match):
    y, prob, _ = _random_proba(n=10, seed=8)
    y[:3] = [0, 1, 2]
    kwargs = {}
    if case == "negative":
        prob[0] = [-0.1, 0.6, 0.5]
    elif case == "above-one":
        prob[0] = [1.1, -0.1, 0.0]
    elif case == "nan":
        prob[0, 0] = np.nan
    elif case == "text-prob":
        prob = [["a", "b", "c"]] * 10
    elif case == "not-normalised":
        prob[4] *= 1 + 1e-5
    elif case == "three-d":
        prob = prob[None]
    elif case == "short-y":
        y = y[:9]
    elif case == "wide-y":
        y = np.ones((10, 2))
    elif case == "empty":
        y, prob = y[:0], prob[:0]
    elif case == "too-few-labels":
        kwargs["labels"] = [0, 1]
    elif case == "repeated-labels":
        kwargs["labels"] = [0, 1, 1, 2]
    elif case == "unknown-label":
        y[5] = 7
        kwargs["labels"] = [0, 1, 2]
    elif case == "negative-weights":
        kwargs["sample_weight"] = -np.ones(10)
    elif case == "short-weights":
        kwargs["sample_weight"] = np.ones(9)
    with pytest.raises(error, match=match):
        metric(y, prob, **kwargs)


@pytest.mark.parametrize(
    "n_bins, error, match",
    [
        (0, ValueError, "n_bins must be at least 1"),
        (2.0, TypeError, "n_bins must be an integer"),
        (True, TypeError, "n_bins must be an integer"),
    ],
)
def test_ece_checks_n_bins(n_bins, error, match):
    with pytest.raises(error, match=match):
        expected_calibration_error([0, 1], [[0.6, 0.4], [0.3, 0.7]], n_bins=n_bins)
    assert expected_calibration_error([0, 1], [0.4, 0.7], n_bins=np.int64(3)) == (
        expected_calibration_error([0, 1], [0.4, 0.7], n_bins=3)
    )


# ----------------------------------------------------------------------- Brier


@pytest.mark.parametrize("n_classes", [2, 4])
def test_brier_matches_numpy(n_classes):
    y_index, prob, rng = _random_proba(n_classes=n_classes, seed=9)
    weights = rng.uniform(size=len(y_index))
    for w in (None, weights):
        assert_allclose(
            multiclass_brier_score(y_index, prob, sample_weight=w),
            _brier_numpy(y_index, prob, w),
            rtol=1e-12,
        )
    if n_classes > 2 and "labels" in inspect.signature(brier_score_loss).parameters:
        # scikit-learn >= 1.7 has the multiclass Brier score, unhalved.
        assert_allclose(
            multiclass_brier_score(y_index, prob), brier_score_loss(y_index, prob)
        )
    names = np.array(list("pqrs"))[:n_classes]
    assert_allclose(
        multiclass_brier_score(names[y_index], prob), _brier_numpy(y_index, prob)
    )


def test_brier_of_binary_positive_probabilities():
    rng = np.random.RandomState(10)
    p = rng.uniform(size=50)
    y = (rng.uniform(size=50) < p).astype(int)
    score = multiclass_brier_score(y, p)
    assert score == multiclass_brier_score(y, np.column_stack([1 - p, p]))
    # Twice the binary Brier score: both columns miss by the same amount.
    assert_allclose(score, 2 * np.mean((p - y) ** 2), rtol=1e-12)
    assert_allclose(score, 2 * brier_score_loss(y, p), rtol=1e-12)
    assert multiclass_brier_score(np.where(y, "yes", "no"), p) == score


def test_brier_of_float32_probabilities_does_not_warn():
    # scikit-learn's brier_score_loss warns that these rows do not sum to one.
    rng = np.random.RandomState(17)
    prob = softmax(rng.normal(size=(40, 3)).astype(np.float32), axis=1)
    y = rng.randint(3, size=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score = multiclass_brier_score(y, prob)
    assert_allclose(score, _brier_numpy(y, prob.astype(np.float64)), rtol=1e-12)


# ------------------------------------------------------------ mixture metrics


def _one_hot_mixture():
    """Two particles, each sure, that disagree on both points."""
    p = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])
    with np.errstate(divide="ignore"):
        return CategoricalMixture(np.log(p), np.zeros((2, 2)), classes=["a", "b"])


def test_mixture_metrics_of_disagreeing_particles():
    dist = _one_hot_mixture()
    y = ["a", "a"]
    assert_allclose(mean_mutual_information(y, dist), np.log(2), rtol=1e-12)
    assert_allclose(mean_predictive_entropy(y, dist), np.log(2), rtol=1e-12)
    assert mean_expected_entropy(y, dist) == 0.0
    assert_allclose(mean_log_loss(y, dist), np.log(2), rtol=1e-12)


def test_mixture_metrics_of_identical_particles():
    p = np.array([0.7, 0.2, 0.1])
    log_p = np.log(np.tile(p, (3, 4, 1)))
    dist = CategoricalMixture(log_p, np.full((3, 4), _entropy(p)))
    y = [0, 1, 2, 0]
    assert_allclose(mean_mutual_information(y, dist), 0.0, atol=1e-12)
    assert_allclose(mean_predictive_entropy(y, dist), _entropy(p), rtol=1e-12)
    assert_allclose(mean_expected_entropy(y, dist), _entropy(p), rtol=1e-12)
    assert_allclose(mean_log_loss(y, dist), -np.mean(np.log(p[y])), rtol=1e-12)


def _random_mixture(n_models=4, n_points=30, n_classes=3, seed=11):
    rng = np.random.RandomState(seed)
    p = softmax(rng.normal(scale=2.0, size=(n_models, n_points, n_classes)), axis=2)
    # Each particle's draws are surer than their average.
    expected = 0.8 * _entropy(p)
    classes = np.array(["x", "y", "z"])[:n_classes]
    dist = CategoricalMixture(np.log(p), expected, classes=classes)
    y = classes[rng.randint(n_classes, size=n_points)]
    return dist, y, p, expected, rng


def test_mixture_metrics_match_numpy():
    dist, y, p, expected, rng = _random_mixture()
    weights = rng.uniform(size=len(y))
    mean_p = p.mean(axis=0)
    total = _entropy(mean_p)
    aleatoric = np.minimum(expected.mean(axis=0), total)
    y_index = np.searchsorted(dist.classes, y)
    for w in (None, weights):
        kwargs = {"sample_weight": w}
        assert_allclose(
            mean_predictive_entropy(y, dist, **kwargs), np.average(total, weights=w)
        )
        assert_allclose(
            mean_expected_entropy(y, dist, **kwargs), np.average(aleatoric, weights=w)
        )
        assert_allclose(
            mean_mutual_information(y, dist, **kwargs),
            np.average(total - aleatoric, weights=w),
        )
        loss = -np.log(mean_p[np.arange(len(y)), y_index])
        assert_allclose(
            mean_log_loss(y, dist, **kwargs), np.average(loss, weights=w), rtol=1e-12
        )
        assert_allclose(
            mean_log_loss(y, dist, **kwargs),
            log_loss(y, mean_p, labels=dist.classes, sample_weight=w),
            rtol=1e-10,
        )
    # The split adds up.
    assert_allclose(
        mean_expected_entropy(y, dist) + mean_mutual_information(y, dist),
        mean_predictive_entropy(y, dist),
    )


def test_mean_log_loss_is_tempered():
    _, y, p, expected, _ = _random_mixture(seed=12)
    dist = CategoricalMixture(
        np.log(p), expected, classes=["x", "y", "z"], temperature=2.0
    )
    y_index = np.searchsorted(dist.classes, y)
    tempered = np.sqrt(p.mean(axis=0))
    tempered /= tempered.sum(axis=1, keepdims=True)
    loss = -np.log(tempered[np.arange(len(y)), y_index]).mean()
    assert_allclose(mean_log_loss(y, dist), loss, rtol=1e-12)


@pytest.mark.parametrize("metric", MIXTURE_METRICS)
def test_mixture_metrics_accept_a_column_of_labels(metric):
    dist, y, _, _, _ = _random_mixture(seed=13)
    assert metric(y[:, None], dist) == metric(y, dist)


@pytest.mark.parametrize("metric", MIXTURE_METRICS)
@pytest.mark.parametrize(
    "case, error, match",
    [
        ("short-y", ValueError, r"y_true of shape \(29,\) does not match dist"),
        ("wide-y", ValueError, r"expected shape \(30,\) or \(30, 1\)"),
        ("negative-weights", ValueError, "non-negative"),
        ("short-weights", ValueError, "sample_weight must have shape"),
        ("normal-mixture", TypeError, "got NormalMixture, the distribution of Multi"),
        ("not-a-mixture", TypeError, "dist must be a CategoricalMixture"),
    ],
)
def test_mixture_metric_validation(metric, case, error, match):
    dist, y, _, _, _ = _random_mixture(seed=14)
    kwargs = {}
    if case == "short-y":
        y = y[:29]
    elif case == "wide-y":
        y = np.stack([y, y], axis=1)
    elif case == "negative-weights":
        kwargs["sample_weight"] = -np.ones(30)
    elif case == "short-weights":
        kwargs["sample_weight"] = np.ones(29)
    elif case == "normal-mixture":
        dist = NormalMixture(np.zeros((2, 30, 1)), np.ones((2, 30, 1)))
    elif case == "not-a-mixture":
        dist = dist.proba()
    with pytest.raises(error, match=match):
        metric(y, dist, **kwargs)


def test_mean_log_loss_rejects_unknown_labels():
    dist, y, _, _, _ = _random_mixture(seed=15)
    y[3] = "w"
    with pytest.raises(ValueError, match="not fitted on"):
        mean_log_loss(y, dist)
    # The uncertainty metrics do not read the labels.
    mean_mutual_information(y, dist)


def test_regression_metrics_name_the_classifier_distribution():
    dist = _one_hot_mixture()
    with pytest.raises(TypeError, match="dist must be a NormalMixture") as info:
        mean_crps(np.zeros(2), dist)
    assert "MultiSWAGClassifier" in str(info.value)
    assert "mean_log_loss" in str(info.value)


# --------------------------------------------------------------------- scorers


class _TwoParticleClassifier(ClassifierMixin, BaseEstimator):
    """Two logistic regressions as the particles of a CategoricalMixture.

    Each particle stands for one sure posterior draw, so the expected entropy
    is the mean of the particles' entropies.
    """

    def __init__(self, C=1.0):
        self.C = C

    def fit(self, X, y, sample_weight=None):
        self.particles_ = [
            LogisticRegression(C=C).fit(X, y, sample_weight=sample_weight)
            for C in (self.C, self.C / 100)
        ]
        self.classes_ = self.particles_[0].classes_
        return self

    def _particle_proba(self, X):
        check_is_fitted(self)
        return np.stack([particle.predict_proba(X) for particle in self.particles_])

    def predict_dist(self, X):
        p = self._particle_proba(X)
        return CategoricalMixture(np.log(p), _entropy(p), classes=self.classes_)

    def predict_proba(self, X):
        return self.predict_dist(X).proba()

    def predict(self, X):
        return self.predict_dist(X).predict()


def _classification_data(n_classes, strings=False, n_samples=150, seed=0):
    X, y = make_classification(
        n_samples=n_samples,
        n_features=5,
        n_informative=3,
        n_redundant=0,
        n_classes=n_classes,
        flip_y=0.1,
        random_state=seed,
    )
    if strings:
        y = np.array(["ant", "bee", "cow", "doe"])[y]
    return X, y


def _direct_scores(estimator, X, y, n_bins, sample_weight=None):
    """The scores of classification_scorers, computed by hand."""
    proba = estimator.predict_proba(X)
    y_index = np.searchsorted(estimator.classes_, y)
    if hasattr(estimator, "predict_dist"):
        p = estimator._particle_proba(X)
    else:
        p = estimator[-1]._particle_proba(estimator[:-1].transform(X))
    total = _entropy(p.mean(axis=0))
    aleatoric = np.minimum(_entropy(p).mean(axis=0), total)
    w = sample_weight
    return {
        "neg_log_loss": -log_loss(y, proba, labels=estimator.classes_, sample_weight=w),
        "neg_brier": -_brier_numpy(y_index, proba, w),
        f"neg_ece_{n_bins}": -_ece_loop(y_index, proba, n_bins, w),
        "mutual_information": np.average(total - aleatoric, weights=w),
        "entropy": np.average(total, weights=w),
    }


@pytest.mark.parametrize("n_classes, strings", [(2, False), (2, True), (3, True)])
def test_neg_ece_scorer_matches_direct_computation(n_classes, strings):
    X, y = _classification_data(n_classes, strings)
    for model in (
        LogisticRegression(),
        make_pipeline(StandardScaler(), LogisticRegression(C=0.1)),
    ):
        model.fit(X, y)
        proba = model.predict_proba(X)
        y_index = np.searchsorted(model.classes_, y)
        expected = expected_calibration_error(y, proba, labels=model.classes_)
        assert expected > 0
        assert_allclose(expected, _ece_loop(y_index, proba, 15), rtol=1e-12)
        assert_allclose(neg_ece_scorer(model, X, y), -expected, rtol=1e-12)
        weights = np.linspace(0.5, 2.0, len(y))
        assert_allclose(
            neg_ece_scorer(model, X, y, sample_weight=weights),
            -_ece_loop(y_index, proba, 15, weights),
            rtol=1e-12,
        )


@pytest.mark.parametrize("n_classes, strings", [(2, True), (3, False)])
def test_neg_ece_scorer_in_cross_validate(n_classes, strings):
    X, y = _classification_data(n_classes, strings)
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    results = cross_validate(
        pipe,
        X,
        y,
        cv=StratifiedKFold(3),
        scoring={"ece": neg_ece_scorer, "accuracy": "accuracy"},
        return_estimator=True,
        return_indices=True,
        error_score="raise",
    )
    for model, test, score in zip(
        results["estimator"],
        results["indices"]["test"],
        results["test_ece"],
        strict=True,
    ):
        proba = model.predict_proba(X[test])
        y_index = np.searchsorted(model.classes_, y[test])
        assert_allclose(score, -_ece_loop(y_index, proba, 15), rtol=1e-12)


@pytest.mark.parametrize("n_classes, strings", [(2, True), (3, False), (4, True)])
def test_classification_scorers_in_cross_validate(n_classes, strings):
    X, y = _classification_data(n_classes, strings, n_samples=200)
    pipe = make_pipeline(StandardScaler(), _TwoParticleClassifier())
    scorers = classification_scorers(n_bins=10)
    results = cross_validate(
        pipe,
        X,
        y,
        cv=StratifiedKFold(3),
        scoring=scorers,
        return_estimator=True,
        return_indices=True,
        error_score="raise",
    )
    for fold, (model, test) in enumerate(
        zip(results["estimator"], results["indices"]["test"], strict=True)
    ):
        direct = _direct_scores(model, X[test], y[test], n_bins=10)
        for name, value in direct.items():
            assert_allclose(
                results[f"test_{name}"][fold], value, rtol=1e-10, err_msg=name
            )
    assert np.all(results["test_mutual_information"] > 0)
    assert np.all(results["test_entropy"] > results["test_mutual_information"])


def test_classification_scorers_pass_sample_weights():
    X, y = _classification_data(3, strings=True)
    clf = _TwoParticleClassifier().fit(X, y)
    weights = np.random.RandomState(16).uniform(0.0, 2.0, size=len(y))
    scorers = classification_scorers(n_bins=5)
    # The dict form, as scikit-learn's multi-metric scorer calls it.
    scores = check_scoring(clf, scoring=scorers)(clf, X, y, sample_weight=weights)
    direct = _direct_scores(clf, X, y, n_bins=5, sample_weight=weights)
    unweighted = _direct_scores(clf, X, y, n_bins=5)
    assert sorted(scores) == sorted(direct)
    for name, scorer in scorers.items():
        assert_allclose(scores[name], direct[name], rtol=1e-10, err_msg=name)
        assert_allclose(
            scorer(clf, X, y, sample_weight=weights), direct[name], rtol=1e-10
        )
        assert_allclose(scorer(clf, X, y), unweighted[name], rtol=1e-10)
        assert not np.isclose(direct[name], unweighted[name]), name


def test_classification_scorers_keys_and_pickling():
    scorers = classification_scorers()
    assert sorted(scorers) == [
        "entropy",
        "mutual_information",
        "neg_brier",
        "neg_ece_15",
        "neg_log_loss",
    ]
    X, y = _classification_data(3)
    clf = _TwoParticleClassifier().fit(X, y)
    restored = pickle.loads(pickle.dumps(scorers))
    for name, scorer in scorers.items():
        assert restored[name](clf, X, y) == scorer(clf, X, y), name
    assert repr(scorers["mutual_information"]) == (
        "make_dist_scorer(mean_mutual_information)"
    )
    assert "n_bins=15" in repr(scorers["neg_ece_15"])


@pytest.mark.parametrize("n_bins, error", [(0, ValueError), (2.5, TypeError)])
def test_classification_scorers_check_n_bins(n_bins, error):
    with pytest.raises(error, match="n_bins"):
        classification_scorers(n_bins)


def test_dist_scorers_score_the_classifier_distribution():
    X, y = _classification_data(3, strings=True)
    pipe = make_pipeline(StandardScaler(), _TwoParticleClassifier()).fit(X, y)
    dist = pipe[-1].predict_dist(pipe[0].transform(X))
    scorer = make_dist_scorer(mean_log_loss, greater_is_better=False)
    assert_allclose(scorer(pipe, X, y), -mean_log_loss(y, dist), rtol=1e-12)
    assert_allclose(scorer(pipe, X, y), -log_loss(y, pipe.predict_proba(X)), rtol=1e-10)
    # A regression scorer names what went wrong.
    with pytest.raises(TypeError, match="got CategoricalMixture"):
        neg_nll_scorer(pipe, X, y)


def test_dist_scorers_name_both_estimators_without_predict_dist():
    X, y = _classification_data(2)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    match = "last step of this Pipeline, LogisticRegression, has no predict_dist"
    with pytest.raises(TypeError, match=match) as info:
        classification_scorers()["entropy"](pipe, X, y)
    assert "MultiSWAGClassifier" in str(info.value)
    assert "MultiSWAGRegressor" in str(info.value)
    linear = LinearRegression().fit(X, y)
    with pytest.raises(TypeError, match="^LinearRegression has no predict_dist"):
        classification_scorers()["mutual_information"](linear, X, y)
