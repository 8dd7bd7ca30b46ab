"""Toy data."""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state


def make_toy_regression(
    n_samples=100, *, noise=0.02, low=0.0, high=0.5, random_state=None
):
    """The 1-D toy regression problem of the MultiSWAG seed notebook.

    ``x`` is uniform on ``[low, high]`` and
    ``y = x + 0.3 sin(2 pi (x + e)) + 0.3 sin(4 pi (x + e)) + e`` with
    ``e ~ N(0, noise**2)``, the curve of Blundell et al. (2015): a wiggle on
    a short interval, so that the uncertainty away from it is easy to see.

    Parameters
    ----------
    n_samples : int, default=100
        Number of points.
    noise : float, default=0.02
        Standard deviation of ``e``.
    low, high : float, default=0.0, 0.5
        The interval the inputs are drawn from.
    random_state : int, RandomState instance or None, default=None
        Seeds the inputs and the noise.

    Returns
    -------
    X : ndarray of shape (n_samples, 1)
        Inputs, sorted.
    y : ndarray of shape (n_samples,)
        Targets.

    Examples
    --------
    >>> from sklearn_swag import make_toy_regression
    >>> X, y = make_toy_regression(random_state=0)
    >>> X.shape, y.shape
    ((100, 1), (100,))
    """
    rng = check_random_state(random_state)
    x = np.sort(rng.uniform(low, high, size=n_samples))
    e = noise * rng.standard_normal(n_samples)
    y = x + 0.3 * np.sin(2 * np.pi * (x + e)) + 0.3 * np.sin(4 * np.pi * (x + e)) + e
    return x.reshape(-1, 1), y
