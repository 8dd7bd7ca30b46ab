"""Tests of the closed-form CRPS of Gaussian mixtures, against quadrature."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.integrate import quad
from scipy.special import ndtr

import sklearn_swag._posterior.crps as crps_module
from sklearn_swag._posterior.normal_mixture import NormalMixture


def _crps_by_quadrature(y, means, scales):
    """int (F(x) - 1{x >= y})^2 dx for one mixture, by adaptive quadrature."""
    means, scales = np.asarray(means, float), np.asarray(scales, float)

    def cdf(x):
        return np.mean(ndtr((x - means) / scales))

    def sf(x):
        return np.mean(ndtr((means - x) / scales))

    lo = min(np.min(means - 40 * scales), y)
    hi = max(np.max(means + 40 * scales), y)
    options = dict(epsabs=1e-13, epsrel=1e-11, limit=1000)
    below = [p for p in means if lo < p < y]
    above = [p for p in means if y < p < hi]
    left = quad(lambda x: cdf(x) ** 2, lo, y, points=below or None, **options)[0]
    right = quad(lambda x: sf(x) ** 2, y, hi, points=above or None, **options)[0]
    return left + right


@pytest.mark.parametrize(
    "means, variances, noise",
    [
        ([-5.0, 3.0], [1e-4, 9.0], 1e-6),  # a needle and a wide bump
        ([-1.0, 0.0, 0.5, 4.0], [0.2, 1.0, 0.0, 3.0], 0.05),
        ([0.0, 0.0], [0.0, 0.0], [1e-2, 9.0]),  # per-component noise
        ([2.0, -3.0, 1.0], [0.5, 0.1, 0.0], [0.3, 2.0, 1e-4]),  # per-component
    ],
    ids=["bimodal", "four-components", "noise-only", "three-per-component"],
)
def test_crps_matches_quadrature(means, variances, noise):
    means, variances = np.asarray(means, float), np.asarray(variances, float)
    noise = np.asarray(noise, float)
    y = np.array([-6.0, -5.0, -4.99, -1.0, 0.0, 0.3, 2.5, 12.0])
    n_points, n_components = len(y), len(means)
    shape = (n_components, n_points, 1)
    per_component = noise.ndim == 1
    dist = NormalMixture(
        np.broadcast_to(means[:, None, None], shape),
        np.broadcast_to(variances[:, None, None], shape),
        np.broadcast_to(noise[:, None, None], shape) if per_component else noise,
    )
    scales = np.sqrt(variances + noise)
    expected = [_crps_by_quadrature(value, means, scales) for value in y]
    assert_allclose(dist.crps(y), expected, rtol=1e-8, atol=1e-10)


def test_crps_multi_output_is_marginal():
    rng = np.random.RandomState(21)
    means = rng.normal(size=(3, 4, 2))
    variances = rng.uniform(0.0, 1.0, size=(3, 4, 2))
    noise = rng.uniform(0.1, 1.0, size=(3, 4, 2))
    dist = NormalMixture(means, variances, noise, single_output=False)
    y = rng.normal(size=(4, 2))
    scales = np.sqrt(variances + noise)
    crps = dist.crps(y)
    assert crps.shape == (4, 2)
    for point in range(4):
        for output in range(2):
            expected = _crps_by_quadrature(
                y[point, output], means[:, point, output], scales[:, point, output]
            )
            assert_allclose(crps[point, output], expected, rtol=1e-8)
    # y broadcast along points.
    assert_allclose(dist.crps(y[0])[0], crps[0])


def test_crps_chunks_give_the_same_result(monkeypatch):
    rng = np.random.RandomState(22)
    shape = (7, 50, 2)
    dist = NormalMixture(
        rng.normal(size=shape),
        rng.uniform(0.0, 1.0, size=shape),
        rng.uniform(0.1, 1.0, size=shape),
        single_output=False,
    )
    y = rng.normal(size=(50, 2))
    whole = dist.crps(y)
    # 21 pairs of components: 100 floats give chunks of 4 entries, 1 of one.
    for floats in [100, 1]:
        monkeypatch.setattr(crps_module, "_CRPS_CHUNK_FLOATS", floats)
        assert_allclose(dist.crps(y), whole, rtol=1e-13)


def test_crps_is_expected_absolute_errors_by_sampling():
    # CRPS = E|X - y| - E|X - X'| / 2, estimated with draws of the mixture.
    means = np.array([-2.0, 1.0, 1.5]).reshape(3, 1, 1)
    noise = np.array([0.1, 0.5, 1.0]).reshape(3, 1, 1)
    dist = NormalMixture(means, np.full((3, 1, 1), 0.3), noise)
    draws = dist.rvs(size=(2, 400_000), random_state=23)[..., 0]
    y = 0.7
    estimate = np.mean(np.abs(draws[0] - y)) - 0.5 * np.mean(
        np.abs(draws[0] - draws[1])
    )
    assert_allclose(dist.crps(y), [estimate], rtol=0.01)


def test_crps_of_a_near_point_mass_is_the_absolute_error():
    means = np.array([1.0, 3.0]).reshape(2, 1, 1)
    dist = NormalMixture(means, np.zeros((2, 1, 1)), noise_variance=1e-12)
    # Two atoms at 1 and 3: mean |y - X| minus half of mean |X - X'| = 1 / 2.
    for y, expected in [(0.0, 2.0 - 0.5), (2.0, 1.0 - 0.5), (5.0, 3.0 - 0.5)]:
        assert_allclose(dist.crps(y), [expected], atol=1e-5)
