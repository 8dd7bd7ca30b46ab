"""Fits that diverge without NaN are named in a warning."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from sklearn_swag import MultiSWAGClassifier, MultiSWAGRegressor
from sklearn_swag._posterior.diagnostics import (
    collapsed_noise,
    exploded_particles,
    misfit_particles,
    spiked_particles,
    target_variance,
    uninformed_particles,
    warn_misfits,
)


# -- the checks on arrays -----------------------------------------------------------
def test_exploded_particles_compare_the_last_finite_loss_to_the_start():
    start = np.array([1.0, 1.0, 2.0, 1.0])
    loss = np.array(
        [
            [0.9, 0.5, 0.2],  # learned
            [50.0, 20.0, 11.0],  # ended above 10x
            [30.0, 25.0, np.nan],  # its group stopped early: 25 is its last
            [0.5, 9.0, 9.9],  # high, but under 10x
        ]
    )
    assert exploded_particles(start, loss) == [1, 2]


def test_spiked_particles_look_at_every_epoch():
    start = np.array([1.0, 1.0, np.nan])
    loss = np.array([[11.0, 0.1], [9.0, 0.1], [1e9, 1e9]])
    assert spiked_particles(start, loss) == [0]


def test_uninformed_particles_against_numpy():
    rng = np.random.default_rng(0)
    y = np.array([0, 0, 0, 1, 2, 2])
    good = np.full((6, 3), 0.05)
    good[np.arange(6), y] = 0.9
    proba = np.stack([good, np.full((6, 3), 1 / 3), rng.dirichlet(np.ones(3), 6)])
    bad, log_loss, baseline = uninformed_particles(proba, y)
    expected = -np.log(proba[:, np.arange(6), y]).mean(axis=1)
    np.testing.assert_allclose(log_loss, expected)
    assert baseline == pytest.approx(
        -(3 * np.log(0.5) + np.log(1 / 6) + 2 * np.log(1 / 3)) / 6
    )
    assert bad == [i for i in range(3) if expected[i] >= baseline]
    assert 0 not in bad and 1 in bad


def test_misfit_particles_against_numpy():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(40, 2))
    means = np.stack([y + 0.1 * rng.normal(size=y.shape), y + 5.0, 0 * y])
    weights = rng.uniform(0.5, 2, size=40)
    centred = y - np.average(y, axis=0, weights=weights)
    variance = np.average(centred**2, axis=0, weights=weights)
    np.testing.assert_allclose(target_variance(y, weights), variance)
    bad, ratio = misfit_particles(means, y, variance, weights)
    errors = np.average((means - y) ** 2, axis=1, weights=weights)
    np.testing.assert_allclose(ratio, (errors / variance).mean(axis=1))
    assert bad == [1]  # predicting 0 scores about 1, an offset of 5 about 25


def test_collapsed_noise_needs_a_tiny_noise_and_disagreeing_particles():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(30, 1))
    agree = np.stack([y, y + 0.01, y - 0.01])
    far = np.stack([y, y, y + 10.0])
    variance = y.var(axis=0)
    assert not collapsed_noise(np.array([1e-12]), agree, variance)[0]
    assert not collapsed_noise(np.array([0.5]), far, variance)[0]
    collapsed, outlying, spread = collapsed_noise(np.array([1e-12]), far, variance)
    assert collapsed and spread > 1
    assert np.flatnonzero(outlying > 1).tolist() == [2]


# -- the estimators ------------------------------------------------------------------
def _regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    return X, X[:, 0] + 0.3 * rng.normal(size=300)


def test_regressor_names_particles_whose_loss_exploded():
    X, y = _regression()
    reg = MultiSWAGRegressor(
        lr=10, pretrain_epochs=30, swag_epochs=5, n_models=3, random_state=0,
        module__activation="relu",
    )  # fmt: skip
    with pytest.warns(
        ConvergenceWarning, match=r"Particle\(s\) \[0, 1, 2\] look diverged"
    ):
        reg.fit(X, y)
    # What the warning is about: predictions far beyond the targets.
    assert np.abs(reg.predict(X)).max() > 100 * np.abs(y).max()


def test_well_behaved_fits_do_not_warn(regression_data, fast_params):
    X, y = regression_data
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        MultiSWAGRegressor(**fast_params).fit(X, y)
        MultiSWAGRegressor(**{**fast_params, "validation_fraction": 0.0}).fit(X, y)
        X_digits, y_digits = load_digits(return_X_y=True)
        MultiSWAGClassifier(n_models=2, pretrain_epochs=5, random_state=0).fit(
            X_digits[:400] / 16, y_digits[:400]
        )


def test_misfit_particles_and_collapsed_noise_are_named():
    y_held = np.linspace(-1, 1, 20)[:, None]
    means = np.stack([y_held, y_held + 0.1, y_held + 30.0])
    tiny, variance = np.array([1e-12]), y_held.var(axis=0)
    args = (means, y_held, np.ones(20), tiny, variance, "held-out")
    with pytest.warns(ConvergenceWarning) as record:
        warn_misfits(*args)
    (message,) = [str(w.message) for w in record]
    assert message.startswith("Particle(s) [2] look diverged")
    assert "mean squared error of their predictions is" in message
    assert "noise variance fitted on the held-out rows collapsed to 1e-12" in message
    # Particles already named for an exploded loss are not named twice.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        warn_misfits(*args, known=[2])


def test_classifier_names_particles_that_blew_up_and_learned_nothing():
    X, y = load_digits(return_X_y=True)
    clf = MultiSWAGClassifier(lr=5, n_models=2, pretrain_epochs=5, random_state=0)
    with pytest.warns(
        ConvergenceWarning, match=r"no better than predicting the class frequencies"
    ):
        clf.fit(X[:500] / 16, y[:500])
