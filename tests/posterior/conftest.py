"""Shared fixtures of the posterior tests."""

import numpy as np
import pytest
from scipy import stats

from sklearn_swag._posterior.normal_mixture import NormalMixture


@pytest.fixture
def one_component():
    rng = np.random.RandomState(0)
    n_points = 7
    means = rng.normal(size=(1, n_points, 1))
    variances = rng.uniform(0.0, 2.0, size=(1, n_points, 1))
    variances[0, 0, 0] = 0.0  # a zero epistemic variance is allowed
    noise = 0.3
    dist = NormalMixture(means, variances, noise_variance=noise)
    ref = stats.norm(loc=means[0, :, 0], scale=np.sqrt(variances[0, :, 0] + noise))
    return dist, ref
