"""MultiSWAGRegressor: behaviour a user relies on."""

import warnings
from unittest import mock

import joblib
import numpy as np
import pytest
import torch
from conftest import MINI_BATCH
from networks import BatchNormNet
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from sklearn_swag import MLP, MultiSWAGRegressor, NormalMixture
from sklearn_swag._rows import _validation_split
from sklearn_swag._sklearn_compat import InvalidParameterError
from sklearn_swag._training.seeds import SPLIT_STREAM, derived_rng, root_seed


class GenericNet(nn.Module):
    """The seed notebook's network: input-16-16-1 with ELU."""

    def __init__(self, input_dim=1, hidden=16):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.out(nn.functional.elu(self.fc2(nn.functional.elu(self.fc1(x)))))


# -- fitting and predicting ------
def test_fit_predict_shapes_and_fitted_attributes(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params, noise="homoscedastic").fit(X, y)
    n_params = 3 * 16 + 16 + 16 + 1
    assert reg.n_params_ == n_params
    assert reg.swag_mean_.shape == (3, n_params)
    assert reg.swag_sq_mean_.shape == (3, n_params)
    assert reg.swag_deviations_.shape == (3, 4, n_params)
    assert reg.swag_mean_.dtype == np.float64
    np.testing.assert_array_equal(reg.n_snapshots_, [10, 10, 10])
    assert reg.noise_variance_.shape == (1,)
    assert reg.n_features_in_ == 3 and reg.n_outputs_ == 1
    mean = reg.predict(X)
    assert mean.shape == (64,) and mean.dtype == np.float64
    mean2, std = reg.predict(X, return_std=True)
    np.testing.assert_allclose(mean, mean2)
    assert std.shape == (64,) and np.all(std > 0)
    assert reg.score(X, y) > 0.9


def test_predict_dist_is_the_mixture(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params, noise="homoscedastic").fit(X, y)
    dist = reg.predict_dist(X[:5])
    assert isinstance(dist, NormalMixture)
    assert dist.n_components == 3
    mean, std = reg.predict(X[:5], return_std=True)
    np.testing.assert_allclose(dist.mean(), mean)
    np.testing.assert_allclose(dist.std(), std)
    np.testing.assert_allclose(dist.epistemic_var() + dist.aleatoric_var(), dist.var())
    np.testing.assert_allclose(dist.aleatoric_var(), reg.noise_variance_[0])
    lo, hi = dist.interval(0.95)
    assert np.all(lo < mean) and np.all(mean < hi)
    assert np.all(np.isfinite(dist.logpdf(y[:5])))
    assert dist.rvs(size=7, random_state=0).shape == (7, 5)
    assert dist.ppf(0.9).shape == (5,)


def test_without_held_out_rows_noise_is_training_mse(regression_data, fast_params):
    X, y = regression_data
    params = {**fast_params, "noise": "homoscedastic", "validation_fraction": 0}
    reg = MultiSWAGRegressor(**params).fit(X, y)
    assert reg.n_train_samples_ == 64
    np.testing.assert_allclose(
        reg.noise_variance_[0], np.mean((reg.predict(X) - y) ** 2), rtol=1e-4
    )


def test_noise_is_the_held_out_likelihood_maximiser(regression_data, fast_params):
    """Recompute the noise from the held-out rows with a brute-force search."""
    X, y = regression_data
    y = 10.0 * y + 3.0  # in target units, through the scaling
    params = {**fast_params, "noise": "homoscedastic", "validation_fraction": 0.25}
    reg = MultiSWAGRegressor(**params).fit(X, y)
    assert reg.n_train_samples_ == 48
    # The same held-out rows as fit: from the split's own stream.
    rng = derived_rng(root_seed(fast_params["random_state"]), SPLIT_STREAM)
    held_out = _validation_split(X, 0.25, rng)[1]
    dist = reg.predict_dist(X[held_out])
    residual, epistemic = y[held_out] - dist.mean(), dist.epistemic_var()
    grid = np.linspace(1e-4, 4.0, 40001) * np.mean(residual**2)
    total = epistemic[None, :] + grid[:, None]
    loglik = -0.5 * np.sum(np.log(total) + residual**2 / total, axis=1)
    best = grid[np.argmax(loglik)]
    np.testing.assert_allclose(reg.noise_variance_[0], best, rtol=1e-3)


def test_components_are_moments_of_the_network_draws(regression_data, fast_params):
    """Recompute one particle's component by hand from its SWAG moments."""
    from sklearn_swag._posterior.draws import draw_particle_weights

    X, y = regression_data
    y = 5.0 * y - 2.0
    reg = MultiSWAGRegressor(**fast_params).fit(X, y)
    p = 1
    theta = draw_particle_weights(
        reg.swag_mean_[p],
        reg.swag_sq_mean_[p],
        reg.swag_deviations_[p],
        reg.n_samples,
        reg.scale,
        reg.particle_seeds_[p, 2],
    )
    outputs = []
    for t in theta:
        net = MLP(3, 1, hidden_layer_sizes=(16,), activation="gelu")
        nn.utils.vector_to_parameters(t.float(), net.parameters())
        with torch.no_grad():
            outputs.append(net(torch.as_tensor(X[:6])).numpy()[:, 0])
    # The networks learned the standardised target.
    outputs = np.array(outputs, dtype=np.float64) * np.std(y) + np.mean(y)
    np.testing.assert_allclose(reg.y_mean_, [np.mean(y)], rtol=1e-6)
    np.testing.assert_allclose(reg.y_scale_, [np.std(y)], rtol=1e-6)
    dist = reg.predict_dist(X[:6])
    np.testing.assert_allclose(dist.means[p, :, 0], outputs.mean(0), atol=1e-4)
    np.testing.assert_allclose(dist.variances[p, :, 0], outputs.var(0), rtol=1e-4)


def test_one_particle_has_finite_positive_std(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**{**fast_params, "n_models": 1}).fit(X, y)
    _, std = reg.predict(X, return_std=True)
    assert np.all(np.isfinite(std)) and np.all(std > 0)
    assert np.all(reg.predict_dist(X).epistemic_var() > 0)


def test_multi_output(regression_data, fast_params):
    X, y = regression_data
    Y = np.column_stack([y, -y, 2 * y])
    reg = MultiSWAGRegressor(**fast_params).fit(X, Y)
    mean, std = reg.predict(X, return_std=True)
    assert mean.shape == std.shape == (64, 3)
    assert reg.noise_variance_.shape == (3,)
    dist = reg.predict_dist(X)
    assert dist.logpdf(Y).shape == (64,)
    assert dist.cdf(Y).shape == (64, 3)


def test_column_target_predicts_one_dimensional(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params).fit(X, y.reshape(-1, 1))
    assert reg.predict(X).shape == (64,)


def test_row_prediction_does_not_depend_on_the_batch(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params).fit(X, y)
    full_mean, full_std = reg.predict(X, return_std=True)
    for i in (0, 17, 63):
        m, s = reg.predict(X[i : i + 1], return_std=True)
        np.testing.assert_allclose(m, full_mean[i : i + 1], rtol=1e-6)
        np.testing.assert_allclose(s, full_std[i : i + 1], rtol=1e-6)


def test_uncertainty_grows_away_from_the_data(toy_1d):
    X, y = toy_1d
    reg = MultiSWAGRegressor(
        n_models=4,
        module__hidden_layer_sizes=(16, 16),
        module__activation="elu",
        pretrain_epochs=300,
        swag_epochs=50,
        lr=0.03,
        batch_size=None,
        early_stopping=False,  # the toy recipe: every epoch at one rate
        swa_lr=None,
        random_state=0,
    ).fit(X, y)
    grid = np.linspace(-2, 2.5, 181).reshape(-1, 1)
    _, std = reg.predict(grid, return_std=True)
    inside = (grid[:, 0] >= 0) & (grid[:, 0] <= 0.5)
    far = (grid[:, 0] <= -1) | (grid[:, 0] >= 1.5)
    assert std[far].mean() > 5 * std[inside].mean()


# -- particles and randomness ------
def test_each_particle_starts_from_its_own_seed(regression_data, fast_params):
    """Particles start apart, each exactly where its own seed puts it."""
    X, y = regression_data
    params = {**fast_params, "pretrain_epochs": 0, "swag_epochs": 1, "lr": 1e-12}
    reg = MultiSWAGRegressor(**params, noise="homoscedastic").fit(X, y)
    for p in range(3):
        torch.manual_seed(int(reg.particle_seeds_[p, 0]))
        init = nn.utils.parameters_to_vector(
            MLP(3, 1, hidden_layer_sizes=(16,)).parameters()
        )
        np.testing.assert_allclose(reg.swag_mean_[p], init.detach().numpy(), atol=1e-6)
    assert not np.allclose(reg.swag_mean_[0], reg.swag_mean_[1])
    assert len({tuple(s) for s in reg.particle_seeds_}) == 3


def test_fit_leaves_global_random_states_alone(regression_data, fast_params):
    X, y = regression_data
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    reg = MultiSWAGRegressor(**{**fast_params, "module__dropout": 0.1}).fit(X, y)
    reg.predict_dist(X).rvs(random_state=0)
    assert torch.equal(torch.get_rng_state(), torch_state)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)


def test_refit_in_the_same_process_is_reproducible(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params)
    first = reg.fit(X, y).predict(X)
    first_mean = reg.swag_mean_.copy()
    second = reg.fit(X, y).predict(X)
    np.testing.assert_array_equal(first_mean, reg.swag_mean_)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(reg.n_snapshots_, [10, 10, 10])


def test_result_does_not_depend_on_n_jobs(regression_data, fast_params):
    X, y = regression_data
    params = {**fast_params, "n_models": 4, "batch_size": 16}
    one = MultiSWAGRegressor(**params, n_jobs=1).fit(X, y)
    two = MultiSWAGRegressor(**params, n_jobs=2).fit(X, y)
    np.testing.assert_allclose(one.swag_mean_, two.swag_mean_, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        one.swag_deviations_, two.swag_deviations_, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        one.predict(X, return_std=True), two.predict(X, return_std=True), rtol=1e-5
    )


def test_dropout_of_the_default_network_does_not_depend_on_grouping(
    regression_data, fast_params
):
    import joblib

    X, y = regression_data
    params = {**fast_params, "n_models": 4, "batch_size": 16, "module__dropout": 0.2}
    one = MultiSWAGRegressor(**params, n_jobs=1).fit(X, y)
    with joblib.parallel_backend("threading"):
        two = MultiSWAGRegressor(**params, n_jobs=2).fit(X, y)
    np.testing.assert_allclose(one.swag_mean_, two.swag_mean_, rtol=1e-6, atol=1e-7)
    assert one.particles_.dropout_generators is None  # nothing unpicklable kept


def test_a_list_of_devices(regression_data, fast_params):
    X, y = regression_data
    params = {**fast_params, "noise": "homoscedastic"}
    one = MultiSWAGRegressor(**params).fit(X, y)
    listed = MultiSWAGRegressor(**params, device=["cpu", "cpu"], n_jobs=2)
    listed.fit(X, y)
    np.testing.assert_allclose(listed.swag_mean_, one.swag_mean_, rtol=1e-6, atol=1e-6)


def test_different_random_states_differ(regression_data, fast_params):
    X, y = regression_data
    a = MultiSWAGRegressor(**fast_params).fit(X, y)
    b = MultiSWAGRegressor(**{**fast_params, "random_state": 1}).fit(X, y)
    assert not np.allclose(a.swag_mean_, b.swag_mean_)


# -- SWAG variants ------
def test_swag_epochs_zero_is_a_deep_ensemble(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**{**fast_params, "swag_epochs": 0}).fit(X, y)
    assert reg.swag_deviations_.shape[1] == 0
    np.testing.assert_array_equal(reg.n_snapshots_, 0)
    np.testing.assert_allclose(
        reg.swag_mean_, reg.particles_.flat_weights().double().numpy()
    )
    dist = reg.predict_dist(X)
    np.testing.assert_array_equal(dist.variances, 0.0)
    assert np.all(dist.std() > 0)


def test_rank_zero_is_diagonal_and_rank_caps_at_snapshots(regression_data, fast_params):
    X, y = regression_data
    diag = MultiSWAGRegressor(**{**fast_params, "rank": 0}).fit(X, y)
    assert diag.swag_deviations_.shape == (3, 0, diag.n_params_)
    assert np.all(np.isfinite(diag.predict(X)))
    big = MultiSWAGRegressor(**{**fast_params, "rank": 50}).fit(X, y)
    assert big.swag_deviations_.shape[1] == 10


def test_scale_zero_predicts_with_the_swa_means(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**{**fast_params, "scale": 0.0}).fit(X, y)
    np.testing.assert_array_equal(reg.predict_dist(X).variances, 0.0)


# -- modules ------
def test_user_module_class_with_routed_parameters(toy_1d):
    X, y = toy_1d
    reg = MultiSWAGRegressor(
        GenericNet,
        module__input_dim=1,
        n_models=3,
        pretrain_epochs=100,
        swag_epochs=10,
        rank=5,
        batch_size=None,
        lr=0.03,
        random_state=0,
    ).fit(X, y)
    assert reg.particles_.mode == "lowered"
    assert reg.n_params_ == 16 + 16 + 16 * 16 + 16 + 16 + 1
    assert reg.predict(X).shape == (40,)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_user_module_instance_is_reinitialised_per_particle(toy_1d, user_net_params):
    X, y = toy_1d
    params = user_net_params
    params.update(pretrain_epochs=0, swag_epochs=1, lr=1e-12)
    template = GenericNet()
    before = nn.utils.parameters_to_vector(template.parameters()).detach().clone()
    reg = MultiSWAGRegressor(template, **params).fit(X, y)
    assert not np.allclose(reg.swag_mean_[0], reg.swag_mean_[1])
    assert not np.allclose(reg.swag_mean_[0], before.numpy())
    # the user's instance itself is not modified
    after = nn.utils.parameters_to_vector(template.parameters()).detach()
    assert torch.equal(before, after)


class UnbatchableNet(BatchNormNet):
    """BatchNorm behind control flow on a value: neither rewritten nor vmapped."""

    def forward(self, x):
        out = self.body(x)
        return out if bool(out.abs().sum() < 1e9) else -out


def test_unbatchable_module_falls_back_with_a_warning(regression_data, user_net_params):
    X, y = regression_data
    params = user_net_params
    with pytest.warns(UserWarning, match="one after another"):  # even from workers
        reg = MultiSWAGRegressor(UnbatchableNet, **params, n_jobs=2).fit(X, y)
    assert reg.particles_.mode == "loop"
    assert reg.score(X, y) > 0.5
    # Its BatchNorm statistics are refreshed for every draw all the same.
    assert reg.bn_update_X_.shape == (reg.n_train_samples_, 3)


def test_batch_norm_network_trains_batched(regression_data, user_net_params):
    X, y = regression_data
    params = user_net_params
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg = MultiSWAGRegressor(BatchNormNet, **params).fit(X, y)
    assert reg.particles_.mode == "lowered"
    assert reg.score(X, y) > 0.5


def test_a_last_batch_of_one_row_trains_batch_norm(regression_data, user_net_params):
    X, y = regression_data
    params = user_net_params
    params.update(batch_size=21, validation_fraction=0.0)  # 64 = 3 * 21 + 1
    reg = MultiSWAGRegressor(BatchNormNet, **params).fit(X, y)
    assert np.all(np.isfinite(reg.predict(X)))


def test_batch_norm_needs_two_training_rows(user_net_params):
    params = user_net_params
    with pytest.raises(ValueError, match="at least 2 training rows"):
        MultiSWAGRegressor(BatchNormNet, **params, validation_fraction=0).fit(
            np.ones((1, 3)), [1.0]
        )


def _refreshed_reference(reg, X, rows=None):
    """SWA means with torch's ``update_bn`` over ``rows`` (by default the stored
    ones) in one batch."""
    rows = torch.as_tensor(reg.bn_update_X_ if rows is None else rows)
    outs = []
    for mean in reg.swag_mean_:
        net = BatchNormNet()
        nn.utils.vector_to_parameters(
            torch.as_tensor(mean, dtype=torch.float32), net.parameters()
        )
        with torch.no_grad():
            torch.optim.swa_utils.update_bn([rows], net)
            outs.append(net.eval()(torch.as_tensor(X)).numpy()[:, 0])
    return np.mean(outs, axis=0) * reg.y_scale_[0] + reg.y_mean_[0]


def test_scale_zero_with_batch_norm_predicts_with_refreshed_statistics(
    regression_data, user_net_params
):
    X, y = regression_data
    params = user_net_params
    params.update(scale=0.0, validation_fraction=0.0, bn_update_rows=None)
    reg = MultiSWAGRegressor(BatchNormNet, **{**params, "batch_size": 16}).fit(X, y)
    # every training row, in a shuffled order
    assert sorted(map(bytes, reg.bn_update_X_)) == sorted(map(bytes, X))
    expected = _refreshed_reference(reg, X)
    np.testing.assert_allclose(reg.predict(X), expected, rtol=1e-4, atol=1e-4)
    # Without the refresh: the running statistics of training, which differ.
    stale = clone(reg).set_params(bn_update_rows=0).fit(X, y)
    assert stale.bn_update_X_ is None
    assert np.abs(stale.predict(X) - expected).max() > 1e-3


def test_default_refresh_is_exact_on_every_training_row(
    regression_data, user_net_params
):
    """The default: statistics over all training rows, whatever the batches."""
    X, y = regression_data
    X, y = np.concatenate([X, X[:10]]), np.concatenate([y, y[:10]])  # duplicates
    params = {**user_net_params, "scale": 0.0, "validation_fraction": 0.0}
    params["batch_size"] = 7
    reg = MultiSWAGRegressor(BatchNormNet, **params).fit(X, y)
    assert reg.bn_update_rows is None
    # the rows as given, a duplicate as many times as it was given
    assert sorted(map(bytes, reg.bn_update_X_)) == sorted(map(bytes, X))
    np.testing.assert_allclose(
        reg.predict(X), _refreshed_reference(reg, X, rows=X), rtol=1e-4, atol=1e-4
    )
    # Averaging the statistics of the training batches instead moves them.
    batched = clone(reg).fit(X, y)
    batched._bn_batch_size = 7
    assert np.abs(batched.predict(X) - reg.predict(X)).max() > 1e-4


def test_networks_without_batch_norm_store_no_rows(regression_data, fast_params):
    X, y = regression_data
    assert MultiSWAGRegressor(**fast_params).fit(X, y).bn_update_X_ is None


def test_bn_update_rows_bounds_the_stored_rows(regression_data, user_net_params):
    X, y = regression_data
    params = user_net_params
    reg = MultiSWAGRegressor(BatchNormNet, **params, bn_update_rows=10).fit(X, y)
    assert reg.bn_update_X_.shape == (10, 3)
    train_rows = {row.tobytes() for row in X.astype(np.float32)}
    assert all(row.tobytes() in train_rows for row in reg.bn_update_X_)


# -- parameters ------
def test_routed_parameters_in_get_set_params_and_clone(fast_params):
    reg = MultiSWAGRegressor(**fast_params, optimizer__weight_decay=1e-4)
    params = reg.get_params()
    assert params["module__hidden_layer_sizes"] == (16,)
    assert params["optimizer__weight_decay"] == 1e-4
    assert reg.module__hidden_layer_sizes == (16,)
    reg.set_params(module__hidden_layer_sizes=(8, 8), rank=2)
    assert reg.get_params()["module__hidden_layer_sizes"] == (8, 8)
    assert reg.rank == 2
    cloned = clone(reg)
    assert cloned.get_params()["module__hidden_layer_sizes"] == (8, 8)
    assert cloned.get_params()["optimizer__weight_decay"] == 1e-4


def test_routed_parameters_reach_the_parts(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(
        **{**fast_params, "module__hidden_layer_sizes": (5, 7)},
        criterion=nn.HuberLoss,
        criterion__delta=0.5,
        optimizer=torch.optim.SGD,
        optimizer__momentum=0.9,
        iterator_train__shuffle=False,
    ).fit(X, y)
    assert reg.n_params_ == 3 * 5 + 5 + 5 * 7 + 7 + 7 + 1


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"modul__hidden": 3}, InvalidParameterError, "modul__hidden"),
        ({"optimizer_lr": 3}, InvalidParameterError, "did you mean optimizer__lr"),
        ({"module__nope": 3}, TypeError, "module__nope"),
        ({"iterator_train__num_workers": 2}, ValueError, "num_workers"),
        ({"optimizer__bogus": 2}, TypeError, "optimizer__bogus"),
        ({"criterion__bogus": 2}, TypeError, "criterion__bogus"),
        (
            {"criterion": nn.MSELoss(), "criterion__reduction": "sum"},
            ValueError,
            "criterion__",
        ),
        ({"n_models": 0}, InvalidParameterError, "n_models"),
        ({"lr": -1.0}, InvalidParameterError, "lr"),
        ({"scale": -0.5}, InvalidParameterError, "scale"),
        ({"pretrain_epochs": 0, "swag_epochs": 0}, ValueError, "at least 1"),
        ({"device": "gpu0"}, ValueError, "not a torch device"),
        ({"device": "tpu"}, ValueError, "not a torch device"),
        ({"device": ["cpu", "gpu0"]}, ValueError, "not a torch device"),
        ({"device": []}, ValueError, "at least one device"),
    ],
)
def test_invalid_parameters_raise_clear_errors(regression_data, params, error, match):
    X, y = regression_data
    with pytest.raises(error, match=match):
        MultiSWAGRegressor(**{"pretrain_epochs": 2, "swag_epochs": 1, **params}).fit(
            X, y
        )


def test_module_instance_with_routed_parameters_is_refused(regression_data):
    X, y = regression_data
    with pytest.raises(ValueError, match="module__"):
        MultiSWAGRegressor(MLP(3, 1), module__hidden_layer_sizes=(3,)).fit(X, y)


def test_verbose_shows_progress(regression_data, fast_params, capsys, monkeypatch):
    # every update
    monkeypatch.setattr("sklearn_swag._training.callbacks._BAR_SECONDS", 0)
    X, y = regression_data
    MultiSWAGRegressor(**{**fast_params, "verbose": 1}).fit(X, y)
    err = capsys.readouterr().err
    assert "particles 0-2" in err
    assert "70/70" in err  # one bar over both phases
    assert "phase=pretrain" in err and "phase=swag" in err


def test_progress_bars_of_groups_with_early_stopping(
    regression_data, capsys, monkeypatch
):
    # every update
    monkeypatch.setattr("sklearn_swag._training.callbacks._BAR_SECONDS", 0)
    X, y = regression_data
    with joblib.parallel_backend("threading"):  # bars written in this process
        MultiSWAGRegressor(
            n_models=3,
            n_jobs=2,
            pretrain_epochs=400,
            swag_epochs=5,
            early_stopping=True,
            n_iter_no_change=3,
            verbose=1,
            random_state=0,
        ).fit(X, y)
    err = capsys.readouterr().err
    assert "particles 0-1" in err and "particle 2" in err
    assert "stopped=" in err
    # Early stopping ends the pretraining sooner: the bars end below 405.
    assert "/405 " in err and "405/405" not in err


def test_cuda_requested_without_cuda(regression_data):
    X, y = regression_data
    with mock.patch("torch.cuda.is_available", return_value=False):
        with pytest.raises(ValueError, match="CUDA is not available"):
            MultiSWAGRegressor(device="cuda", pretrain_epochs=1).fit(X, y)


# -- bad data ------
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda X, y: (np.where(X > 0.9, np.nan, X), y), "NaN"),
        (lambda X, y: (np.where(X > 0.9, np.inf, X), y), "infinity"),
        (lambda X, y: (X.astype(str).astype(object) + "a", y), "convert"),
        (lambda X, y: (X[:10], y), "inconsistent numbers of samples"),
        (lambda X, y: (X[:0], y[:0]), "0 sample"),
        (lambda X, y: (X, np.where(y > 1, np.nan, y)), "NaN"),
    ],
)
def test_bad_training_data(regression_data, make, match):
    X, y = make(*regression_data)
    with pytest.raises(ValueError, match=match):
        MultiSWAGRegressor(pretrain_epochs=2, swag_epochs=1).fit(X, y)


def test_predict_checks_its_input(regression_data, fast_params):
    X, y = regression_data
    with pytest.raises(NotFittedError):
        MultiSWAGRegressor().predict(X)
    reg = MultiSWAGRegressor(**fast_params).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        reg.predict(X[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        reg.predict_dist(np.full_like(X, np.nan))


def test_divergence_names_the_particle_and_keeps_the_old_model(
    regression_data, fast_params
):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params, normalize_y=False).fit(X, y)
    before = reg.predict(X)
    mean_before = reg.swag_mean_.copy()
    huge = np.full_like(y, 3e38)
    with pytest.raises(FloatingPointError, match=r"particle\(s\) \[0, 1, 2\]"):
        reg.fit(X, huge)
    np.testing.assert_array_equal(reg.predict(X), before)
    np.testing.assert_array_equal(reg.swag_mean_, mean_before)
    with pytest.raises(ValueError):
        reg.fit(X[:, :2], np.full(64, np.nan))
    assert reg.n_features_in_ == 3
    np.testing.assert_array_equal(reg.predict(X), before)


# -- scikit-learn workflows ------
def test_pipeline_with_return_std(regression_data, fast_params):
    X, y = regression_data
    pipe = make_pipeline(StandardScaler(), MultiSWAGRegressor(**fast_params))
    pipe.fit(X * 100, y)
    mean, std = pipe.predict(X * 100, return_std=True)
    assert mean.shape == std.shape == (64,)
    assert np.all(std > 0)


def test_cross_val_score(regression_data, fast_params):
    X, y = regression_data
    scores = cross_val_score(MultiSWAGRegressor(**fast_params), X, y, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.5)


def test_grid_search_over_rank_and_n_models(regression_data, fast_params):
    X, y = regression_data
    search = GridSearchCV(
        MultiSWAGRegressor(**fast_params),
        {"rank": [0, 4], "n_models": [1, 2], "module__hidden_layer_sizes": [(8,)]},
        cv=2,
        n_jobs=2,
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_estimator_.n_models in (1, 2)
    assert search.best_estimator_.predict(X).shape == (64,)


def test_float16_deviations_halve_storage_and_keep_predictions(
    regression_data, fast_params
):
    X, y = regression_data
    full = MultiSWAGRegressor(**fast_params).fit(X, y)
    half = MultiSWAGRegressor(**fast_params, deviation_dtype="float16").fit(X, y)
    assert half.swag_deviations_.dtype == np.float16
    assert half.swag_deviations_.nbytes * 2 == full.swag_deviations_.nbytes
    np.testing.assert_allclose(
        half.swag_deviations_, full.swag_deviations_, rtol=2e-3, atol=1e-6
    )
    np.testing.assert_allclose(half.predict(X), full.predict(X), rtol=1e-3, atol=1e-4)


class ConvNet(nn.Module):
    """Tabular rows as a one-channel sequence: Conv1d, LayerNorm, a residual."""

    def __init__(self, n_features=3):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, kernel_size=2, padding=1)
        self.norm = nn.LayerNorm(4 * (n_features + 1))
        self.hidden = nn.Linear(4 * (n_features + 1), 4 * (n_features + 1))
        self.out = nn.Linear(4 * (n_features + 1), 1)

    def forward(self, x):
        h = torch.relu(self.conv(x.unsqueeze(1))).flatten(1)
        h = self.norm(h)
        return self.out(h + torch.tanh(self.hidden(h)))


class EmbeddingNet(nn.Module):
    """A categorical first column through an embedding, the rest as numbers."""

    def __init__(self, n_categories=4):
        super().__init__()
        self.embed = nn.Embedding(n_categories, 3)
        self.body = nn.Sequential(
            nn.Linear(5, 8), nn.BatchNorm1d(8), nn.SiLU(), nn.Dropout(0.1),
            nn.Linear(8, 1),
        )  # fmt: skip

    def forward(self, x):
        codes = x[:, 0].long()
        return self.body(torch.cat([self.embed(codes), x[:, 1:]], dim=1))


@pytest.mark.parametrize("module", [ConvNet, EmbeddingNet])
def test_user_networks_of_common_layers_train_batched(regression_data, module):
    X, y = regression_data
    X = X.copy()
    X[:, 0] = np.floor((X[:, 0] + 1) * 2)  # 0..3: a category for EmbeddingNet
    params = dict(MINI_BATCH, n_models=3, pretrain_epochs=30, n_samples=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        reg = MultiSWAGRegressor(module, **params).fit(X, y)
    assert reg.particles_.mode == "lowered"
    mean, std = reg.predict(X, return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)


class BatchStatisticsNet(nn.Module):
    """BatchNorm without running statistics: normalises by every batch's own."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(3, 8), nn.BatchNorm1d(8, track_running_stats=False),
            nn.ReLU(), nn.Linear(8, 1),
        )  # fmt: skip

    def forward(self, x):
        return self.body(x)


def test_a_last_batch_of_one_row_trains_batch_statistics(
    regression_data, user_net_params
):
    X, y = regression_data
    params = user_net_params
    params.update(batch_size=21, validation_fraction=0.0)  # 64 = 3 * 21 + 1
    reg = MultiSWAGRegressor(BatchStatisticsNet, **params).fit(X, y)
    assert reg.bn_update_X_ is None  # no running statistics to recompute
    assert np.all(np.isfinite(reg.predict(X[:8])))


def test_prediction_in_blocks_of_rows_is_the_same(monkeypatch, regression_data):
    # Rows are predicted in blocks (and evaluated in smaller blocks inside),
    # so that memory does not grow with the rows; the result must not change
    # (up to float32 products of other shapes rounding differently).
    X, y = regression_data
    reg = MultiSWAGRegressor(
        n_models=3,
        rank=3,
        pretrain_epochs=20,
        swag_epochs=5,
        n_samples=4,
        random_state=0,
    ).fit(X, y)
    whole_mean, whole_std = reg.predict(X, return_std=True)
    whole_dist = reg.predict_dist(X)
    monkeypatch.setattr("sklearn_swag._base._PREDICT_FLOATS", 3 * 5)  # 5 rows
    monkeypatch.setattr("sklearn_swag._posterior.draws._OUTPUT_FLOATS", 7)
    mean, std = reg.predict(X, return_std=True)
    np.testing.assert_allclose(mean, whole_mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(std, whole_std, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(reg.predict(X), whole_mean, rtol=1e-5, atol=1e-7)
    dist = reg.predict_dist(X)
    np.testing.assert_allclose(dist.means, whole_dist.means, rtol=1e-5, atol=1e-7)


def test_inputs_that_overflow_the_network_are_named_as_the_cause(regression_data):
    reg = MultiSWAGRegressor(**{**MINI_BATCH, "n_models": 2}).fit(*regression_data)
    corners = np.array(np.meshgrid(*[[-3e38, 3e38]] * 3)).reshape(3, -1).T
    with pytest.raises(ValueError, match="outputs overflowed.*Scale the inputs"):
        reg.predict(corners.astype(np.float32), return_std=True)
