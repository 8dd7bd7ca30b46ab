"""Observation noise, target scaling and function draws.

References: torch's own normal log-density, brute-force likelihood searches,
and the exact invariances of a model trained on standardised targets.
"""

import math
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.base import clone
from torch import nn

from sklearn_swag import MLP, MultiSWAGRegressor
from sklearn_swag._network.losses import ParticleLoss
from sklearn_swag._posterior.noise import (
    MIN_VARIANCE,
    GaussianNLL,
    fitted_noise_factor,
    held_out_noise_factor,
    split_mean_variance,
)


# -- the pieces ------------------------------------------------------------------
def test_split_mean_variance_is_softplus_of_the_second_half():
    out = torch.tensor([[1.0, -2.0, 0.0, 3.0]])
    mean, var = split_mean_variance(out)
    torch.testing.assert_close(mean, torch.tensor([[1.0, -2.0]]))
    expected = torch.log1p(torch.exp(torch.tensor([[0.0, 3.0]]))) + MIN_VARIANCE
    torch.testing.assert_close(var, expected)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gaussian_nll_is_the_normal_log_density(reduction):
    g = torch.Generator().manual_seed(0)
    out = torch.randn(3, 7, 4, generator=g)  # (particles, rows, 2 * 2 targets)
    target = torch.randn(7, 2, generator=g).expand(3, 7, 2)
    mean, var = split_mean_variance(out)
    expected = -torch.distributions.Normal(mean, var.sqrt()).log_prob(target)
    loss = GaussianNLL(reduction=reduction, mean_fit="nll")(out, target)
    if reduction == "mean":
        expected = expected.mean()
    elif reduction == "sum":
        expected = expected.sum()
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_nll_is_the_closed_form_with_its_gradient(reduction, dtype):
    g = torch.Generator().manual_seed(1)
    out = torch.randn(3, 6, 4, generator=g, dtype=dtype)
    out[0, :, 2:] = -200.0  # softplus underflows: variances at MIN_VARIANCE
    target = torch.randn(6, 2, generator=g, dtype=dtype).expand(3, 6, 2)
    out_closed = out.clone().requires_grad_()
    mean, var = split_mean_variance(out_closed)
    closed = 0.5 * (torch.log(var) + (target - mean) ** 2 / var + math.log(2 * math.pi))
    closed = {"mean": closed.mean, "sum": closed.sum}.get(reduction, closed.clone)()
    out_loss = out.clone().requires_grad_()
    loss = GaussianNLL(reduction=reduction, mean_fit="nll")(out_loss, target)
    tol = {"rtol": 1e-14, "atol": 1e-14} if dtype == torch.float64 else {}
    torch.testing.assert_close(loss, closed, **tol)
    closed.sum().backward()
    loss.sum().backward()
    torch.testing.assert_close(out_loss.grad, out_closed.grad, **tol)


def _closed_form_nll(mean, var, target):
    return 0.5 * (torch.log(var) + (target - mean) ** 2 / var + math.log(2 * math.pi))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_faithful_loss_fits_means_by_squared_error(reduction):
    # mean_fit="mse" (the default): value NLL + half the squared error; the
    # means get the squared error's gradient alone, the variances the NLL's.
    g = torch.Generator().manual_seed(2)
    out = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    target = torch.randn(6, 2, generator=g, dtype=torch.float64).expand(3, 6, 2)
    out_loss = out.clone().requires_grad_()
    loss = GaussianNLL(reduction=reduction)(out_loss, target)
    mean, var = split_mean_variance(out)
    value = _closed_form_nll(mean, var, target) + 0.5 * (target - mean) ** 2
    value = {"mean": value.mean, "sum": value.sum}.get(reduction, value.clone)()
    torch.testing.assert_close(loss, value)
    loss.sum().backward()
    n = mean.numel() if reduction == "mean" else 1
    torch.testing.assert_close(out_loss.grad[..., :2], (mean - target) / n)
    # The variance columns: d/draw of the NLL, softplus' = sigmoid.
    r2 = (target - mean) ** 2
    grad_var = 0.5 * (1 / var - r2 / var**2) * torch.sigmoid(out[..., 2:])
    torch.testing.assert_close(out_loss.grad[..., 2:], grad_var / n)


@pytest.mark.parametrize("weighted", [False, True])
def test_early_stopping_watches_the_means_of_the_faithful_loss(weighted):
    # mean_fit="mse": the held-out score is the means' squared error (the
    # variances do not count); the other fits watch the loss itself.
    g = torch.Generator().manual_seed(4)
    out = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    target = torch.randn(5, 2, generator=g, dtype=torch.float64)
    w = torch.rand(5, 1, generator=g, dtype=torch.float64)
    mean, var = split_mean_variance(out)

    def reduce(values):  # weighted mean per particle of (P, 5, 2) values
        return (
            (values * w).sum(dim=(1, 2)) / (w.sum() * 2)
            if weighted
            else (values.mean(dim=(1, 2)))
        )

    y = torch.cat([target, w], dim=1) if weighted else target
    for mean_fit, expected in [
        ("mse", reduce((target - mean) ** 2)),
        ("nll", reduce(_closed_form_nll(mean, var, target))),
    ]:
        loss = ParticleLoss(GaussianNLL(mean_fit=mean_fit), weighted=weighted)
        torch.testing.assert_close(loss.per_particle(out, y, stopping=True), expected)
    # Without ``stopping``, the training loss.
    loss = ParticleLoss(GaussianNLL(), weighted=weighted)
    faithful = _closed_form_nll(mean, var, target) + 0.5 * (target - mean) ** 2
    torch.testing.assert_close(loss.per_particle(out, y), reduce(faithful))


def test_beta_nll_weights_each_term_by_its_variance():
    g = torch.Generator().manual_seed(3)
    out = torch.randn(2, 5, 2, generator=g, dtype=torch.float64)
    target = torch.randn(5, 1, generator=g, dtype=torch.float64).expand(2, 5, 1)
    out_loss = out.clone().requires_grad_()
    loss = GaussianNLL(reduction="none", mean_fit="beta", beta=0.5)(out_loss, target)
    mean, var = split_mean_variance(out)
    torch.testing.assert_close(loss, _closed_form_nll(mean, var, target) * var**0.5)
    loss.sum().backward()
    # Seitzer et al. (2022): the mean's gradient is the NLL's times var**beta.
    grad_mean = (mean - target) / var * var**0.5
    torch.testing.assert_close(out_loss.grad[..., :1], grad_mean)


def test_gaussian_nll_checks_its_input():
    with pytest.raises(ValueError, match="2 columns for 1 target"):
        GaussianNLL()(torch.zeros(5, 3), torch.zeros(5, 1))
    with pytest.raises(ValueError, match="reduction"):
        GaussianNLL(reduction="max")
    with pytest.raises(ValueError, match="mean_fit"):
        GaussianNLL(mean_fit="median")
    with pytest.raises(ValueError, match="beta"):
        GaussianNLL(mean_fit="beta", beta=2.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_held_out_factor_maximises_the_likelihood(seed):
    rng = np.random.RandomState(seed)
    n = 200
    base = rng.uniform(0.2, 3.0, size=(n, 2))
    epistemic = rng.uniform(0.0, 0.5, size=(n, 2))
    residual = rng.normal(size=(n, 2)) * np.sqrt(epistemic + 1.7 * base)
    factor = held_out_noise_factor(residual, epistemic, base)
    grid = np.linspace(1e-3, 6.0, 60001)
    for j in range(2):
        total = epistemic[None, :, j] + grid[:, None] * base[None, :, j]
        loglik = -0.5 * np.sum(np.log(total) + residual[None, :, j] ** 2 / total, 1)
        assert factor[j] == pytest.approx(grid[np.argmax(loglik)], abs=2e-4)
    assert 1.0 < factor[0] < 2.5  # near the 1.7 the residuals were drawn with


def _bisection_factor(r2, v, b, w):
    """The maximiser by plain bisection on the derivative, to 1e-13."""
    floor = 1e-12 * max(float(np.mean(r2)), 1e-100)

    def slope(c):
        total = np.maximum(v + c * b, floor)
        return np.sum(w * b * (r2 - total) / total**2)

    low, high = 0.0, float(np.max(np.where(w > 0, r2 / b, 0.0)))
    if slope(low) <= 0:
        return 0.0
    while high - low > 1e-13 * high:
        mid = 0.5 * (low + high)
        low, high = (mid, high) if slope(mid) > 0 else (low, mid)
    return 0.5 * (low + high)


@pytest.mark.parametrize("seed", range(5))
def test_held_out_factor_is_the_root_bisection_finds(seed):
    rng = np.random.RandomState(seed)
    n = 100
    base = rng.uniform(0.05, 5.0, size=(n, 2))
    epistemic = rng.uniform(0.0, 2.0, size=(n, 2)) * (seed % 2)  # 0 for even seeds
    residual = rng.normal(size=(n, 2)) * np.sqrt(epistemic + 3.0 * base)
    weights = rng.randint(0, 3, size=n).astype(float)
    factor = held_out_noise_factor(residual, epistemic, base, weights)
    for j in range(2):
        expected = _bisection_factor(
            residual[:, j] ** 2, epistemic[:, j], base[:, j], weights
        )
        assert factor[j] == pytest.approx(expected, rel=1e-10)


def test_fitted_noise_factor_on_training_and_held_out_rows():
    rng = np.random.RandomState(3)
    means = rng.normal(size=(3, 40, 2))
    variances = rng.uniform(0.0, 0.2, size=(3, 40, 2))
    noise = rng.uniform(0.5, 2.0, size=(3, 40, 2))
    y = rng.normal(size=(40, 2)) * 2.0
    w = rng.uniform(0.5, 2.0, size=40)
    residual = y - means.mean(axis=0)
    # Training rows, homoscedastic: the weighted mean squared residual.
    factor, base = fitted_noise_factor(y, means, variances, None, w, held_out=False)
    assert_allclose(factor, np.average(residual**2, axis=0, weights=w), rtol=1e-14)
    assert_allclose(base, 1.0)
    # Training rows, heteroscedastic: the predicted noise as it is.
    factor, base = fitted_noise_factor(y, means, variances, noise, w, held_out=False)
    assert_allclose(factor, 1.0)
    assert_allclose(base, noise.mean(axis=0), rtol=1e-14)
    # Held-out rows: the maximum-likelihood factor of the moment-matched rows.
    epistemic = variances.mean(axis=0) + means.var(axis=0)
    factor, _ = fitted_noise_factor(y, means, variances, noise, w, held_out=True)
    expected = held_out_noise_factor(residual, epistemic, noise.mean(axis=0), w)
    assert_allclose(factor, np.maximum(expected, 1e-6), rtol=1e-14)


def test_held_out_factor_is_zero_when_epistemic_covers_the_residuals():
    residual = np.array([[0.1], [-0.1]])
    epistemic = np.array([[1.0], [1.0]])
    assert held_out_noise_factor(residual, epistemic, np.ones((2, 1)))[0] == 0.0


# -- target scaling ----------------------------------------------------------------
def test_standardised_targets_make_predictions_affine_equivariant(
    regression_data, fast_params
):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params).fit(X, y)
    shifted = MultiSWAGRegressor(**fast_params).fit(X, 250.0 * y + 1000.0)
    mean, std = reg.predict(X, return_std=True)
    mean2, std2 = shifted.predict(X, return_std=True)
    np.testing.assert_allclose(mean2, 250.0 * mean + 1000.0, rtol=1e-5)
    np.testing.assert_allclose(std2, 250.0 * std, rtol=1e-4)
    np.testing.assert_allclose(
        shifted.noise_variance_, 250.0**2 * reg.noise_variance_, rtol=1e-5
    )
    draws = reg.sample_y(X[:5], 3)
    np.testing.assert_allclose(
        shifted.sample_y(X[:5], 3), 250.0 * draws + 1000.0, rtol=1e-5
    )


def test_normalize_y_auto_leaves_a_user_module_alone(regression_data, user_net_params):
    X, y = regression_data
    params = user_net_params
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    reg = MultiSWAGRegressor(net, **params).fit(X, y + 5.0)
    np.testing.assert_array_equal(reg.y_mean_, [0.0])
    np.testing.assert_array_equal(reg.y_scale_, [1.0])
    forced = MultiSWAGRegressor(net, **params, normalize_y=True).fit(X, y + 5.0)
    np.testing.assert_allclose(forced.y_mean_, [np.mean(y + 5.0)], rtol=1e-6)


def test_constant_target_is_centred_not_divided(regression_data, fast_params):
    X, _ = regression_data
    reg = MultiSWAGRegressor(**fast_params).fit(X, np.full(len(X), 3.5))
    np.testing.assert_array_equal(reg.y_scale_, [1.0])
    np.testing.assert_allclose(reg.predict(X), 3.5, atol=0.05)


def test_validation_fraction_leaving_no_training_row_is_an_error(fast_params):
    reg = MultiSWAGRegressor(**fast_params, validation_fraction=0.5)
    with pytest.raises(ValueError, match="leaves no row to train on"):
        reg.fit(np.zeros((1, 2)), np.zeros(1))


# -- heteroscedastic noise ----------------------------------------------------------
@pytest.fixture
def growing_noise():
    """Noise standard deviation 0.02 at x = 0, growing to 0.6 at x = 1."""
    rng = np.random.RandomState(0)
    X = rng.uniform(0, 1, size=(400, 1)).astype(np.float32)
    sd = 0.02 + 0.58 * X[:, 0]
    return X, (np.sin(3 * X[:, 0]) + sd * rng.standard_normal(400)), sd


def test_heteroscedastic_noise_follows_the_data(growing_noise):
    X, y, sd = growing_noise
    reg = MultiSWAGRegressor(
        n_models=3,
        noise="heteroscedastic",
        pretrain_epochs=150,
        swag_epochs=30,
        lr=0.01,
        batch_size=100,
        n_samples=5,
        random_state=0,
    ).fit(X, y)
    assert reg.noise_calibration_.shape == (1,) and reg.noise_calibration_[0] > 0
    X_query = np.array([[0.1], [0.5], [0.9]], dtype=np.float32)
    dist = reg.predict_dist(X_query)
    noise_sd = np.sqrt(dist.aleatoric_var())
    assert noise_sd[0] < noise_sd[1] < noise_sd[2]
    np.testing.assert_allclose(noise_sd, 0.02 + 0.58 * X_query[:, 0], rtol=0.5)
    # The mixture uses each particle's own per-point noise.
    assert dist.noise_variance.shape == (3, 3, 1)
    np.testing.assert_allclose(
        dist.var(), dist.epistemic_var() + dist.aleatoric_var(), rtol=1e-10
    )


def test_heteroscedastic_multi_output_and_user_module(
    regression_data, fast_params, user_net_params
):
    X, y = regression_data
    Y = np.column_stack([y, 3 * y])
    reg = MultiSWAGRegressor(**fast_params, noise="heteroscedastic").fit(X, Y)
    mean, std = reg.predict(X, return_std=True)
    assert mean.shape == std.shape == (64, 2) and np.all(std > 0)
    assert reg.sample_y(X, 2).shape == (64, 2, 2)
    params = user_net_params
    one_column = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    with pytest.raises(ValueError, match="a mean and a variance column per target"):
        MultiSWAGRegressor(one_column, **params, noise="heteroscedastic").fit(X, y)
    two_columns = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="one column per target"):
        MultiSWAGRegressor(two_columns, **params).fit(X, y)
    fitted = MultiSWAGRegressor(two_columns, **params, noise="heteroscedastic")
    assert fitted.fit(X, y).predict(X).shape == (64,)
    # Refitting with homoscedastic noise leaves no calibration behind.
    assert hasattr(reg, "noise_calibration_")
    reg.set_params(noise="homoscedastic").fit(X, Y)
    assert not hasattr(reg, "noise_calibration_")


def test_auto_noise_is_heteroscedastic_for_the_built_in_network_alone(
    regression_data, fast_params, user_net_params
):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params).fit(X, y)
    assert reg.noise == "auto" and hasattr(reg, "noise_calibration_")
    # Two 3-16-1 MLPs: the means' and the variances'.
    assert reg.n_params_ == 2 * (3 * 16 + 16 + 16 + 1)
    # A user's network keeps its width, a user's loss its meaning: homoscedastic.
    one_column = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    user = MultiSWAGRegressor(one_column, **user_net_params).fit(X, y)
    assert not hasattr(user, "noise_calibration_")
    mse = MultiSWAGRegressor(**fast_params, criterion=nn.MSELoss).fit(X, y)
    assert not hasattr(mse, "noise_calibration_")
    assert mse.n_params_ == 3 * 16 + 16 + 16 + 1
    # A warm start that changes what "auto" chooses is refused, saying so.
    reg.set_params(warm_start=True, n_models=4, criterion=nn.MSELoss)
    with pytest.raises(ValueError, match=r"noise model \(heteroscedastic -> homo"):
        reg.fit(X, y)


# -- function draws --------------------------------------------------------------------
def test_sample_y_at_scale_zero_is_each_particles_swa_network(
    regression_data, fast_params
):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params, scale=0.0).fit(X, 2.0 * y + 1.0)
    draws = reg.sample_y(X[:7], n_samples=reg.n_models)
    assert draws.shape == (7, reg.n_models)
    for p in range(reg.n_models):
        net = MLP(3, 1, hidden_layer_sizes=(16,), activation="gelu")
        nn.utils.vector_to_parameters(
            torch.as_tensor(reg.swag_mean_[p], dtype=torch.float32), net.parameters()
        )
        with torch.no_grad():
            out = net(torch.as_tensor(X[:7])).numpy()[:, 0]
        expected = out * reg.y_scale_[0] + reg.y_mean_[0]
        np.testing.assert_allclose(draws[:, p], expected, rtol=1e-5, atol=1e-5)


def test_sample_y_follows_the_gaussian_process_convention(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params).fit(X, y)
    a = reg.sample_y(X[:4], n_samples=6)
    np.testing.assert_array_equal(a, reg.sample_y(X[:4], n_samples=6))
    assert not np.allclose(a, reg.sample_y(X[:4], n_samples=6, random_state=1))
    # Draws differ within a particle (j and j + n_models share one).
    assert not np.allclose(a[:, 0], a[:, 3])
    many = reg.sample_y(X[:4], n_samples=3000, random_state=0)
    # The mixture from 1000 draws per particle (prediction uses the n_samples
    # of the fit, so refit with more).
    dist = clone(reg).set_params(n_samples=1000).fit(X, y).predict_dist(X[:4])
    np.testing.assert_allclose(many.mean(axis=1), dist.mean(), atol=0.05)
    epistemic_sd = np.sqrt(dist.epistemic_var())
    np.testing.assert_allclose(many.std(axis=1), epistemic_sd, rtol=0.2, atol=1e-3)
    with pytest.raises(ValueError, match="n_samples"):
        reg.sample_y(X, n_samples=0)


def test_sample_y_of_a_deep_ensemble_is_its_networks(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**{**fast_params, "swag_epochs": 0}).fit(X, y)
    draws = reg.sample_y(X[:5], n_samples=2 * reg.n_models)
    np.testing.assert_allclose(draws[:, : reg.n_models], draws[:, reg.n_models :])
    dist = reg.predict_dist(X[:5])
    np.testing.assert_allclose(
        draws[:, : reg.n_models], dist.means[:, :, 0].T, rtol=1e-5, atol=1e-6
    )
    assert math.isfinite(float(draws.sum()))


def test_held_out_factor_without_epistemic_variance_is_closed_form():
    """With v = 0 the maximiser is mean(r^2 / b), computed without warnings."""
    rng = np.random.RandomState(0)
    residual = rng.normal(size=(50, 1))
    base = rng.uniform(0.5, 2.0, size=(50, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        factor = held_out_noise_factor(residual, np.zeros((50, 1)), base)
    assert factor[0] == pytest.approx(np.mean(residual[:, 0] ** 2 / base[:, 0]))


def test_one_network_without_swag_fits_without_warnings(regression_data, fast_params):
    X, y = regression_data
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        reg = MultiSWAGRegressor(**{**fast_params, "n_models": 1, "swag_epochs": 0})
        reg.fit(X, y)
    assert reg.noise_variance_[0] > 0


def test_sample_y_in_row_chunks_matches_one_chunk(
    regression_data, fast_params, monkeypatch
):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params).fit(X, y)
    whole = reg.sample_y(X, n_samples=5)
    monkeypatch.setattr("sklearn_swag._posterior.draws._ROW_CHUNK", 7)
    # float32 rounding of the matmuls: row blocks of another size
    np.testing.assert_allclose(
        reg.sample_y(X, n_samples=5), whole, rtol=1e-5, atol=1e-6
    )
