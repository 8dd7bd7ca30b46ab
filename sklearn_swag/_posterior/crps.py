"""Continuous ranked probability score of equal-weight Gaussian mixtures.

The score has a closed form for a Gaussian mixture (Grimit et al. 2006). With
:math:`A(m, s^2) = \\mathbb{E}|Z|` for :math:`Z \\sim \\mathcal{N}(m, s^2)`,
that is :math:`A(m, s^2) = m\\,(2\\Phi(m/s) - 1) + 2s\\,\\varphi(m/s)`, and
components of means :math:`\\mu_k` and standard deviations :math:`s_k`,

.. math::

    \\operatorname{CRPS}(F, y) = \\int (F(x) - \\mathbb{1}\\{x \\ge y\\})^2 dx
    = \\frac{1}{K}\\sum_k A(y - \\mu_k, s_k^2)
    - \\frac{1}{2K^2}\\sum_{j,k} A(\\mu_j - \\mu_k, s_j^2 + s_k^2).
"""

import math

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr

__all__ = ["mixture_crps"]

# Largest number of floats in one temporary array of mixture_crps: the
# pairwise term needs n_components * (n_components - 1) / 2 of them per entry of
# the batch, so the batch is processed in chunks of about this many floats.
_CRPS_CHUNK_FLOATS = 2**18

_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def mixture_crps(y: NDArray, means: NDArray, scale: NDArray) -> NDArray:
    """CRPS of a batch of equal-weight Gaussian mixtures, in chunks of entries.

    Parameters
    ----------
    y : ndarray broadcastable to shape (n_points, n_outputs)
        Observed values.
    means, scale : ndarray of shape (n_components, n_points, n_outputs)
        Component means and positive standard deviations.

    Returns
    -------
    crps : ndarray of shape (n_points, n_outputs)
        Score of each entry, non-negative.
    """
    n_components = means.shape[0]
    mu = means.reshape(n_components, -1)
    scale = scale.reshape(n_components, -1)
    y = np.broadcast_to(y, means.shape[1:]).reshape(-1)
    first, second = np.triu_indices(n_components, k=1)
    per_entry = max(n_components, first.size)
    chunk = max(1, _CRPS_CHUNK_FLOATS // per_entry)

    result = np.empty(y.shape)
    for start in range(0, y.size, chunk):
        part = slice(start, start + chunk)
        mu_part, scale_part = mu[:, part], scale[:, part]
        # E|X - y|, X drawn from the mixture.
        to_y = _expected_abs_normal(y[part] - mu_part, scale_part).mean(axis=0)
        # E|X - X'|, X and X' independent draws: the diagonal j = k gives
        # A(0, 2 s_k^2) = 2 s_k / sqrt(pi), each pair j < k counts twice.
        spread = 2.0 * _INV_SQRT_PI * scale_part.sum(axis=0)
        if first.size:
            pair_scale = np.hypot(scale_part[first], scale_part[second])
            pair_gap = mu_part[first] - mu_part[second]
            spread += 2.0 * _expected_abs_normal(pair_gap, pair_scale).sum(axis=0)
        result[part] = to_y - 0.5 * spread / n_components**2
    # The score is non-negative; rounding can leave a tiny negative value.
    np.maximum(result, 0.0, out=result)
    return result.reshape(means.shape[1:])


def _expected_abs_normal(loc: NDArray, scale: NDArray) -> NDArray:
    """E|Z| for Z normal with mean ``loc`` and positive standard deviation ``scale``."""
    z = loc / scale
    return loc * (2.0 * ndtr(z) - 1.0) + 2.0 * _INV_SQRT_2PI * scale * np.exp(
        -0.5 * z**2
    )
