"""Tests of the mixture quantile solver, against scipy's bracketing root finder."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import brentq
from scipy.special import log_ndtr, logsumexp

from sklearn_swag._posterior.quantiles import mixture_quantile


def _reference_quantile(q, means, scale):
    """Root of the log tail equation of one mixture by scipy's brentq."""
    sign = -1.0 if q > 0.5 else 1.0
    tail = 1.0 - q if q > 0.5 else q

    def equation(x):
        log_tail = logsumexp(log_ndtr(sign * (x - means) / scale)) - np.log(len(means))
        return sign * (log_tail - np.log(tail))

    lower, upper = np.min(means - 40 * scale), np.max(means + 40 * scale)
    tol = 1e-14 * np.min(scale)
    return brentq(equation, lower, upper, xtol=tol, rtol=1e-15, maxiter=500)


def _components(seed, n_components, n_points):
    """Components of very different scales (1e-4 to 1e4) and locations."""
    rng = np.random.RandomState(seed)
    shape = (n_components, n_points, 1)
    means = rng.normal(size=shape) * rng.choice([1e-3, 1.0, 1e3], size=(1,) + shape[1:])
    scale = np.exp(rng.uniform(np.log(1e-4), np.log(1e4), size=shape))
    return means, scale


@pytest.mark.parametrize("n_components", [1, 3, 16])
def test_quantiles_agree_with_brentq_in_the_far_tails(n_components):
    q = np.array([1e-12, 1e-6, 0.01, 0.3, 0.5, 0.7, 0.99, 1 - 1e-6, 1 - 1e-12])
    means, scale = _components(n_components, n_components, len(q))
    lower = q[:, None]
    upper = 1.0 - lower
    x = mixture_quantile(lower, upper, means, scale, np.log(scale))[:, 0]
    expected = [
        _reference_quantile(q[i], means[:, i, 0], scale[:, i, 0]) for i in range(len(q))
    ]
    # Relative to |x| plus the smallest component scale, the solver's own tolerance.
    error = np.abs(x - expected) / (np.abs(expected) + np.min(scale[:, :, 0], axis=0))
    assert np.max(error) < 1e-10


def test_quantile_of_the_upper_tail_is_solved_without_cancellation():
    # lower_tail = 1 - 1e-300 rounds to 1; the upper tail keeps the information.
    means, scale = np.zeros((1, 1, 1)), np.ones((1, 1, 1))
    x = mixture_quantile(
        np.ones((1, 1)), np.full((1, 1), 1e-300), means, scale, np.log(scale)
    )
    assert 37.0 < x[0, 0] < 37.1  # isf(1e-300) of the standard normal: 37.04...


def test_quantile_end_points_are_infinite():
    means, scale = np.zeros((2, 3, 1)), np.ones((2, 3, 1))
    lower = np.array([[0.0], [1.0], [0.5]])
    x = mixture_quantile(lower, 1.0 - lower, means, scale, np.log(scale))
    assert_array_equal(x[:2, 0], [-np.inf, np.inf])
    assert_allclose(x[2, 0], 0.0, atol=1e-12)
