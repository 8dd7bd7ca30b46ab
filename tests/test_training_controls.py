"""Training controls: row weights, the SWAG learning rate, snapshots, history."""

import math
import pickle

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback
from torch import nn

from sklearn_swag import MultiSWAGRegressor, _base
from sklearn_swag._network.losses import ParticleLoss
from sklearn_swag._posterior.noise import held_out_noise_factor
from sklearn_swag._rows import _merge_identical_rows
from sklearn_swag._training.callbacks import LearningRatePlan


# -- sample_weight --------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [None, 8])
def test_integer_weights_equal_repeated_rows(regression_data, fast_params, batch_size):
    X, y = regression_data
    rng = np.random.RandomState(1)
    weights = rng.randint(0, 4, size=len(X))
    params = {**fast_params, "batch_size": batch_size}
    weighted = MultiSWAGRegressor(**params).fit(X, y, sample_weight=weights)
    order = rng.permutation(int(weights.sum()))  # repeated rows, shuffled
    repeated = MultiSWAGRegressor(**params).fit(
        np.repeat(X, weights, axis=0)[order], np.repeat(y, weights)[order]
    )
    np.testing.assert_array_equal(weighted.swag_mean_, repeated.swag_mean_)
    np.testing.assert_array_equal(weighted.noise_variance_, repeated.noise_variance_)
    np.testing.assert_array_equal(
        weighted.predict(X, return_std=True), repeated.predict(X, return_std=True)
    )


def test_weights_change_the_fit(regression_data, fast_params):
    X, y = regression_data
    weights = np.where(X[:, 0] > 0, 5.0, 1.0)
    plain = MultiSWAGRegressor(**fast_params).fit(X, y)
    weighted = MultiSWAGRegressor(**fast_params).fit(X, y, sample_weight=weights)
    assert not np.allclose(plain.swag_mean_, weighted.swag_mean_)
    # Unit weights are no weights at all.
    ones = MultiSWAGRegressor(**fast_params).fit(X, y, sample_weight=np.ones(len(X)))
    np.testing.assert_array_equal(plain.swag_mean_, ones.swag_mean_)


def test_weights_need_an_elementwise_criterion(regression_data, fast_params):
    class Scalar(nn.Module):
        def forward(self, y_pred, y_true):
            return ((y_pred - y_true) ** 2).mean()

    X, y = regression_data
    reg = MultiSWAGRegressor(**{**fast_params, "criterion": Scalar})
    with pytest.raises(ValueError, match="elementwise"):
        reg.fit(X, y, sample_weight=np.arange(len(X)) % 3)
    reg.fit(X, y, sample_weight=np.full(len(X), 2.0))  # uniform weights are fine


@pytest.mark.parametrize("bad, match", [(-1.0, "(?i)negative"), (0.0, "zero")])
def test_bad_weights_are_refused(regression_data, fast_params, bad, match):
    X, y = regression_data
    weights = np.ones(len(X)) if bad < 0 else np.zeros(len(X))
    weights[0] = bad
    with pytest.raises(ValueError, match=match):
        MultiSWAGRegressor(**fast_params).fit(X, y, sample_weight=weights)


def test_merged_rows_sum_weights_and_drop_zeros():
    X = np.array([[1, 2], [0, 0], [1, 2], [3, 3]], dtype=np.float32)
    y = np.array([[5.0], [1.0], [5.0], [2.0]])
    Xm, ym, wm = _merge_identical_rows(X, y, np.array([1.0, 2.0, 3.0, 0.0]))
    np.testing.assert_array_equal(Xm, [[0, 0], [1, 2]])
    np.testing.assert_array_equal(ym, [[1.0], [5.0]])
    np.testing.assert_array_equal(wm, [2.0, 4.0])
    # Same features, other target: two rows.
    _, ym, _ = _merge_identical_rows(X[:2] * 0, y[:2], np.ones(2))
    assert len(ym) == 2


@pytest.mark.parametrize("criterion", [nn.MSELoss(), nn.L1Loss(reduction="sum")])
def test_weighted_loss_is_the_loss_of_repeated_rows(criterion):
    g = torch.Generator().manual_seed(0)
    y_pred = torch.randn(3, 5, 2, generator=g)
    y_true = torch.randn(5, 2, generator=g)
    counts = torch.tensor([1.0, 3.0, 2.0, 1.0, 4.0])
    loss = ParticleLoss(criterion, weighted=True)
    weighted = loss.per_particle(
        y_pred, torch.cat([y_true, (counts / counts.mean())[:, None]], 1)
    )
    index = torch.repeat_interleave(torch.arange(5), counts.long())
    plain = ParticleLoss(criterion).per_particle(y_pred[:, index], y_true[index])
    if criterion.reduction == "sum":  # weights scaled to mean 1 scale a sum
        weighted = weighted * counts.mean()
    torch.testing.assert_close(weighted, plain)


def test_weighted_noise_factor_equals_repeated_rows():
    rng = np.random.RandomState(0)
    r, v, b = rng.randn(6, 1), rng.rand(6, 1) * 0.1, rng.rand(6, 1) + 0.5
    counts = np.array([1, 3, 2, 1, 4, 2])
    weighted = held_out_noise_factor(r, v, b, counts.astype(float))
    idx = np.repeat(np.arange(6), counts)
    repeated = held_out_noise_factor(r[idx], v[idx], b[idx])
    np.testing.assert_allclose(weighted, repeated, rtol=1e-9)


# -- the SWAG phase -----------------------------------------------------------------
def test_learning_rate_plan_anneals_along_a_cosine():
    plan = LearningRatePlan(lr=0.1, swa_lr=0.02, start_epoch=10, anneal_epochs=4)
    assert [plan.rate(e) for e in (1, 10)] == [0.1, 0.1]
    for k in range(1, 5):
        expected = 0.1 + (0.02 - 0.1) * (1 - math.cos(math.pi * k / 4)) / 2
        assert plan.rate(10 + k) == pytest.approx(expected)
    assert plan.rate(14) == pytest.approx(0.02) and plan.rate(30) == 0.02
    assert LearningRatePlan(0.1, 0.02, 10, 0).rate(11) == 0.02


def test_swa_lr_reaches_the_optimizer_and_the_history(regression_data, fast_params):
    X, y = regression_data
    params = {**fast_params, "pretrain_epochs": 6, "swag_epochs": 6}
    reg = MultiSWAGRegressor(**{**params, "swa_lr": 0.1, "anneal_epochs": 2})
    reg.fit(X, y)
    history = reg.history_
    np.testing.assert_array_equal(history["epoch"], np.arange(1, 13))
    assert history["phase"].shape == history["lr"].shape == (3, 12)
    np.testing.assert_array_equal(
        history["phase"], [["pretrain"] * 6 + ["swag"] * 6] * 3
    )
    np.testing.assert_allclose(history["lr"][:, :6], 0.03)
    np.testing.assert_allclose(history["lr"][:, 6:8], [[0.065, 0.1]] * 3)
    np.testing.assert_allclose(history["lr"][:, 8:], 0.1)
    assert np.isnan(history["valid_loss"]).all()  # no early stopping
    # Without swa_lr the rate stays lr.
    plain = MultiSWAGRegressor(**params).fit(X, y)
    np.testing.assert_allclose(plain.history_["lr"], 0.03)
    # A higher SWAG rate makes the iterates move more: a wider posterior.
    assert (reg.swag_sq_mean_ - reg.swag_mean_**2).mean() > (
        plain.swag_sq_mean_ - plain.swag_mean_**2
    ).mean()


@pytest.mark.parametrize(
    "batch_size, swag_every, snapshots",
    [(None, 1.0, 10), (None, 2.0, 5), (16, 1.0, 10), (16, 0.5, 20), (16, 0.25, 40)],
)
def test_swag_every_sets_the_snapshots(
    regression_data, fast_params, batch_size, swag_every, snapshots
):
    X, y = regression_data  # 64 rows, 58 after the held-out 10%: 4 batches of 16
    params = {**fast_params, "batch_size": batch_size, "rank": 50}
    reg = MultiSWAGRegressor(**params, swag_every=swag_every).fit(X, y)
    np.testing.assert_array_equal(reg.n_snapshots_, snapshots)
    assert reg.swag_deviations_.shape[1] == snapshots


def test_history_records_each_particles_loss(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params).fit(X, y)
    loss = reg.history_["train_loss"]
    assert loss.shape == (3, 70)
    # Full batch: the last epoch's loss is the loss of the last batch.
    np.testing.assert_allclose(loss[:, -1], reg.train_loss_, rtol=1e-6)
    assert np.all(loss[:, -1] < loss[:, 0])


# -- the user's skorch callbacks -----------------------------------------------------
def test_an_lr_scheduler_runs_in_every_group(regression_data, fast_params):
    from skorch.callbacks import LRScheduler
    from torch.optim.lr_scheduler import StepLR

    X, y = regression_data
    scheduler = LRScheduler(policy=StepLR, step_size=20, gamma=0.5)
    params = {**fast_params, "n_models": 2, "n_jobs": 2}
    reg = MultiSWAGRegressor(**params, callbacks=[scheduler]).fit(X, y)
    np.testing.assert_allclose(reg.history_["lr"][1, [0, 19, 20, 40, 69]], [
        0.03, 0.03, 0.015, 0.0075, 0.00375,
    ])  # fmt: skip
    assert len(reg.history_["groups"]) == 2
    assert not hasattr(scheduler, "lr_scheduler_")  # the user's copy untouched
    # Without it: a constant rate, and a different fit.
    plain = MultiSWAGRegressor(**params).fit(X, y)
    assert not np.allclose(plain.swag_mean_, reg.swag_mean_)


def test_a_scoring_callback_records_the_groups_mean_prediction(
    regression_data, fast_params
):
    from skorch.callbacks import EpochScoring

    X, y = regression_data
    scoring = EpochScoring("neg_mean_squared_error", on_train=True, name="mse")
    params = {**fast_params, "validation_fraction": 0.0, "normalize_y": False}
    params["noise"] = "homoscedastic"  # the network's output is the prediction
    reg = MultiSWAGRegressor(**params, callbacks=[("mse", scoring)]).fit(X, y)
    last = reg.history_["groups"][0][-1]
    # The group's prediction at its final weights: the mean over its particles.
    stack = reg.particles_
    with torch.no_grad():
        mean = stack.eval()(torch.as_tensor(X)).mean(0)[:, 0].numpy()
    assert last["mse"] == pytest.approx(-np.mean((mean - y) ** 2), rel=1e-5)


@pytest.mark.parametrize(
    "callbacks, params, error, match",
    [
        ("early", {}, ValueError, "EarlyStopping"),
        ("scheduler", {"swa_lr": 0.1}, ValueError, "swa_lr"),
        ([object()], {}, TypeError, "skorch callbacks"),
    ],
)
def test_callbacks_that_cannot_work_are_refused(
    regression_data, fast_params, callbacks, params, error, match
):
    from skorch.callbacks import EarlyStopping, LRScheduler

    if callbacks == "early":
        callbacks = [EarlyStopping()]
    elif callbacks == "scheduler":
        callbacks = [LRScheduler()]
    X, y = regression_data
    reg = MultiSWAGRegressor(**{**fast_params, **params}, callbacks=callbacks)
    with pytest.raises(error, match=match):
        reg.fit(X, y)


# -- warm_start -----------------------------------------------------------------------
def test_warm_start_grows_the_ensemble_like_a_fresh_fit(regression_data, fast_params):
    X, y = regression_data
    params = {**fast_params, "optimizer__foreach": True}  # same rounding any size
    reg = MultiSWAGRegressor(**{**params, "n_models": 2}, warm_start=True).fit(X, y)
    first = reg.swag_mean_.copy()
    trained = []
    original = _base.fit_group

    def spy(plan, X, y, ids, *args, **kwargs):
        trained.extend(int(i) for i in ids)
        return original(plan, X, y, ids, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sklearn_swag._base.fit_group", spy)
        reg.set_params(n_models=4).fit(X, y)
    assert trained == [2, 3]  # only the new particles trained
    np.testing.assert_array_equal(reg.swag_mean_[:2], first)
    fresh = MultiSWAGRegressor(**{**params, "n_models": 4}).fit(X, y)
    np.testing.assert_array_equal(reg.swag_mean_, fresh.swag_mean_)
    np.testing.assert_array_equal(reg.particle_seeds_, fresh.particle_seeds_)
    np.testing.assert_allclose(reg.predict(X), fresh.predict(X), rtol=1e-12)
    assert reg.history_["train_loss"].shape == (4, 70)


def test_warm_start_without_new_particles_warns(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params, warm_start=True).fit(X, y)
    mean = reg.swag_mean_
    with pytest.warns(UserWarning, match="nothing to train"):
        reg.fit(X, y)
    assert reg.swag_mean_ is mean


@pytest.mark.parametrize(
    "change, match",
    [
        ({"n_models": 2}, "at least"),
        ({"n_models": 4, "rank": 2}, "deviations"),
        ("data", "data differ"),
    ],
)
def test_warm_start_refuses_what_it_cannot_grow(
    regression_data, fast_params, change, match
):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params, warm_start=True).fit(X, y)
    before = reg.predict(X)
    if change == "data":
        reg.set_params(n_models=4)
        y = y + 1.0
    else:
        reg.set_params(**change)
    with pytest.raises(ValueError, match=match):
        reg.fit(X, y)
    np.testing.assert_array_equal(reg.predict(X), before)  # the fit is kept


class _OtherNet(nn.Module):
    """A user's network for the warm-start tests."""

    def __init__(self, hidden=8):
        super().__init__()
        self.inner = nn.Linear(3, hidden)
        self.outer = nn.Linear(hidden, 1)

    def forward(self, X):
        return self.outer(torch.relu(self.inner(X)))


@pytest.mark.parametrize(
    "change, named",
    [
        ({"module__activation": "tanh"}, "module__activation changed"),
        ({"module__hidden_layer_sizes": (7,)}, "module__hidden_layer_sizes"),
        ({"module__dropout": 0.2}, "module__dropout changed"),
        ({"module": _OtherNet}, "but module changed"),
    ],
)
def test_warm_start_refuses_another_network(
    regression_data, fast_params, change, named
):
    # Kept particles of one network and new ones of another would predict
    # with the old network in memory and the new one after saving.
    X, y = regression_data
    reg = MultiSWAGRegressor(**{**fast_params, "n_models": 2}, warm_start=True)
    reg.fit(X, y)
    before, network = reg.predict(X), reg._network
    reg.set_params(n_models=4, **change)
    with pytest.raises(ValueError, match=f"{named}.*warm_start=False"):
        reg.fit(X, y)
    assert reg._network is network and len(reg.swag_mean_) == 2
    np.testing.assert_array_equal(reg.predict(X), before)  # the fit is kept
    loaded = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(loaded.predict(X), before)


def test_warm_start_refuses_a_network_instance_changed_in_place(
    regression_data, user_net_params
):
    X, y = regression_data
    net = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 1))
    params = {**user_net_params, "n_models": 2, "module": net}
    reg = MultiSWAGRegressor(**params, warm_start=True).fit(X, y)
    net[0], net[2] = nn.Linear(3, 5), nn.Linear(5, 1)
    with pytest.raises(ValueError, match="but module changed"):
        reg.set_params(n_models=3).fit(X, y)
    net[1] = nn.Tanh()  # sizes back, another activation
    net[0], net[2] = nn.Linear(3, 6), nn.Linear(6, 1)
    with pytest.raises(ValueError, match="but module changed"):
        reg.fit(X, y)
    net[1] = nn.ReLU()  # the same network again
    assert len(reg.fit(X, y).swag_mean_) == 3


def test_warm_start_accepts_what_leaves_the_network_alone(regression_data, fast_params):
    # The optimizer, criterion and learning rate change how new particles
    # train, not what the kept ones are; a routed default is no change.
    X, y = regression_data
    params = {**fast_params, "n_models": 2, "noise": "homoscedastic"}
    reg = MultiSWAGRegressor(**params, warm_start=True)
    reg.fit(X, y)
    reg.set_params(
        n_models=3,
        lr=0.01,
        optimizer=torch.optim.SGD,
        criterion=nn.MSELoss,
        module__hidden_layer_sizes=[16],
        module__dropout=0.0,
    )
    assert len(reg.fit(X, y).swag_mean_) == 3


def test_without_warm_start_a_refit_starts_over(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params).fit(X, y)
    first = reg.swag_mean_.copy()
    reg.set_params(n_models=4).fit(X, y)
    assert reg.swag_mean_.shape[0] == 4
    np.testing.assert_allclose(reg.swag_mean_[:3], first, atol=1e-5)


# -- a skorch net as the recipe --------------------------------------------------------
class _PerRowLoss(nn.Module):
    """A criterion that forgets to reduce its values."""

    def forward(self, y_pred, y_true):
        return (y_pred - y_true) ** 2


@pytest.mark.parametrize(
    "recipe, message",
    [
        ({"criterion__reduction": "none"}, "criterion__reduction='none'"),
        ({"criterion": nn.MSELoss(reduction="none")}, "its reduction='none'"),
        ({"criterion": _PerRowLoss}, "one scalar loss per network.*shape"),
    ],
)
def test_a_criterion_that_does_not_reduce_is_a_clear_error(
    regression_data, recipe, message
):
    from skorch import NeuralNetRegressor

    from sklearn_swag import MLP

    X, y = regression_data
    net = NeuralNetRegressor(
        MLP, module__n_features=3, module__n_outputs=1, max_epochs=2, **recipe
    )
    reg = MultiSWAGRegressor.from_skorch(net, n_models=2, swag_epochs=1, rank=1)
    with pytest.raises(ValueError, match=message):
        reg.fit(X, y)


def test_from_skorch_takes_the_nets_recipe(regression_data):
    from networks import SeedNet
    from skorch import NeuralNetRegressor
    from skorch.callbacks import LRScheduler
    from torch.optim.lr_scheduler import StepLR

    X, y = regression_data
    net = NeuralNetRegressor(
        SeedNet,
        module__input_dim=3,
        criterion=nn.L1Loss,
        optimizer=torch.optim.Adam,
        optimizer__weight_decay=1e-4,
        lr=0.02,
        max_epochs=30,
        batch_size=16,
        callbacks=[LRScheduler(policy=StepLR, step_size=10, gamma=0.5)],
        iterator_train__shuffle=True,
    )
    reg = MultiSWAGRegressor.from_skorch(net, n_models=2, swag_epochs=10, rank=3)
    params = reg.get_params()
    assert params["module"] is SeedNet and params["module__input_dim"] == 3
    assert params["criterion"] is nn.L1Loss and params["optimizer"] is torch.optim.Adam
    assert params["optimizer__weight_decay"] == 1e-4
    assert (params["lr"], params["batch_size"], params["pretrain_epochs"]) == (
        0.02, 16, 30,
    )  # fmt: skip
    assert params["swag_epochs"] == 10 and params["n_models"] == 2
    reg.fit(X, y)
    np.testing.assert_allclose(reg.history_["lr"][0, [0, 10, 20, 39]], [
        0.02, 0.01, 0.005, 0.0025,
    ])  # fmt: skip
    # An unfitted clone, in a pipeline or a search, is the same recipe.
    from sklearn.base import clone

    assert clone(reg).get_params()["optimizer__weight_decay"] == 1e-4


def test_from_skorch_says_what_it_leaves_out():
    from skorch import NeuralNetRegressor

    net = NeuralNetRegressor(nn.Linear, iterator_train__num_workers=2)
    with pytest.warns(UserWarning, match="iterator_train__num_workers"):
        MultiSWAGRegressor.from_skorch(net)
    with pytest.raises(TypeError, match="skorch net"):
        MultiSWAGRegressor.from_skorch(nn.Linear(1, 1))


def test_a_skorch_net_as_module_points_to_from_skorch(regression_data):
    from skorch import NeuralNetRegressor

    X, y = regression_data
    with pytest.raises(TypeError, match="from_skorch"):
        MultiSWAGRegressor(NeuralNetRegressor(nn.Linear)).fit(X, y)


# -- early stopping of the pretraining -------------------------------------------------
def test_early_stopping_stops_each_particle_at_its_own_best_epoch(regression_data):
    X, y = regression_data
    params = dict(
        n_models=3, rank=3, pretrain_epochs=400, swag_epochs=5, n_samples=3,
        batch_size=16, lr=0.01, validation_fraction=0.25, random_state=0,
        early_stopping=True, n_iter_no_change=5, optimizer__foreach=True,
    )  # fmt: skip
    reg = MultiSWAGRegressor(**params).fit(X, y)
    best = reg.pretrain_epochs_
    assert np.all(best < 400)  # stopped early
    valid = reg.history_["valid_loss"]
    n_pretrain = int((reg.history_["phase"][0] == "pretrain").sum())
    for p in range(3):
        curve = valid[p, : best[p]]
        assert curve[-1] == curve.min()  # the best epoch: the lowest loss so far
    assert best.max() < n_pretrain  # stopped before the pretraining ended
    assert np.isnan(valid[:, n_pretrain:]).all()
    # A particle's stopping does not depend on its group: alone, the same.
    alone = MultiSWAGRegressor(**{**params, "n_models": 3}, n_jobs=3).fit(X, y)
    np.testing.assert_array_equal(alone.pretrain_epochs_, best)
    np.testing.assert_allclose(alone.swag_mean_, reg.swag_mean_, atol=1e-4)


class _EpochWeights(Callback):
    """Every epoch's weights of the group (a list of the class: each group
    trains with a copy of the user's callbacks)."""

    seen: list = []

    def on_epoch_end(self, net, **kwargs):
        _EpochWeights.seen.append(net.flat_weights().clone())


def test_early_stopping_restores_each_particles_best_weights(regression_data):
    from sklearn_swag._training.callbacks import PretrainingMonitor

    X, y = regression_data
    params = dict(
        n_models=3, rank=3, pretrain_epochs=40, swag_epochs=1, n_samples=2,
        batch_size=None, lr=0.05, validation_fraction=0.25, random_state=0,
        early_stopping=True, n_iter_no_change=2, tol=0.0, swa_lr=1e-12,
        anneal_epochs=0, callbacks=[_EpochWeights()],
    )  # fmt: skip
    restored = []
    original = PretrainingMonitor.restore_best

    def spy(self, stack, **kwargs):
        original(self, stack, **kwargs)
        restored.append(stack.flat_weights().clone())

    _EpochWeights.seen = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PretrainingMonitor, "restore_best", spy)
        patch.setattr(PretrainingMonitor, "DROP_SECONDS", math.inf)  # one run
        reg = MultiSWAGRegressor(**params).fit(X, y)
    best = reg.pretrain_epochs_
    assert len(set(best.tolist())) > 1  # the particles stopped apart
    for particle, epoch in enumerate(best):
        expected = _EpochWeights.seen[epoch - 1][particle]
        torch.testing.assert_close(restored[-1][particle], expected, rtol=0, atol=0)
    # The one SWAG epoch at a vanishing rate: its snapshot is the restored weights.
    np.testing.assert_allclose(reg.swag_mean_, restored[-1].double().numpy(), atol=1e-6)


def test_early_stopping_needs_held_out_rows(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(
        **{**fast_params, "validation_fraction": 0.0, "early_stopping": True}
    )
    with pytest.raises(ValueError, match="validation_fraction"):
        reg.fit(X, y)


def test_early_stopping_auto_follows_the_held_out_rows(regression_data, fast_params):
    X, y = regression_data
    params = {**fast_params, "early_stopping": "auto", "pretrain_epochs": 300}
    params["n_iter_no_change"] = 10
    stopped = MultiSWAGRegressor(**params).fit(X, y)
    assert stopped.pretrain_epochs_.max() < 300
    full = MultiSWAGRegressor(**{**params, "validation_fraction": 0.0}).fit(X, y)
    np.testing.assert_array_equal(full.pretrain_epochs_, 300)
    assert np.isnan(full.history_["valid_loss"]).all()


def _early_fit(X, y, drop_seconds, **extra):
    from sklearn_swag._training.callbacks import PretrainingMonitor

    params = dict(
        n_models=4, rank=3, pretrain_epochs=300, swag_epochs=3, n_samples=2,
        batch_size=16, lr=0.01, validation_fraction=0.25, random_state=0,
        early_stopping=True, n_iter_no_change=4, tol=1e-3,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PretrainingMonitor, "DROP_SECONDS", drop_seconds)
        return MultiSWAGRegressor(**{**params, **extra}).fit(X, y)


def test_stopped_particles_are_left_out_of_the_pretraining(regression_data):
    X, y = regression_data
    kept = _early_fit(X, y, drop_seconds=np.inf)  # every particle to the end
    dropped = _early_fit(X, y, drop_seconds=0.0)  # leave out whatever stopped
    stops = dropped.pretrain_epochs_ + 4  # the epoch each particle stopped
    assert len(set(stops)) > 1, "the particles should stop at different epochs"
    # Each particle trained as it would have in the full stack.
    np.testing.assert_array_equal(dropped.pretrain_epochs_, kept.pretrain_epochs_)
    np.testing.assert_allclose(dropped.swag_mean_, kept.swag_mean_, atol=1e-4)
    np.testing.assert_allclose(dropped.predict(X), kept.predict(X), atol=1e-4)
    # ... and was not computed after it stopped: NaN losses until the SWAG epochs.
    pretraining = dropped.history_["phase"] == "pretrain"
    computed = ~np.isnan(dropped.history_["train_loss"]) & pretraining
    np.testing.assert_array_equal(computed.sum(axis=1), stops)
    assert (~np.isnan(kept.history_["train_loss"]) & pretraining).sum() > (
        computed.sum()
    )
    held_out = ~np.isnan(dropped.history_["valid_loss"])
    np.testing.assert_array_equal(held_out.sum(axis=1), stops)


def test_user_callbacks_keep_the_whole_group_training(regression_data):
    from skorch.callbacks import Callback

    class Epochs(Callback):
        def initialize(self):
            self.seen = 0
            return self

        def on_epoch_end(self, net, **kwargs):
            self.seen += 1

    X, y = regression_data
    reg = _early_fit(X, y, drop_seconds=0.0, callbacks=[Epochs()])
    pretraining = reg.history_["phase"] == "pretrain"
    assert not np.isnan(reg.history_["train_loss"][pretraining]).any()
