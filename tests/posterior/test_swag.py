"""Tests of the SWAG maths on flat vectors, against plain numpy on tiny cases."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from sklearn_swag._posterior.swag import (
    VAR_CLAMP,
    SWAGMoments,
    diagonal_variance,
    posterior_covariance,
    sample_weights,
)

N_PARTICLES, N_PARAMS, N_SNAPSHOTS, RANK = 3, 5, 7, 4


def _trajectory(n_snapshots=N_SNAPSHOTS, seed=0):
    """Snapshots of shape (T, P, n_params), each particle around its own centre."""
    rng = np.random.RandomState(seed)
    centres = rng.normal(size=(1, N_PARTICLES, N_PARAMS)) * 3.0
    return centres + rng.normal(size=(n_snapshots, N_PARTICLES, N_PARAMS))


def _reference(trajectory, rank):
    """Plain-numpy SWAG statistics of one particle's trajectory (T, n_params)."""
    running_means = np.cumsum(trajectory, axis=0) / np.arange(
        1, len(trajectory) + 1
    ).reshape(-1, 1)
    deviations = trajectory - running_means
    kept = deviations[len(trajectory) - rank :] if rank else deviations[:0]
    return {
        "mean": trajectory.mean(axis=0),
        "sq_mean": (trajectory**2).mean(axis=0),
        "deviations": kept,
    }


def _collect(trajectory, rank, deviation_dtype=torch.float64):
    moments = SWAGMoments(
        trajectory.shape[1], trajectory.shape[2], rank, deviation_dtype=deviation_dtype
    )
    for theta in trajectory:
        moments.collect(torch.as_tensor(theta))
    return moments


# -- SWAGMoments ------------------------------------------------------------------


@pytest.mark.parametrize("n_snapshots", [1, 3, 4, 5, 7, 8, 9])
def test_moments_match_numpy_running_means(n_snapshots):
    trajectory = _trajectory(n_snapshots)
    moments = _collect(trajectory, RANK)
    k = min(n_snapshots, RANK)
    assert moments.mean.dtype == torch.float64
    assert_array_equal(moments.n_snapshots.numpy(), [n_snapshots] * N_PARTICLES)
    assert moments.deviations.shape == (N_PARTICLES, k, N_PARAMS)
    for p in range(N_PARTICLES):
        # The reference keeps the last min(T, rank) deviation rows, oldest first,
        # so the ring buffer is checked before, at and after it wraps.
        ref = _reference(trajectory[:, p], k)
        assert_allclose(moments.mean[p].numpy(), ref["mean"], rtol=1e-12, atol=1e-12)
        assert_allclose(
            moments.sq_mean[p].numpy(), ref["sq_mean"], rtol=1e-12, atol=1e-12
        )
        assert_allclose(
            moments.deviations[p].numpy(), ref["deviations"], rtol=1e-12, atol=1e-12
        )


def test_deviations_are_the_last_rank_rows_oldest_first():
    # Snapshots theta_t = t * ones: the running mean after t+1 snapshots is t/2,
    # so the deviation of snapshot t is t/2 and the order is visible directly.
    n_snapshots = 7
    trajectory = np.arange(n_snapshots, dtype=float).reshape(-1, 1, 1) * np.ones(
        (1, N_PARTICLES, N_PARAMS)
    )
    moments = _collect(trajectory, RANK)
    expected_rows = np.array([3, 4, 5, 6]) / 2.0
    assert_allclose(
        moments.deviations[:, :, 0].numpy(),
        np.tile(expected_rows, (N_PARTICLES, 1)),
        rtol=0,
        atol=1e-12,
    )


def test_float32_deviation_storage():
    trajectory = _trajectory()
    moments = _collect(trajectory, RANK, deviation_dtype=torch.float32)
    assert moments.deviations.dtype == torch.float32
    ref = _reference(trajectory[:, 1], RANK)
    # Deviations are O(1); float32 keeps about 7 significant digits.
    assert_allclose(moments.deviations[1].numpy(), ref["deviations"], atol=1e-6)
    # The moments stay float64 whatever the deviation storage.
    assert_allclose(moments.mean[1].numpy(), ref["mean"], rtol=1e-12)


def test_rank_zero_keeps_no_deviations():
    trajectory = _trajectory()
    moments = _collect(trajectory, 0)
    assert moments.deviations.shape == (N_PARTICLES, 0, N_PARAMS)
    assert_allclose(moments.mean[2].numpy(), trajectory[:, 2].mean(axis=0))


def test_no_snapshot_yet_has_no_deviations():
    moments = SWAGMoments(N_PARTICLES, N_PARAMS, RANK)
    assert moments.deviations.shape == (N_PARTICLES, 0, N_PARAMS)
    assert_array_equal(moments.n_snapshots.numpy(), 0)


@pytest.mark.parametrize(
    "shape", [(N_PARTICLES, N_PARAMS + 1), (N_PARTICLES + 1, N_PARAMS), (N_PARAMS,)]
)
def test_collect_rejects_a_wrong_shape(shape):
    moments = SWAGMoments(N_PARTICLES, N_PARAMS, RANK)
    with pytest.raises(ValueError, match="shape"):
        moments.collect(torch.zeros(shape))
    assert_array_equal(moments.n_snapshots.numpy(), 0)


def test_particles_share_nothing():
    trajectory = _trajectory()
    changed = trajectory.copy()
    changed[:, 1] = 100.0 * np.random.RandomState(1).normal(size=changed[:, 1].shape)
    a = _collect(trajectory, RANK)
    b = _collect(changed, RANK)
    for p in (0, 2):
        assert torch.equal(a.mean[p], b.mean[p])
        assert torch.equal(a.sq_mean[p], b.sq_mean[p])
        assert torch.equal(a.deviations[p], b.deviations[p])
    assert not torch.allclose(a.mean[1], b.mean[1])
    ref = _reference(changed[:, 1], RANK)
    assert_allclose(b.deviations[1].numpy(), ref["deviations"], rtol=1e-12)


# -- diagonal variance ------------------------------------------------------------


def test_diagonal_variance_clamps():
    mean = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.5, -1.0]], dtype=torch.float64)
    sq_mean = torch.tensor(
        [[2.0, 4.5, 0.0], [8.0, 0.0, 1.0 - 1e-12]], dtype=torch.float64
    )
    var = diagonal_variance(mean, sq_mean)
    expected = np.maximum(sq_mean.numpy() - mean.numpy() ** 2, VAR_CLAMP)
    assert_allclose(var.numpy(), expected, rtol=1e-12)
    assert_allclose(var[0, :2].numpy(), [1.0, 0.5])
    # Exactly zero, negative, and negative by round-off: all clamped.
    assert var[0, 2] == VAR_CLAMP
    assert var[1, 0] == VAR_CLAMP
    assert var[1, 1] == VAR_CLAMP
    assert var[1, 2] == VAR_CLAMP
    custom = diagonal_variance(mean, sq_mean, var_clamp=0.75)
    assert_allclose(custom.numpy(), [[1.0, 0.75, 0.75], [0.75, 0.75, 0.75]])


# -- posterior draws --------------------------------------------------------------


def _posterior(k, n_params=4, seed=0, low_rank_size=1.0):
    """mean, sq_mean, deviations (K rows) of a small float64 posterior."""
    rng = np.random.RandomState(seed)
    mean = rng.normal(size=n_params)
    var = rng.uniform(0.2, 1.0, size=n_params)
    deviations = low_rank_size * rng.normal(size=(k, n_params))
    return (
        torch.as_tensor(mean),
        torch.as_tensor(var + mean**2),
        torch.as_tensor(deviations),
        var,
    )


def _closed_form(var, deviations, scale, divisor):
    """scale * (diag(var)/2 + D^T D / (2 divisor)), or scale * diag(var) for K=0."""
    if len(deviations) == 0:
        return scale * np.diag(var)
    return scale * (np.diag(var) / 2 + deviations.T @ deviations / (2 * divisor))


def _assert_covariance_matches(draws, expected, n_sigma=5.0):
    """Empirical covariance within ``n_sigma`` standard errors of ``expected``.

    The standard error of an empirical covariance entry from n Gaussian draws
    is sqrt((S_ii S_jj + S_ij^2) / n).
    """
    n = len(draws)
    empirical = np.cov(draws, rowvar=False)
    diag = np.diag(expected)
    stderr = np.sqrt((np.outer(diag, diag) + expected**2) / n)
    assert np.all(np.abs(empirical - expected) <= n_sigma * stderr), (
        np.abs(empirical - expected) / stderr
    )


@pytest.mark.parametrize("k, scale", [(3, 1.0), (5, 0.5), (1, 2.0), (0, 1.0)])
def test_posterior_covariance_closed_form(k, scale):
    mean, sq_mean, deviations, var = _posterior(k)
    cov = posterior_covariance(mean, sq_mean, deviations, scale=scale)
    # K = 1 has a single deviation row: the divisor K - 1 is taken as 1.
    expected = _closed_form(var, deviations.numpy(), scale, max(k - 1, 1))
    assert_allclose(cov.numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k, scale", [(3, 1.0), (5, 0.5), (1, 2.0), (0, 1.0)])
def test_draws_have_the_posterior_mean_and_covariance(k, scale):
    mean, sq_mean, deviations, var = _posterior(k)
    n_draws = 200_000
    g = torch.Generator().manual_seed(123)
    draws = sample_weights(
        mean, sq_mean, deviations, n_draws, scale=scale, generator=g
    ).numpy()
    assert draws.shape == (n_draws, 4)
    expected = _closed_form(var, deviations.numpy(), scale, max(k - 1, 1))
    assert_allclose(
        expected,
        posterior_covariance(mean, sq_mean, deviations, scale=scale).numpy(),
        rtol=1e-10,
    )
    _assert_covariance_matches(draws, expected)
    stderr = np.sqrt(np.diag(expected) / n_draws)
    assert np.all(np.abs(draws.mean(axis=0) - mean.numpy()) <= 5 * stderr)


def test_rank_zero_draws_are_swag_diagonal():
    mean, sq_mean, deviations, var = _posterior(0)
    g = torch.Generator().manual_seed(5)
    draws = sample_weights(mean, sq_mean, deviations, 200_000, generator=g).numpy()
    # SWAG-Diagonal: the full variance, not halved.
    _assert_covariance_matches(draws, np.diag(var))
    assert_allclose(draws.var(axis=0), var, rtol=0.02)


def test_low_rank_term_is_divided_by_k_minus_one_not_by_n_draws():
    # Regression test for PusH's MultiSWAG, which divides the low-rank term by
    # the number of posterior draws. The deviation rows dominate the diagonal
    # here, so every plausible wrong divisor is many standard errors away.
    k = 4
    mean, sq_mean, deviations, var = _posterior(k, low_rank_size=3.0)
    dev = deviations.numpy()
    g = torch.Generator().manual_seed(7)
    n_per_call = 50  # != K; 4000 calls give 200k draws
    draws = np.concatenate(
        [
            sample_weights(mean, sq_mean, deviations, n_per_call, generator=g).numpy()
            for _ in range(4000)
        ]
    )
    right = _closed_form(var, dev, 1.0, k - 1)
    _assert_covariance_matches(draws, right)
    for wrong_divisor in (k, n_per_call, n_per_call - 1, len(draws) - 1):
        wrong = _closed_form(var, dev, 1.0, wrong_divisor)
        with pytest.raises(AssertionError):
            _assert_covariance_matches(draws, wrong)
    # One big call: the divisor does not depend on n_draws either.
    big = sample_weights(mean, sq_mean, deviations, 200_000, generator=g).numpy()
    _assert_covariance_matches(big, right)


def test_scale_zero_returns_the_mean_exactly():
    mean, sq_mean, deviations, _ = _posterior(3)
    draws = sample_weights(mean, sq_mean, deviations, 6, scale=0.0)
    assert torch.equal(draws, mean.expand(6, -1))


def test_same_seed_same_draws():
    mean, sq_mean, deviations, _ = _posterior(3)

    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        return sample_weights(mean, sq_mean, deviations, 10, generator=g)

    assert torch.equal(draw(0), draw(0))
    assert not torch.allclose(draw(0), draw(1))


def test_draws_take_the_dtype_of_the_mean():
    mean, sq_mean, deviations, _ = _posterior(3)
    draws = sample_weights(mean.float(), sq_mean.float(), deviations.float(), 3)
    assert draws.dtype == torch.float32
    draws = sample_weights(mean, sq_mean, deviations.float(), 3)
    assert draws.dtype == torch.float64


def test_draws_from_collected_moments():
    # End to end on one particle: collect, then draw; the covariance is the
    # closed form built from the numpy reference statistics.
    trajectory = _trajectory()
    moments = _collect(trajectory, RANK)
    ref = _reference(trajectory[:, 0], RANK)
    g = torch.Generator().manual_seed(0)
    draws = sample_weights(
        moments.mean[0], moments.sq_mean[0], moments.deviations[0], 200_000, generator=g
    ).numpy()
    var = ref["sq_mean"] - ref["mean"] ** 2
    expected = _closed_form(var, ref["deviations"], 1.0, RANK - 1)
    _assert_covariance_matches(draws, expected)
