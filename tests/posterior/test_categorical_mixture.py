"""Tests of the classifier's predictive distribution, against numpy."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from scipy.special import log_softmax, softmax

from sklearn_swag._posterior.categorical_mixture import (
    CategoricalMixture,
    fit_temperature,
)
from sklearn_swag._posterior.draws import class_probabilities


def _entropy(p):
    """Entropy in nats with the convention 0 log 0 = 0."""
    safe = np.where(p > 0, p, 1.0)
    return -np.sum(p * np.log(safe), axis=-1)


def test_a_probability_of_exactly_zero_gives_finite_entropies():
    # Two particles, two points, three classes; class 2 has probability 0 in
    # every particle at point 0, and particle 0 rules out class 1 at point 1.
    p = np.array(
        [
            [[0.6, 0.4, 0.0], [0.5, 0.0, 0.5]],
            [[0.2, 0.8, 0.0], [0.1, 0.3, 0.6]],
        ]
    )
    particle_expected = 0.9 * _entropy(p)
    with np.errstate(divide="ignore"):
        dist = CategoricalMixture(np.log(p), particle_expected)
    total = _entropy(p.mean(axis=0))
    expected = particle_expected.mean(axis=0)
    for value in [
        dist.entropy(),
        dist.expected_entropy(),
        dist.mutual_information(),
        dist.particle_entropy(),
    ]:
        assert np.all(np.isfinite(value))
    assert_allclose(dist.entropy(), total, rtol=1e-14)
    assert_allclose(dist.expected_entropy(), expected, rtol=1e-14)
    assert_allclose(dist.mutual_information(), total - expected, rtol=1e-13)
    assert_allclose(dist.particle_entropy(), _entropy(p), rtol=1e-14)


def test_draw_entropy_is_finite_where_a_softmax_is_exactly_zero():
    # A network that masks class 1 with a logit of -inf in one of two draws:
    # its log-softmax is -inf there, its probability exactly 0.
    out = torch.tensor([[[[0.0, -torch.inf]], [[0.0, 0.0]]]], dtype=torch.float64)
    _, entropy = class_probabilities(out)
    assert_allclose(entropy.numpy(), [[0.5 * np.log(2.0)]], rtol=1e-14)


def test_entropies_match_numpy_on_random_probabilities():
    rng = np.random.RandomState(0)
    logits = rng.normal(scale=3.0, size=(4, 6, 5))
    p = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    dist = CategoricalMixture(np.log(p), _entropy(p))
    assert_allclose(dist.entropy(), _entropy(p.mean(axis=0)), rtol=1e-12)
    assert_allclose(dist.particle_entropy(), _entropy(p), rtol=1e-12)


# -- temperature -------------------------------------------------------------------
def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(4000, 4))
    truth = softmax(logits, axis=1)
    y = np.array([rng.choice(4, p=p) for p in truth])
    overconfident = log_softmax(2.0 * logits, axis=1)  # temperature 2 undoes it
    t = fit_temperature(overconfident, y, np.ones(len(y)))
    assert t == pytest.approx(2.0, rel=0.1)
    assert fit_temperature(log_softmax(logits, axis=1), y, np.ones(len(y))) == (
        pytest.approx(1.0, rel=0.1)
    )


def test_fit_temperature_does_not_sharpen_without_errors():
    # Every row right: the likelihood prefers ever sharper probabilities, which
    # says nothing of new rows; the temperature stays at or above 1.
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(40, 3))
    y = logits.argmax(axis=1)
    t = fit_temperature(log_softmax(logits, axis=1), y, np.ones(len(y)))
    assert t == pytest.approx(1.0, abs=1e-3)
    # Even probabilities three times too flat: no errors, no sharpening.
    t = fit_temperature(log_softmax(logits / 3, axis=1), y, np.ones(len(y)))
    assert t == pytest.approx(1.0, abs=1e-3)
