"""A seeded sweep of tiny fits over the training controls.

Every combination either fits, with finite predictions, or is refused with a
``ValueError`` or ``TypeError`` that names the parameter at fault. The sweep
draws the controls that interact in training (particles, epochs, early
stopping's patience and tolerance, batch size, rank, snapshots, learning
rates, held-out rows, noise, weights, warm starts, class weights and the
number of groups) from one seeded generator, so a failure is reproducible
from its case number.
"""

import re
import warnings

import joblib
import numpy as np
import pytest

from sklearn_swag import MultiSWAGClassifier, MultiSWAGRegressor
from sklearn_swag._training.callbacks import PretrainingMonitor

N_CASES = 300

#: Each control and the values the sweep draws from; the last of some lists
#: is out of range, so that refusals are part of the sweep.
CONTROLS = {
    "n_models": [1, 2, 3, 4],
    "pretrain_epochs": [0, 1, 2, 3, 5, 8, 12],
    "swag_epochs": [0, 1, 2, 3, 5],
    "n_iter_no_change": [1, 2, 3, 5],
    "tol": [0.0, 1e-3, 1e-2, 0.1, 1.0],
    "early_stopping": [True, False, "auto"],
    "batch_size": [None, 1, 7, 16, 128],
    "rank": [0, 1, 2, 3, 5],
    "swag_every": [0.5, 1.0, 2.0, 3.0],
    "swa_lr": [None, "auto", 0.01],
    "anneal_epochs": [0, 1, 3],
    "validation_fraction": [0.0, 0.1, 0.3],
    "n_jobs": [1, 1, 1, 2],
}
#: Values outside each parameter's range: one is drawn into some cases.
INVALID = {
    "n_models": 0,
    "pretrain_epochs": -1,
    "swag_epochs": -2,
    "n_iter_no_change": 0,
    "tol": -0.5,
    "batch_size": 0,
    "rank": -1,
    "swag_every": 0.0,
    "swa_lr": -0.01,
    "anneal_epochs": -1,
    "validation_fraction": 1.0,
    "lr": "fast",
    "early_stopping": "sometimes",
}


def _data(rng, classifier, n_rows):
    X = rng.uniform(-1, 1, size=(n_rows, 3)).astype(np.float32)
    if classifier:
        n_classes = int(rng.integers(2, 4))
        y = np.arange(n_rows) % n_classes  # every class present
        rng.shuffle(y)
        X[:, 0] += y
        return X, y
    y = (X[:, 0] - X[:, 1] ** 2 + 0.1 * rng.standard_normal(n_rows)).astype(np.float32)
    return X, y


def _case(index):
    rng = np.random.default_rng(index)
    classifier = bool(index % 2)
    params = {
        name: values[rng.integers(len(values))] for name, values in CONTROLS.items()
    }
    params.update(n_samples=2, module__hidden_layer_sizes=(4,), random_state=index)
    if classifier:
        params["class_weight"] = [None, "balanced"][rng.integers(2)]
    else:
        params["noise"] = ["homoscedastic", "heteroscedastic"][rng.integers(2)]
    invalid = None
    if rng.random() < 0.12:
        invalid = sorted(INVALID)[rng.integers(len(INVALID))]
        params[invalid] = INVALID[invalid]
    n_rows = int(rng.integers(12, 40))
    X, y = _data(rng, classifier, n_rows)
    weights = None
    if rng.random() < 0.3:
        weights = rng.integers(1, 4, size=n_rows).astype(np.float64)
    warm = rng.random() < 0.2
    always_drop = rng.random() < 0.5
    return classifier, params, invalid, X, y, weights, warm, always_drop


def _names_parameter(exc, params):
    message = str(exc)
    return any(re.search(rf"\b{re.escape(name)}\b", message) for name in params)


@pytest.mark.parametrize("index", range(N_CASES))
def test_training_controls_fit_or_refuse_clearly(index, monkeypatch):
    classifier, params, invalid, X, y, weights, warm, always_drop = _case(index)
    if always_drop:
        # Early stopping leaves stopped particles out however fast an epoch
        # is (by default only where that saves measurable time).
        monkeypatch.setattr(PretrainingMonitor, "DROP_SECONDS", -1.0)
    cls = MultiSWAGClassifier if classifier else MultiSWAGRegressor
    est = cls(**params)
    try:
        with warnings.catch_warnings(), joblib.parallel_backend("threading"):
            warnings.simplefilter("ignore")  # divergence and tiny-data warnings
            est.fit(X, y, sample_weight=weights)
            if warm:
                est.set_params(warm_start=True, n_models=params["n_models"] + 1)
                est.fit(X, y, sample_weight=weights)
    except (ValueError, TypeError) as exc:
        assert _names_parameter(exc, params), (
            f"case {index}: {type(exc).__name__} names no parameter: {exc}"
        )
        return
    assert invalid is None, f"case {index}: {invalid}={params[invalid]} was accepted"
    # Every particle has a posterior: snapshots where SWAG epochs ran, and
    # weights that are not the zeros of an empty average.
    assert (np.abs(est.swag_mean_).sum(axis=1) > 0).all(), f"case {index}"
    if params["swag_epochs"]:
        assert (est.n_snapshots_ > 0).all(), f"case {index}"
    if classifier:
        proba = est.predict_proba(X)
        assert np.isfinite(proba).all(), f"case {index}"
        assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    else:
        mean, std = est.predict(X, return_std=True)
        assert np.isfinite(mean).all() and np.isfinite(std).all(), f"case {index}"
        assert (std > 0).all(), f"case {index}"
