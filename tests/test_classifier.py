"""MultiSWAGClassifier: the probabilities it promises, the workflows users need."""

import pickle
from unittest import mock

import numpy as np
import pytest
import torch
from conftest import FAST, FAST_USER_NET
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import softmax
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_blobs
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from sklearn_swag import (
    CategoricalMixture,
    MultiSWAGClassifier,
    classification_scorers,
)
from sklearn_swag._posterior.draws import class_probabilities
from sklearn_swag._rows import _validation_split


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=90, centers=3, cluster_std=1.0, random_state=0)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def fitted(blobs):
    X, y = blobs
    return MultiSWAGClassifier(**FAST).fit(X, y)


def _draw_logits(clf, X):
    """Logits of every particle's draws, (n_models, n_samples, n_rows, n_classes)."""
    X = clf._validated(X)
    # A reducer keeps the rows second: (particle, row, draw, class) here.
    (logits,) = clf._particle_outputs(
        X, lambda out: (out.to(torch.float64).transpose(1, 2),)
    )
    return logits.transpose(0, 2, 1, 3)


# -- the probabilities -------------------------------------------------------------
def test_proba_is_the_mean_softmax_over_every_particle_and_draw(fitted, blobs):
    X, _ = blobs
    logits = _draw_logits(fitted, X[:20])
    assert logits.shape == (3, FAST["n_samples"], 20, 3)
    expected = softmax(logits, axis=-1).mean(axis=(0, 1))
    proba = fitted.predict_proba(X[:20])
    assert proba.dtype == np.float64
    assert_allclose(proba, expected, rtol=1e-6, atol=1e-9)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # Not the softmax of the mean logits, which is what averaging logits gives.
    assert not np.allclose(proba, softmax(logits.mean(axis=(0, 1)), axis=-1))
    assert_array_equal(fitted.predict(X[:20]), fitted.classes_[proba.argmax(1)])
    assert_allclose(fitted.predict_log_proba(X[:20]), np.log(proba), rtol=1e-9)


def test_uncertainty_split_matches_numpy(fitted, blobs):
    X, _ = blobs
    logits = _draw_logits(fitted, X[:15])
    p = softmax(logits, axis=-1)
    mean = p.mean(axis=(0, 1))
    total = -(mean * np.log(mean)).sum(-1)
    expected = -(p * np.log(p)).sum(-1).mean(axis=(0, 1))
    dist = fitted.predict_dist(X[:15])
    assert isinstance(dist, CategoricalMixture)
    assert_allclose(dist.entropy(), total, rtol=1e-6, atol=1e-10)
    assert_allclose(dist.expected_entropy(), expected, rtol=1e-6, atol=1e-10)
    assert_allclose(dist.mutual_information(), total - expected, atol=1e-8)
    assert np.all(dist.mutual_information() >= 0)
    assert_allclose(dist.particle_proba, p.mean(axis=1), rtol=1e-6, atol=1e-10)


def test_class_probabilities_are_stable_where_softmax_underflows():
    # Two draws: one sure of class 0, one of class 1 by 2000 nats.
    out = torch.tensor([[[[0.0, -2000.0]], [[-2000.0, 0.0]]]], dtype=torch.float32)
    log_proba, entropy = class_probabilities(out)
    assert_allclose(log_proba.numpy()[0, 0], [np.log(0.5), np.log(0.5)], rtol=1e-12)
    assert_allclose(entropy.numpy(), [[0.0]], atol=1e-12)
    # One draw whose class-1 probability underflows: a finite log-probability.
    out = torch.tensor([[[[0.0, -2000.0]]]])
    log_proba, _ = class_probabilities(out)
    assert_allclose(log_proba.numpy()[0, 0], [0.0, -2000.0], rtol=1e-9)
    dist = CategoricalMixture(log_proba.numpy(), np.zeros((1, 1)))
    assert np.isfinite(dist.log_proba()).all()
    assert dist.proba()[0, 1] == 0.0


def test_class_probabilities_match_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3, size=(2, 7, 5, 4))
    log_proba, entropy = class_probabilities(torch.as_tensor(logits))
    p = softmax(logits, axis=-1)
    assert_allclose(np.exp(log_proba.numpy()), p.mean(axis=1), rtol=1e-12)
    assert_allclose(entropy.numpy(), -(p * np.log(p)).sum(-1).mean(axis=1))


def test_binary_problem_gives_two_columns_and_sample_proba(blobs):
    X, y = blobs
    labels = np.where(y == 0, "spam", "ham")
    clf = MultiSWAGClassifier(**FAST).fit(X, labels)
    assert_array_equal(clf.classes_, ["ham", "spam"])
    proba = clf.predict_proba(X[:4])
    assert proba.shape == (4, 2)
    assert set(clf.predict(X)) <= {"ham", "spam"}
    assert clf.score(X, labels) > 0.85
    draws = clf.sample_proba(X[:4], n_samples=6)
    assert draws.shape == (4, 2, 6)
    assert_allclose(draws.sum(axis=1), 1.0, atol=1e-6)
    assert_allclose(draws, clf.sample_proba(X[:4], n_samples=6))


@pytest.mark.parametrize(
    "labels",
    [
        lambda y: y + 3,
        lambda y: np.array([3, 7, 9])[y],
        lambda y: np.array(["a", "b", "c"], dtype=object)[y],
        lambda y: y.astype(np.float64),
    ],
    ids=["shifted", "sparse", "object", "float"],
)
def test_any_label_type(blobs, labels):
    X, y = blobs
    target = labels(y)
    clf = MultiSWAGClassifier(**FAST).fit(X, target)
    assert_array_equal(clf.classes_, np.unique(target))
    assert clf.predict(X).dtype == np.asarray(target).dtype
    assert clf.score(X, target) > 0.85


def test_bad_targets_are_clear_errors(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="at least two classes"):
        MultiSWAGClassifier(**FAST).fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="Unknown label type"):
        MultiSWAGClassifier(**FAST).fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(ValueError, match="two classes with positive weight"):
        MultiSWAGClassifier(**FAST).fit(X, y, sample_weight=(y == 1).astype(float))


def test_network_must_return_a_logit_per_class(blobs):
    X, y = blobs
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    clf = MultiSWAGClassifier(net, n_models=2, pretrain_epochs=2, swag_epochs=2)
    with pytest.raises(
        ValueError, match=r"one logit per class, shape \(n_samples, 3\)"
    ):
        clf.fit(X, y)
    assert not hasattr(clf, "classes_")


# -- weights -----------------------------------------------------------------------
def test_class_weight_shifts_predictions_and_equals_sample_weight(blobs):
    X, y = blobs
    params = {**FAST, "n_models": 2}
    plain = MultiSWAGClassifier(**params).fit(X, y)
    heavy = MultiSWAGClassifier(**params, class_weight={0: 20.0, 1: 1, 2: 1}).fit(X, y)
    assert (
        heavy.predict_proba(X)[:, 0].mean() > plain.predict_proba(X)[:, 0].mean() + 0.02
    )
    weights = np.where(y == 0, 20.0, 1.0)
    same = MultiSWAGClassifier(**params).fit(X, y, sample_weight=weights)
    assert_allclose(same.predict_proba(X), heavy.predict_proba(X), rtol=1e-5)
    balanced = MultiSWAGClassifier(**params, class_weight="balanced")
    assert balanced.fit(X[:70], y[:70]).score(X, y) > 0.85
    with pytest.raises(ValueError, match="not in y"):
        MultiSWAGClassifier(**params, class_weight={5: 1.0}).fit(X, y)


def test_user_criterion_without_elementwise_values(blobs):
    # CrossEntropyLoss with class weights gets class indices as a long tensor.
    X, y = blobs
    clf = MultiSWAGClassifier(
        **FAST, criterion=nn.CrossEntropyLoss, criterion__weight=torch.ones(3)
    ).fit(X, y)
    assert clf.score(X, y) > 0.85


def test_batchnorm_network(blobs):
    X, y = blobs
    net = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    clf = MultiSWAGClassifier(net, **FAST_USER_NET).fit(X, y)
    assert clf.bn_update_X_ is not None
    assert clf.score(X, y) > 0.85


# -- the held-out rows --------------------------------------------------------------
def test_held_out_rows_are_stratified_by_class():
    """Each class holds out about validation_fraction of its rows, even a small one."""
    X, y = make_blobs(n_samples=[60, 25, 6], centers=None, random_state=0)
    splits = []

    def recording(*args, **kwargs):
        splits.append((args, kwargs, _validation_split(*args, **kwargs)))
        return splits[-1][-1]

    with mock.patch("sklearn_swag._base._validation_split", side_effect=recording):
        clf = MultiSWAGClassifier(**FAST, validation_fraction=0.2).fit(X, y)
    ((args, kwargs, (train, held)),) = splits
    labels = kwargs["classes"].astype(int)
    assert_array_equal(np.bincount(labels[held]), [12, 5, 1])
    assert clf.n_train_samples_ == len(train) == 91 - 18


def test_validation_fraction_that_cannot_stratify_is_an_error():
    X = np.repeat(np.eye(3), 5, axis=0)  # one distinct row per class
    y = np.repeat(["a", "b", "c"], 5)
    with pytest.raises(ValueError, match="no class has two distinct rows"):
        MultiSWAGClassifier(**FAST).fit(X, y)
    clf = MultiSWAGClassifier(**FAST, validation_fraction=0.0).fit(X, y)
    assert clf.n_train_samples_ == 3  # the copies merged into weighted rows


# -- temperature -------------------------------------------------------------------
def test_temperature_scaling_changes_proba_not_predictions(blobs):
    X, y = blobs
    plain = MultiSWAGClassifier(**FAST, validation_fraction=0.3).fit(X, y)
    tempered = clone(plain).set_params(temperature_scaling=True).fit(X, y)
    assert plain.temperature_ == 1.0
    assert tempered.temperature_ != 1.0
    assert_array_equal(plain.predict(X), tempered.predict(X))
    expected = softmax(np.log(plain.predict_proba(X)) / tempered.temperature_, axis=1)
    assert_allclose(tempered.predict_proba(X), expected, rtol=1e-8)
    # Prediction reads the fitted state: set_params after fit changes nothing.
    before = tempered.predict_proba(X)
    tempered.set_params(temperature_scaling=False, n_samples=1, scale=0.0)
    assert_allclose(tempered.predict_proba(X), before)


# -- workflows ---------------------------------------------------------------------
def test_pipeline_cross_validate_and_scorers(blobs):
    X, y = blobs
    model = make_pipeline(StandardScaler(), MultiSWAGClassifier(**FAST))
    result = cross_validate(model, X, y, cv=3, scoring=classification_scorers())
    for key in ("neg_log_loss", "neg_brier", "neg_ece_15", "mutual_information"):
        assert np.isfinite(result[f"test_{key}"]).all()
    assert (result["test_neg_log_loss"] < 0).all()
    assert (result["test_mutual_information"] >= 0).all()


def test_grid_search_over_rank_and_particles_by_log_loss(blobs):
    X, y = blobs
    search = GridSearchCV(
        MultiSWAGClassifier(**FAST),
        {"rank": [2, 4], "n_models": [1, 2]},
        scoring="neg_log_loss",
        cv=2,
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_estimator_.swag_mean_.shape[0] == search.best_params_["n_models"]


def test_calibrated_classifier_cv_calibrates_predict_proba(blobs):
    X, y = blobs
    calibrated = CalibratedClassifierCV(
        MultiSWAGClassifier(**FAST), method="sigmoid", cv=2
    ).fit(X, y)
    proba = calibrated.predict_proba(X)
    assert proba.shape == (len(X), 3)
    assert_allclose(proba.sum(axis=1), 1.0)
    assert calibrated.score(X, y) > 0.85


def test_mapie_conformal_prediction_sets(blobs):
    mapie = pytest.importorskip("mapie.classification")
    X, y = blobs
    X = X.astype(np.float64)  # MAPIE hands the estimator float64 inputs
    clf = MultiSWAGClassifier(**FAST).fit(X[::2], y[::2])
    conformal = mapie.SplitConformalClassifier(
        estimator=clf, confidence_level=0.9, prefit=True
    )
    conformal.conformalize(X[1::2], y[1::2])
    predicted, sets = conformal.predict_set(X[1::2])
    assert_array_equal(predicted, clf.predict(X[1::2]))
    assert sets.shape == (len(X[1::2]), 3, 1)
    covered = sets[np.arange(len(sets)), y[1::2], 0]
    assert covered.mean() >= 0.85


def test_pickle_round_trip(fitted, blobs):
    X, _ = blobs
    loaded = pickle.loads(pickle.dumps(fitted))
    assert_allclose(loaded.predict_proba(X), fitted.predict_proba(X))
    assert_array_equal(loaded.classes_, fitted.classes_)


def test_warm_start_adds_particles_and_checks_the_classes(blobs):
    X, y = blobs
    clf = MultiSWAGClassifier(**{**FAST, "n_models": 1}, warm_start=True).fit(X, y)
    clf.set_params(n_models=2).fit(X, y)
    assert clf.swag_mean_.shape[0] == 2
    with pytest.raises(ValueError, match="classes"):
        clf.set_params(n_models=3).fit(X, y + 1)
    assert clf.swag_mean_.shape[0] == 2


def test_from_skorch_takes_a_logit_net_and_refuses_a_probability_net(blobs):
    from skorch import NeuralNetBinaryClassifier, NeuralNetClassifier

    from sklearn_swag import MLP

    X, y = blobs
    net = NeuralNetClassifier(
        MLP,
        module__n_features=2,
        module__n_outputs=3,
        criterion=nn.CrossEntropyLoss,
        lr=0.03,
        max_epochs=30,
        batch_size=32,
    )
    clf = MultiSWAGClassifier.from_skorch(net, n_models=2, swag_epochs=5, rank=2)
    assert clf.fit(X, y).score(X, y) > 0.85
    with pytest.raises(ValueError, match="NLLLoss"):
        MultiSWAGClassifier.from_skorch(NeuralNetClassifier(MLP))
    with pytest.raises(ValueError, match="one logit"):
        MultiSWAGClassifier.from_skorch(NeuralNetBinaryClassifier(MLP))


def test_builtin_network_is_glorot_initialised_unless_routed():
    # One SWAG epoch at a negligible rate: the weights are the initial ones.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 64)).astype(np.float32)
    y = np.arange(40) % 3
    params = dict(n_models=1, pretrain_epochs=0, swag_epochs=1, lr=1e-9, swa_lr=None)
    glorot = MultiSWAGClassifier(**params).fit(X, y)
    default = MultiSWAGClassifier(**params, module__init="default").fit(X, y)
    # torch: every weight within 1/sqrt(64); Glorot: up to sqrt(6/128) and more.
    assert np.abs(default.swag_mean_).max() <= 1 / 8 + 1e-6
    assert np.abs(glorot.swag_mean_).max() > 0.2


def test_prediction_in_blocks_of_rows_is_the_same(monkeypatch, fitted, blobs):
    # float32 products of other shapes may round differently in the last bit.
    X, _ = blobs
    proba, log_proba = fitted.predict_proba(X), fitted.predict_log_proba(X)
    labels, dist = fitted.predict(X), fitted.predict_dist(X)
    monkeypatch.setattr("sklearn_swag._base._PREDICT_FLOATS", 3 * 3 * 4)  # 4 rows
    monkeypatch.setattr("sklearn_swag._posterior.draws._OUTPUT_FLOATS", 11)
    assert_allclose(fitted.predict_proba(X), proba, rtol=1e-5, atol=1e-9)
    assert_allclose(fitted.predict_log_proba(X), log_proba, rtol=1e-5, atol=1e-9)
    assert_array_equal(fitted.predict(X), labels)
    assert_allclose(
        fitted.predict_dist(X).particle_proba, dist.particle_proba, rtol=1e-5, atol=1e-9
    )


def test_inputs_that_overflow_the_network_are_named_as_the_cause(fitted):
    # Every corner of a cube of side 6e38: the first layer overflows to
    # +-inf, and the logits become inf - inf = NaN.
    corners = np.array(np.meshgrid(*[[-3e38, 3e38]] * 2)).reshape(2, -1).T
    with pytest.raises(ValueError, match="outputs overflowed.*Scale the inputs"):
        fitted.predict_proba(corners.astype(np.float32))


def test_from_skorch_keeps_the_weight_decay_of_the_nets_adam():
    """A net's Adam without weight decay trains without it, not with the default."""
    from skorch import NeuralNetClassifier

    from sklearn_swag import MLP

    adam = dict(module__n_features=2, module__n_outputs=3, optimizer=torch.optim.Adam)
    net = NeuralNetClassifier(MLP, criterion=nn.CrossEntropyLoss, **adam)
    assert MultiSWAGClassifier.from_skorch(net).optimizer__weight_decay == 0.0
    net.set_params(optimizer__weight_decay=0.01)
    assert MultiSWAGClassifier.from_skorch(net).optimizer__weight_decay == 0.01
    clf = MultiSWAGClassifier.from_skorch(net, optimizer__weight_decay=0.1)
    assert clf.optimizer__weight_decay == 0.1


# -- the optimizer ------------------------------------------------------------------
def test_adam_decays_weights_by_default(blobs):
    """Adam's weight decay is 1.5e-3 unless optimizer__weight_decay says otherwise."""
    X, y = blobs
    default = MultiSWAGClassifier(**FAST).fit(X, y)
    explicit = MultiSWAGClassifier(**FAST, optimizer__weight_decay=1.5e-3).fit(X, y)
    plain = MultiSWAGClassifier(**FAST, optimizer__weight_decay=0.0).fit(X, y)
    assert_array_equal(default.swag_mean_, explicit.swag_mean_)
    assert not np.allclose(default.swag_mean_, plain.swag_mean_)
    assert "optimizer__weight_decay" not in default.get_params()
    # Another optimizer takes its own options only.
    with mock.patch("torch.optim.SGD", wraps=torch.optim.SGD) as made:
        MultiSWAGClassifier(**FAST, optimizer=torch.optim.SGD).fit(X, y)
    assert made.called
    assert all("weight_decay" not in call.kwargs for call in made.call_args_list)
