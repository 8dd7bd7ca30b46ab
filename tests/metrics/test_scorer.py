"""Tests of the scorer machinery: shared predictions, metadata, old pickles."""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import check_scoring
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_swag import (
    CategoricalMixture,
    NormalMixture,
    classification_scorers,
    dist_scorers,
    interval_coverage,
    mean_crps,
    neg_crps_scorer,
    neg_nll_scorer,
)
from sklearn_swag._sklearn_compat import _REGRESSOR_RESPONSE_ANY_METHOD
from sklearn_swag.metrics._scorer import _DistScorer

#: A regressor's predictions are shared by the scorers from scikit-learn 1.9.
needs_shared_regressor_response = pytest.mark.skipif(
    not _REGRESSOR_RESPONSE_ANY_METHOD,
    reason="scikit-learn < 1.9 predicts a regressor only through predict",
)


class _CountingRegressor(RegressorMixin, BaseEstimator):
    """A Gaussian of fixed width around a least-squares line; counts predictions."""

    n_predict_dist = 0

    def fit(self, X, y):
        design = np.column_stack([np.ones(len(X)), X])
        self.coef_ = np.linalg.lstsq(design, y, rcond=None)[0]
        return self

    def predict(self, X):
        return np.column_stack([np.ones(len(X)), X]) @ self.coef_

    def predict_dist(self, X):
        type(self).n_predict_dist += 1
        mean = self.predict(X)
        return NormalMixture(mean[None, :, None], np.full((1, len(X), 1), 0.5), 0.1)


class _CountingClassifier(ClassifierMixin, BaseEstimator):
    """Two particles of nearest-centroid softmax probabilities; counts predictions."""

    n_predict_dist = 0

    def fit(self, X, y):
        self.classes_, index = np.unique(y, return_inverse=True)
        self.centroids_ = np.stack(
            [X[index == k].mean(axis=0) for k in range(len(self.classes_))]
        )
        return self

    def _logits(self, X):
        return -((X[:, None, :] - self.centroids_[None]) ** 2).sum(axis=-1)

    def predict_dist(self, X):
        type(self).n_predict_dist += 1
        logits = self._logits(X)
        log_p = np.stack([logits, logits / 2])
        log_p -= np.log(np.exp(log_p).sum(axis=-1, keepdims=True))
        return CategoricalMixture(
            log_p, np.zeros(log_p.shape[:2]), classes=self.classes_
        )

    def predict_proba(self, X):
        return softmax(self._logits(X), axis=1)

    def predict(self, X):
        return self.classes_[self._logits(X).argmax(axis=1)]


def _regression_data(n=60, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.7, size=n)
    return X, y


@needs_shared_regressor_response
@pytest.mark.parametrize("in_pipeline", [False, True])
def test_dist_scorers_share_one_prediction_per_split(in_pipeline):
    X, y = _regression_data()
    model = _CountingRegressor()
    if in_pipeline:
        model = make_pipeline(StandardScaler(), model)
    _CountingRegressor.n_predict_dist = 0
    results = cross_validate(
        model,
        X,
        y,
        cv=KFold(3),
        scoring=dist_scorers(),
        return_train_score=True,
        return_estimator=True,
        return_indices=True,
    )
    # One predict_dist per fold for the test part and one for the train part.
    assert _CountingRegressor.n_predict_dist == 3 * 2
    # The shared prediction gives each scorer's own score.
    for fold, (fitted, test) in enumerate(
        zip(results["estimator"], results["indices"]["test"], strict=True)
    ):
        for name, scorer in dist_scorers().items():
            assert results[f"test_{name}"][fold] == scorer(fitted, X[test], y[test])


@needs_shared_regressor_response
def test_shared_prediction_with_sample_weight():
    X, y = _regression_data(seed=1)
    reg = _CountingRegressor().fit(X, y)
    weights = np.random.RandomState(2).uniform(0.0, 2.0, size=len(y))
    multi = check_scoring(reg, scoring=dist_scorers(0.9))
    _CountingRegressor.n_predict_dist = 0
    scores = multi(reg, X, y, sample_weight=weights)
    assert _CountingRegressor.n_predict_dist == 1
    for name, scorer in dist_scorers(0.9).items():
        assert scores[name] == scorer(reg, X, y, sample_weight=weights), name
    assert scores["neg_crps"] == -mean_crps(
        y, reg.predict_dist(X), sample_weight=weights
    )


def test_dist_scorers_beside_scikit_learn_scorers():
    # The responses are cached by method name: predict_dist and predict differ.
    X, y = _regression_data(seed=3)
    pipe = make_pipeline(StandardScaler(), _CountingRegressor())
    scoring = {**dist_scorers(), "r2": "r2", "neg_mse": "neg_mean_squared_error"}
    results = cross_validate(
        pipe, X, y, cv=KFold(2), scoring=scoring, return_estimator=True
    )
    for fold, (_, test) in enumerate(KFold(2).split(X)):
        fitted = results["estimator"][fold]
        assert_allclose(results["test_r2"][fold], fitted.score(X[test], y[test]))
        assert results["test_neg_nll"][fold] == neg_nll_scorer(fitted, X[test], y[test])


def test_classification_scorers_share_one_prediction_per_split():
    rng = np.random.RandomState(4)
    X = np.concatenate([rng.normal(loc=k, size=(30, 2)) for k in range(3)])
    y = np.repeat(["a", "b", "c"], 30)
    pipe = make_pipeline(StandardScaler(), _CountingClassifier())
    _CountingClassifier.n_predict_dist = 0
    results = cross_validate(
        pipe, X, y, cv=StratifiedKFold(3), scoring=classification_scorers()
    )
    # The two scorers of predict_dist, mutual_information and entropy.
    assert _CountingClassifier.n_predict_dist == 3
    assert np.all(results["test_mutual_information"] > 0)


def test_a_scorer_on_its_own_predicts_once():
    X, y = _regression_data(seed=5)
    reg = _CountingRegressor().fit(X, y)
    _CountingRegressor.n_predict_dist = 0
    score = neg_crps_scorer(reg, X, y)
    assert _CountingRegressor.n_predict_dist == 1
    assert score == -mean_crps(y, reg.predict_dist(X))
    # sample_weight may be passed by position, as the signature documents.
    weights = np.linspace(0.5, 1.5, len(y))
    assert neg_crps_scorer(reg, X, y, weights) == neg_crps_scorer(
        reg, X, y, sample_weight=weights
    )


def test_a_scorer_pickled_before_it_was_a_scikit_learn_scorer_loads():
    # Before, the scorer's class lived in sklearn_swag._scoring and held its
    # metric as _metric; a protocol-0 pickle names both in plain text.
    scorer = dist_scorers(0.8)["coverage_80"]
    data = pickle.dumps(scorer, protocol=0)
    data = data.replace(b"sklearn_swag.metrics._scorer", b"sklearn_swag._scoring")
    old = data.replace(b"V_score_func\n", b"V_metric\n")
    assert old != data
    loaded = pickle.loads(old)
    assert type(loaded) is _DistScorer
    assert repr(loaded) == "make_dist_scorer(interval_coverage, confidence=0.8)"
    X, y = _regression_data(seed=6)
    reg = _CountingRegressor().fit(X, y)
    assert loaded(reg, X, y) == interval_coverage(y, reg.predict_dist(X), 0.8)


@pytest.mark.parametrize(
    "call",
    [
        lambda: dist_scorers(True),
        lambda: classification_scorers(True),
        lambda: interval_coverage(
            np.zeros(2), NormalMixture(np.zeros((1, 2, 1)), np.ones((1, 2, 1))), True
        ),
    ],
)
def test_parameters_reject_booleans(call):
    with pytest.raises(TypeError, match="'(confidence|n_bins)' parameter of"):
        call()


def test_the_metrics_module_exports_what_the_package_does():
    import sklearn_swag
    import sklearn_swag.metrics as metrics

    assert set(metrics.__all__) <= set(sklearn_swag.__all__)
    for name in metrics.__all__:
        assert getattr(metrics, name) is getattr(sklearn_swag, name), name
    assert {"dist_scorers", "mean_crps", "mean_log_loss"} <= set(metrics.__all__)
