"""Tests of the predictive distribution, against closed forms and scipy.stats."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats
from scipy.integrate import cumulative_trapezoid, trapezoid
from scipy.special import ndtr

from sklearn_swag._posterior.normal_mixture import NormalMixture


def _normal_logpdf(y, mean, var):
    return -0.5 * (y - mean) ** 2 / var - 0.5 * np.log(2 * np.pi * var)


def _replicate(means, variances, noise_variance, n_points):
    """One mixture per point, all with the same components (given per component)."""
    shape = (len(means), n_points, 1)
    means = np.broadcast_to(np.asarray(means, dtype=float)[:, None, None], shape)
    variances = np.broadcast_to(
        np.asarray(variances, dtype=float)[:, None, None], shape
    )
    return NormalMixture(means, variances, noise_variance)


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


# Bimodal, with very different scales: a needle at -5 and a wide bump at 3.
BIMODAL_MEANS = np.array([-5.0, 3.0])
BIMODAL_VARIANCES = np.array([1e-4, 9.0])
BIMODAL_NOISE = 1e-6


def test_one_component_matches_scipy_norm(one_component):
    dist, ref = one_component
    rng = np.random.RandomState(1)
    y = ref.mean() + ref.std() * rng.normal(size=dist.n_points) * 2
    q = rng.uniform(size=dist.n_points)

    assert_allclose(dist.mean(), ref.mean(), rtol=1e-12)
    assert_allclose(dist.var(), ref.var(), rtol=1e-12)
    assert_allclose(dist.std(), ref.std(), rtol=1e-12)
    assert_allclose(dist.logpdf(y), ref.logpdf(y), rtol=1e-12)
    assert_allclose(dist.pdf(y), ref.pdf(y), rtol=1e-12)
    assert_allclose(dist.cdf(y), ref.cdf(y), rtol=1e-12)
    assert_allclose(dist.sf(y), ref.sf(y), rtol=1e-12)
    assert_allclose(dist.logcdf(y), ref.logcdf(y), rtol=1e-12)
    assert_allclose(dist.logsf(y), ref.logsf(y), rtol=1e-12)
    assert_allclose(dist.ppf(q), ref.ppf(q), rtol=1e-8, atol=1e-8)
    assert_allclose(dist.isf(q), ref.isf(q), rtol=1e-8, atol=1e-8)
    assert_allclose(dist.median(), ref.median(), atol=1e-8)
    for confidence in [0.0, 0.5, 0.95, 1 - 1e-9]:
        lower, upper = dist.interval(confidence)
        ref_lower, ref_upper = ref.interval(confidence)
        assert_allclose(lower, ref_lower, rtol=1e-8, atol=1e-8)
        assert_allclose(upper, ref_upper, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("q", [1e-300, 1e-12, 1e-6, 0.5, 1 - 1e-6, 1 - 1e-12])
def test_one_component_ppf_in_the_tails(one_component, q):
    dist, ref = one_component
    assert_allclose(dist.ppf(q), ref.ppf(q), rtol=1e-8, atol=1e-8)
    assert_allclose(dist.isf(q), ref.isf(q), rtol=1e-8, atol=1e-8)


def test_ppf_end_points(one_component):
    dist, _ = one_component
    assert_array_equal(dist.ppf(0.0), -np.inf)
    assert_array_equal(dist.ppf(1.0), np.inf)
    assert_array_equal(dist.isf(0.0), np.inf)
    assert_array_equal(dist.isf(1.0), -np.inf)
    lower, upper = dist.interval(1.0)
    assert_array_equal(lower, -np.inf)
    assert_array_equal(upper, np.inf)


def test_two_components_against_hand_formulas():
    rng = np.random.RandomState(2)
    n_points = 5
    means = rng.normal(scale=3.0, size=(2, n_points, 1))
    variances = rng.uniform(0.1, 2.0, size=(2, n_points, 1))
    noise = rng.uniform(0.1, 1.0, size=n_points)
    dist = NormalMixture(means, variances, noise_variance=noise)
    mu1, mu2 = means[0, :, 0], means[1, :, 0]
    s1, s2 = variances[0, :, 0] + noise, variances[1, :, 0] + noise
    y = rng.normal(scale=3.0, size=n_points)

    density = 0.5 * stats.norm.pdf(y, mu1, np.sqrt(s1))
    density += 0.5 * stats.norm.pdf(y, mu2, np.sqrt(s2))
    assert_allclose(dist.logpdf(y), np.log(density), rtol=1e-12)
    assert_allclose(dist.pdf(y), density, rtol=1e-12)

    mean = 0.5 * (mu1 + mu2)
    second_moment = 0.5 * (s1 + mu1**2) + 0.5 * (s2 + mu2**2)
    assert_allclose(dist.mean(), mean, rtol=1e-12)
    assert_allclose(dist.var(), second_moment - mean**2, rtol=1e-10)
    assert_allclose(dist.std(), np.sqrt(second_moment - mean**2), rtol=1e-10)
    assert_allclose(dist.aleatoric_var(), noise, rtol=1e-12)
    assert_allclose(dist.epistemic_var() + dist.aleatoric_var(), dist.var())
    epistemic = 0.5 * (variances[0, :, 0] + variances[1, :, 0])
    epistemic += 0.25 * (mu1 - mu2) ** 2
    assert_allclose(dist.epistemic_var(), epistemic, rtol=1e-12)

    cdf = 0.5 * stats.norm.cdf(y, mu1, np.sqrt(s1))
    cdf += 0.5 * stats.norm.cdf(y, mu2, np.sqrt(s2))
    assert_allclose(dist.cdf(y), cdf, rtol=1e-12)
    assert_allclose(dist.sf(y), 1 - cdf, rtol=1e-12)
    assert_allclose(dist.logcdf(y), np.log(cdf), rtol=1e-12)
    assert_allclose(dist.median(), dist.ppf(0.5))


def test_var_is_stable_for_large_means():
    # mean_k(mu_k^2) - mean^2 would lose every digit here.
    means = 1e8 + np.array([-1.0, 1.0]).reshape(2, 1, 1)
    dist = NormalMixture(means, np.zeros((2, 1, 1)), noise_variance=1e-4)
    assert_allclose(dist.var(), [1.0 + 1e-4], rtol=1e-12)


def test_pdf_integrates_to_one_and_cdf_matches_integral():
    grid = np.concatenate(
        [
            np.linspace(-60.0, -6.0, 20_000, endpoint=False),
            np.linspace(-6.0, -4.0, 40_000, endpoint=False),  # around the needle
            np.linspace(-4.0, 60.0, 40_000),
        ]
    )
    dist = _replicate(BIMODAL_MEANS, BIMODAL_VARIANCES, BIMODAL_NOISE, len(grid))
    density = dist.pdf(grid)
    assert_allclose(trapezoid(density, grid), 1.0, rtol=1e-6)

    # cdf(y) = cdf(grid[0]) + integral of the pdf from grid[0] to y.
    integral = dist.cdf(grid[:1])[0] + cumulative_trapezoid(density, grid, initial=0)
    picks = np.searchsorted(grid, [-5.01, -5.0, -4.99, -4.5, 0.0, 3.0, 8.0])
    assert_allclose(dist.cdf(grid)[picks], integral[picks], atol=1e-6)


def test_ppf_inverts_cdf_for_bimodal_mixture():
    q = np.concatenate(
        [[1e-6, 1e-3], np.linspace(0.01, 0.99, 99), [1 - 1e-3, 1 - 1e-6]]
    )
    dist = _replicate(BIMODAL_MEANS, BIMODAL_VARIANCES, BIMODAL_NOISE, len(q))
    x = dist.ppf(q)
    assert np.all(np.diff(x) > 0)
    assert_allclose(dist.cdf(x), q, rtol=1e-9, atol=1e-12)
    assert_allclose(dist.sf(x), 1 - q, rtol=1e-9, atol=1e-12)
    assert_allclose(dist.isf(1 - q), x, rtol=1e-9, atol=1e-9)

    y = np.concatenate([np.linspace(-5.03, -4.97, 31), np.linspace(-4.0, 15.0, 39)])
    dist = _replicate(BIMODAL_MEANS, BIMODAL_VARIANCES, BIMODAL_NOISE, len(y))
    assert_allclose(dist.ppf(dist.cdf(y)), y, rtol=1e-9, atol=1e-9)


def test_multi_output_joint_logpdf_and_marginals():
    rng = np.random.RandomState(3)
    n_components, n_points, n_outputs = 3, 4, 2
    means = rng.normal(size=(n_components, n_points, n_outputs))
    variances = rng.uniform(0.1, 1.0, size=(n_components, n_points, n_outputs))
    noise = np.array([0.2, 0.5])
    dist = NormalMixture(means, variances, noise_variance=noise, single_output=False)
    y = rng.normal(size=(n_points, n_outputs))

    total = variances + noise
    joint = np.zeros(n_points)
    for k in range(n_components):
        joint += np.prod(np.exp(_normal_logpdf(y, means[k], total[k])), axis=-1)
    joint /= n_components
    assert dist.logpdf(y).shape == (n_points,)
    assert_allclose(dist.logpdf(y), np.log(joint), rtol=1e-12)
    assert_allclose(dist.pdf(y), joint, rtol=1e-12)

    marginal_cdf = np.mean(ndtr((y - means) / np.sqrt(total)), axis=0)
    assert_allclose(dist.cdf(y), marginal_cdf, rtol=1e-12)
    assert_allclose(dist.ppf(marginal_cdf), y, rtol=1e-9, atol=1e-9)

    batch_shape = (n_points, n_outputs)
    assert dist.mean().shape == batch_shape
    assert dist.var().shape == batch_shape
    assert dist.std().shape == batch_shape
    assert dist.epistemic_var().shape == batch_shape
    assert_allclose(dist.aleatoric_var(), np.broadcast_to(noise, batch_shape))
    assert dist.cdf(y).shape == batch_shape
    assert dist.logcdf(y).shape == batch_shape
    assert dist.ppf(0.3).shape == batch_shape
    assert dist.median().shape == batch_shape
    assert all(end.shape == batch_shape for end in dist.interval(0.9))
    # y broadcast along points, q per output.
    assert_allclose(dist.cdf(y[0]), dist.cdf(np.broadcast_to(y[0], batch_shape)))
    assert dist.ppf([0.1, 0.9]).shape == batch_shape


@pytest.mark.parametrize(
    "noise_variance, stored_shape",
    [
        (0.5, (4, 1)),
        (np.array([0.5]), (4, 1)),
        (np.full((4, 1), 0.5), (4, 1)),
        (np.full(4, 0.5), (4, 1)),
        (np.full((2, 4, 1), 0.5), (2, 4, 1)),
        (np.full((2, 1, 1), 0.5), (2, 4, 1)),
        (np.full((1, 4, 1), 0.5), (2, 4, 1)),
    ],
    ids=[
        "scalar",
        "per-output",
        "per-point-and-output",
        "per-point",
        "per-component",
        "per-component-broadcast-points",
        "three-dimensional-broadcast-components",
    ],
)
def test_noise_variance_shapes(noise_variance, stored_shape):
    dist = NormalMixture(np.zeros((2, 4, 1)), np.ones((2, 4, 1)), noise_variance)
    assert dist.noise_variance.shape == stored_shape
    assert_allclose(dist.var(), np.full(4, 1.5))
    assert_allclose(dist.aleatoric_var(), np.full(4, 0.5))
    with pytest.raises(ValueError):
        dist.noise_variance[(0,) * len(stored_shape)] = 1.0


def _per_component_case(n_outputs=1, seed=10):
    """Three components whose noise variances differ by component and point."""
    rng = np.random.RandomState(seed)
    shape = (3, 6, n_outputs)
    means = rng.normal(scale=2.0, size=shape)
    variances = rng.uniform(0.0, 1.0, size=shape)
    noise = rng.uniform(0.05, 3.0, size=shape)
    return means, variances, noise


def test_per_component_noise_against_hand_formulas():
    means, variances, noise = _per_component_case()
    dist = NormalMixture(means, variances, noise_variance=noise)
    assert dist.noise_variance.shape == (3, 6, 1)
    assert_array_equal(dist.noise_variance, noise)
    mu, v, s2 = means[..., 0], variances[..., 0], noise[..., 0]
    scale = np.sqrt(v + s2)
    rng = np.random.RandomState(11)
    y = rng.normal(scale=3.0, size=6)

    density = np.mean(stats.norm.pdf(y, mu, scale), axis=0)
    cdf = np.mean(stats.norm.cdf(y, mu, scale), axis=0)
    sf = np.mean(stats.norm.sf(y, mu, scale), axis=0)
    assert_allclose(dist.pdf(y), density, rtol=1e-12)
    assert_allclose(dist.logpdf(y), np.log(density), rtol=1e-12)
    assert_allclose(dist.cdf(y), cdf, rtol=1e-12)
    assert_allclose(dist.sf(y), sf, rtol=1e-12)
    # log of a probability near one: compare on an absolute scale.
    assert_allclose(dist.logcdf(y), np.log(cdf), rtol=1e-12, atol=1e-14)
    assert_allclose(dist.logsf(y), np.log(sf), rtol=1e-12, atol=1e-14)

    # Law of total variance, component by component.
    mean = mu.mean(axis=0)
    second_moment = np.mean(v + s2 + mu**2, axis=0)
    assert_allclose(dist.mean(), mean, rtol=1e-12)
    assert_allclose(dist.var(), second_moment - mean**2, rtol=1e-10)
    assert_allclose(dist.aleatoric_var(), s2.mean(axis=0), rtol=1e-12)
    assert_allclose(dist.epistemic_var(), v.mean(0) + mu.var(0), rtol=1e-12)

    # Quantiles invert the hand-made cdf.
    q = rng.uniform(0.01, 0.99, size=6)
    x = dist.ppf(q)
    assert_allclose(np.mean(stats.norm.cdf(x, mu, scale), axis=0), q, rtol=1e-9)
    lower, upper = dist.interval(0.8)
    assert_allclose(np.mean(stats.norm.cdf(lower, mu, scale), axis=0), 0.1)
    assert_allclose(np.mean(stats.norm.sf(upper, mu, scale), axis=0), 0.1)


def test_per_component_noise_multi_output_joint_logpdf():
    means, variances, noise = _per_component_case(n_outputs=2, seed=12)
    dist = NormalMixture(means, variances, noise, single_output=False)
    y = np.random.RandomState(13).normal(size=(6, 2))
    total = variances + noise
    joint = np.mean(np.prod(stats.norm.pdf(y, means, np.sqrt(total)), axis=-1), 0)
    assert_allclose(dist.logpdf(y), np.log(joint), rtol=1e-12)
    assert_allclose(dist.aleatoric_var(), noise.mean(axis=0), rtol=1e-12)
    assert dist.var().shape == (6, 2)


def test_per_component_noise_rvs_moments():
    # Two components with the same mean and very different noise.
    means = np.zeros((2, 1, 1))
    variances = np.zeros((2, 1, 1))
    noise = np.array([0.01, 4.0]).reshape(2, 1, 1)
    dist = NormalMixture(means, variances, noise_variance=noise)
    assert_allclose(dist.var(), [2.005])
    draws = dist.rvs(size=400_000, random_state=14)[:, 0]
    assert_allclose(draws.var(), 2.005, rtol=0.02)
    # Fourth moment of the scale mixture, 3 * mean_k s_k^4, tells it from a
    # normal with the same variance (3 * 2.005**2).
    assert_allclose(np.mean(draws**4), 3 * np.mean(noise**2), rtol=0.05)


def test_shared_noise_is_per_component_noise_repeated():
    means, variances, noise = _per_component_case(seed=15)
    shared = noise[0]
    dist = NormalMixture(means, variances, noise_variance=shared)
    repeated = NormalMixture(means, variances, np.broadcast_to(shared, means.shape))
    y = np.linspace(-3, 3, 6)
    for method in ["logpdf", "cdf", "crps"]:
        assert_allclose(getattr(repeated, method)(y), getattr(dist, method)(y))
    assert_allclose(repeated.ppf(0.3), dist.ppf(0.3))
    assert_allclose(repeated.aleatoric_var(), dist.aleatoric_var())
    assert_allclose(repeated.var(), dist.var())


def test_attributes_are_read_only_copies():
    means = np.zeros((3, 2, 1))
    variances = np.ones((3, 2, 1))
    dist = NormalMixture(means, variances, noise_variance=0.1)
    means[:] = 1.0
    assert_array_equal(dist.means, 0.0)
    with pytest.raises(ValueError):
        dist.means[0, 0, 0] = 1.0
    with pytest.raises(ValueError):
        dist.variances[0, 0, 0] = 1.0
    assert dist.means.dtype == np.float64
    assert (dist.n_components, dist.n_points, dist.n_outputs) == (3, 2, 1)
    assert_allclose(dist.weights, np.full(3, 1 / 3))
    assert repr(dist) == "NormalMixture(n_points=2, n_outputs=1, n_components=3)"


def test_logpdf_far_in_the_tail_is_finite():
    means = np.array([-1.0, 2.0]).reshape(2, 1, 1)
    dist = NormalMixture(means, np.full((2, 1, 1), 0.5), noise_variance=0.1)
    for y in [dist.mean() + 50 * dist.std(), dist.mean() - 50 * dist.std()]:
        assert np.all(np.isfinite(dist.logpdf(y)))
        assert np.all(np.isfinite(dist.logcdf(y)))
        assert np.all(np.isfinite(dist.logsf(y)))

    single = NormalMixture(np.zeros((1, 1, 1)), np.ones((1, 1, 1)))
    assert_allclose(single.logpdf(50.0), _normal_logpdf(50.0, 0.0, 1.0))
    assert_allclose(single.logcdf(-50.0), stats.norm.logcdf(-50.0))


@pytest.mark.parametrize("single_output", [True, False])
@pytest.mark.parametrize(
    "size, sample_shape", [(None, ()), (5, (5,)), ((2, 3), (2, 3))]
)
def test_rvs_shapes_and_reproducibility(single_output, size, sample_shape):
    n_outputs = 1 if single_output else 2
    rng = np.random.RandomState(4)
    dist = NormalMixture(
        rng.normal(size=(3, 4, n_outputs)),
        np.ones((3, 4, n_outputs)),
        single_output=single_output,
    )
    batch_shape = (4,) if single_output else (4, 2)
    draws = dist.rvs(size=size, random_state=0)
    assert draws.shape == sample_shape + batch_shape
    assert_array_equal(draws, dist.rvs(size=size, random_state=0))
    assert not np.array_equal(draws, dist.rvs(size=size, random_state=1))
    state = np.random.RandomState(0)
    assert_array_equal(draws, dist.rvs(size=size, random_state=state))


def test_rvs_moments_match_mean_and_var():
    means = np.array([[-3.0, 0.0], [2.0, 10.0]]).reshape(2, 2, 1)
    variances = np.array([[0.5, 0.0], [2.0, 1.0]]).reshape(2, 2, 1)
    dist = NormalMixture(means, variances, noise_variance=[0.1, 0.2])
    draws = dist.rvs(size=200_000, random_state=5)
    assert_allclose(draws.mean(axis=0), dist.mean(), atol=0.03)
    assert_allclose(draws.var(axis=0), dist.var(), rtol=0.02)


def test_rvs_shares_the_component_across_outputs():
    means = np.stack([np.full((3, 2), -10.0), np.full((3, 2), 10.0)])
    dist = NormalMixture(means, np.full((2, 3, 2), 1e-2), single_output=False)
    draws = dist.rvs(size=10_000, random_state=6)
    assert_array_equal(np.sign(draws[..., 0]), np.sign(draws[..., 1]))
    assert np.mean(draws[..., 0] > 0) == pytest.approx(0.5, abs=0.02)
    correlation = np.corrcoef(draws[:, 0, 0], draws[:, 0, 1])[0, 1]
    assert correlation > 0.99


def test_interval_covers_rvs():
    dist = _replicate(BIMODAL_MEANS, BIMODAL_VARIANCES, 0.05, n_points=3)
    lower, upper = dist.interval(0.95)
    draws = dist.rvs(size=100_000, random_state=7)
    coverage = np.mean((draws >= lower) & (draws <= upper), axis=0)
    assert_allclose(coverage, 0.95, atol=0.005)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"variances": -np.ones((2, 3, 1))}, "non-negative"),
        ({"noise_variance": 0.0, "variances": np.zeros((2, 3, 1))}, "positive"),
        ({"noise_variance": -1.0}, "non-negative"),
        ({"variances": np.ones((2, 3, 2))}, "shape of means"),
        ({"means": np.zeros((2, 3))}, "n_components, n_points, n_outputs"),
        ({"means": np.full((2, 3, 1), np.nan)}, "finite"),
        ({"variances": np.full((2, 3, 1), np.inf)}, "finite"),
        ({"noise_variance": np.nan}, "finite"),
        ({"noise_variance": np.ones(2)}, "cannot be broadcast"),
        ({"noise_variance": np.ones((3, 3, 1))}, "n_components, n_points"),
        ({"noise_variance": np.ones((2, 3, 1, 1))}, "cannot be broadcast"),
        ({"noise_variance": -np.ones((2, 3, 1))}, "non-negative"),
        ({"noise_variance": np.full((2, 3, 1), np.inf)}, "finite"),
        (
            {
                "noise_variance": np.array([0.0, 1.0]).reshape(2, 1, 1),
                "variances": np.zeros((2, 3, 1)),
            },
            "positive",
        ),
        ({"means": np.zeros((0, 3, 1)), "variances": np.ones((0, 3, 1))}, "one"),
        (
            {"means": np.zeros((2, 3, 2)), "variances": np.ones((2, 3, 2))},
            "single_output=True",
        ),
    ],
)
def test_constructor_validation(kwargs, match):
    params = {
        "means": np.zeros((2, 3, 1)),
        "variances": np.ones((2, 3, 1)),
        "noise_variance": 0.1,
    }
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        NormalMixture(**params)


@pytest.mark.parametrize("method", ["ppf", "isf", "interval"])
@pytest.mark.parametrize("q", [-0.1, 1.5, np.nan, [0.5, 0.5, 2.0]])
def test_probability_outside_unit_interval_raises(method, q):
    dist = NormalMixture(np.zeros((2, 3, 1)), np.ones((2, 3, 1)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        getattr(dist, method)(q)


@pytest.mark.parametrize(
    "method", ["logpdf", "pdf", "cdf", "sf", "logcdf", "logsf", "ppf", "isf", "crps"]
)
@pytest.mark.parametrize("single_output", [True, False])
def test_argument_of_wrong_shape_raises(method, single_output):
    n_outputs = 1 if single_output else 2
    dist = NormalMixture(
        np.zeros((2, 3, n_outputs)),
        np.ones((2, 3, n_outputs)),
        single_output=single_output,
    )
    wrong = np.full((4, 3) if single_output else (3, 3), 0.5)
    with pytest.raises(ValueError, match="cannot be broadcast to the batch shape"):
        getattr(dist, method)(wrong)


def _gaussian_crps(y, mean, scale):
    z = (y - mean) / scale
    return scale * (z * (2 * ndtr(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))


def test_crps_one_component_matches_gaussian_formula(one_component):
    dist, ref = one_component
    y = np.random.RandomState(20).normal(scale=3.0, size=dist.n_points)
    expected = _gaussian_crps(y, ref.mean(), ref.std())
    assert_allclose(dist.crps(y), expected, rtol=1e-12)
    # At the mean, the CRPS is s (sqrt(2) - 1) / sqrt(pi).
    at_mean = ref.std() * (np.sqrt(2) - 1) / np.sqrt(np.pi)
    assert_allclose(dist.crps(ref.mean()), at_mean, rtol=1e-12)
