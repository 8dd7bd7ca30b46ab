"""Saving and loading: plain-data state, skops without trusted code, pickle."""

import copy
import importlib
import pickle
from unittest import mock

import numpy as np
import pytest
import torch
from networks import BatchNormNet
from sklearn.datasets import make_blobs
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from sklearn_swag import MultiSWAGClassifier, MultiSWAGRegressor, ParticleStack
from sklearn_swag._moved import MOVED
from sklearn_swag._persistence import ModuleState, from_plain, to_plain

sio = pytest.importorskip("skops.io")

#: The package's classes a saved fitted estimator holds besides itself.
PACKAGE = {"sklearn_swag._persistence.StackState"}
ADAM = "torch.optim.adam.Adam"


class SmallNet(nn.Module):
    """A user's network class with a routed class argument."""

    def __init__(self, n_in=3, hidden=8, activation=nn.ReLU):
        super().__init__()
        self.inner = nn.Linear(n_in, hidden)
        self.activation = activation()
        self.outer = nn.Linear(hidden, 1)

    def forward(self, X):
        return self.outer(self.activation(self.inner(X)))


def _untrusted(blob):
    return set(sio.get_untrusted_types(data=blob))


def _skops_round_trip(estimator):
    blob = sio.dumps(estimator)
    return sio.loads(blob, trusted=sorted(_untrusted(blob))), _untrusted(blob)


def _holds_torch(value, path="state"):
    """Paths in ``value`` (walked through dicts, lists, tuples) to torch objects."""
    if isinstance(value, (torch.Tensor, nn.Module, torch.Generator)):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _holds_torch(v, f"{path}.{k}")]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _holds_torch(v, f"{path}[{i}]")]
    if hasattr(value, "__dict__") and type(value).__module__.startswith("sklearn_swag"):
        return _holds_torch(vars(value), path)
    return []


def _assert_same_regression(loaded, reg, X):
    np.testing.assert_array_equal(
        loaded.predict(X, return_std=True), reg.predict(X, return_std=True)
    )
    dist, loaded_dist = reg.predict_dist(X), loaded.predict_dist(X)
    np.testing.assert_array_equal(loaded_dist.logpdf(X[:, 0]), dist.logpdf(X[:, 0]))
    np.testing.assert_array_equal(
        loaded.sample_y(X, 5, random_state=1), reg.sample_y(X, 5, random_state=1)
    )


# -- skops -----------------------------------------------------------------------------
def test_default_regressor_round_trips_through_skops(regression_data):
    X, y = regression_data
    reg = MultiSWAGRegressor(
        n_models=2, pretrain_epochs=20, swag_epochs=5, rank=3, random_state=0
    ).fit(X, y)
    loaded, untrusted = _skops_round_trip(reg)
    assert untrusted == PACKAGE | {"sklearn_swag._regressor.MultiSWAGRegressor", ADAM}
    _assert_same_regression(loaded, reg, X)
    assert loaded.particles_.mode == reg.particles_.mode
    np.testing.assert_array_equal(loaded.swag_deviations_, reg.swag_deviations_)


def test_user_module_class_round_trips_through_skops(regression_data, user_net_params):
    X, y = regression_data
    params = user_net_params
    reg = MultiSWAGRegressor(
        module=SmallNet,
        module__hidden=6,
        module__activation=nn.ELU,
        criterion=nn.HuberLoss,
        optimizer=torch.optim.AdamW,
        optimizer__weight_decay=1e-3,
        **params,
    ).fit(X, y)
    loaded, untrusted = _skops_round_trip(reg)
    assert untrusted == PACKAGE | {
        "sklearn_swag._regressor.MultiSWAGRegressor",
        f"{__name__}.SmallNet",
        "torch.nn.modules.activation.ELU",
        "torch.nn.modules.loss.HuberLoss",
        "torch.optim.adamw.AdamW",
    }
    _assert_same_regression(loaded, reg, X)
    assert loaded.get_params()["module__activation"] is nn.ELU


def test_module_instance_round_trips_with_its_own_classes(
    regression_data, user_net_params
):
    X, y = regression_data
    params = user_net_params
    module = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1))
    reg = MultiSWAGRegressor(module=module, **params).fit(X, y)
    loaded, untrusted = _skops_round_trip(reg)
    # The user named these classes by building the instance.
    assert untrusted - PACKAGE == {
        "sklearn_swag._persistence.ModuleState",
        "sklearn_swag._persistence.TensorState",
        "sklearn_swag._regressor.MultiSWAGRegressor",
        "torch.nn.modules.container.Sequential",
        "torch.nn.modules.linear.Linear",
        "torch.nn.modules.activation.Tanh",
        ADAM,
    }
    _assert_same_regression(loaded, reg, X)
    assert isinstance(loaded.module, nn.Sequential)
    assert loaded.module is not module
    pairs = zip(
        loaded.module.state_dict().values(), module.state_dict().values(), strict=True
    )
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_batch_norm_statistics_round_trip(regression_data, user_net_params):
    X, y = regression_data
    params = user_net_params
    reg = MultiSWAGRegressor(module=BatchNormNet, **{**params, "batch_size": 16}).fit(
        X, y
    )
    loaded, _ = _skops_round_trip(reg)
    for a, b in zip(
        loaded.particles_.stacked_buffers(),
        reg.particles_.stacked_buffers(),
        strict=True,
    ):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    _assert_same_regression(loaded, reg, X)


def test_classifier_round_trips_through_skops():
    X, y = make_blobs(90, centers=3, n_features=4, random_state=0)
    clf = MultiSWAGClassifier(
        n_models=2,
        pretrain_epochs=10,
        swag_epochs=3,
        rank=3,
        criterion__weight=torch.tensor([1.0, 2.0, 1.0]),
        random_state=0,
    ).fit(X, np.array(["a", "b", "c"])[y])
    loaded, untrusted = _skops_round_trip(clf)
    assert untrusted == PACKAGE | {
        "sklearn_swag._classifier.MultiSWAGClassifier",
        "sklearn_swag._persistence.TensorState",
        ADAM,
    }
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    np.testing.assert_array_equal(
        loaded.predict_dist(X).mutual_information(),
        clf.predict_dist(X).mutual_information(),
    )
    weight = loaded.get_params()["criterion__weight"]
    assert isinstance(weight, torch.Tensor)
    torch.testing.assert_close(weight, torch.tensor([1.0, 2.0, 1.0]))


def test_skops_loads_nothing_untrusted_by_default(regression_data, fast_params):
    X, y = regression_data
    blob = sio.dumps(MultiSWAGRegressor(**fast_params).fit(X, y))
    with pytest.raises(Exception, match="[Uu]ntrusted"):
        sio.loads(blob)


def test_pipeline_round_trips_through_skops(regression_data, fast_params):
    X, y = regression_data
    pipe = make_pipeline(StandardScaler(), MultiSWAGRegressor(**fast_params))
    pipe.fit(X, y)
    loaded, _ = _skops_round_trip(pipe)
    np.testing.assert_array_equal(
        loaded.predict(X, return_std=True), pipe.predict(X, return_std=True)
    )


def test_unfitted_estimator_round_trips(fast_params):
    reg = MultiSWAGRegressor(module=SmallNet, **fast_params)
    loaded, _ = _skops_round_trip(reg)
    assert loaded.get_params() == reg.get_params()


def test_loaded_model_can_add_particles(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**{**fast_params, "n_models": 2, "warm_start": True})
    reg.fit(X, y)
    loaded, _ = _skops_round_trip(reg)
    loaded.set_params(n_models=3).fit(X, y)
    reg.set_params(n_models=3).fit(X, y)
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))


# -- the saved state -------------------------------------------------------------------
@pytest.mark.parametrize("module", [None, "instance"])
def test_saved_state_holds_no_torch_object(
    regression_data, fast_params, user_net_params, module
):
    X, y = regression_data
    params = dict(fast_params)
    if module == "instance":
        params = user_net_params
        params["module"] = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    reg = MultiSWAGRegressor(**params).fit(X, y)
    assert _holds_torch(reg.__getstate__()) == []


def test_plain_data_conversion_inverts():
    module = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    module[1].running_mean += 1.5
    value = {"net": module, "t": [torch.arange(3), (nn.Parameter(torch.ones(2)),)]}
    plain = to_plain(value)
    assert _holds_torch(plain) == []
    back = from_plain(plain)
    pairs = zip(
        back["net"].state_dict().values(), module.state_dict().values(), strict=True
    )
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert isinstance(back["t"][1][0], nn.Parameter)
    torch.testing.assert_close(back["t"][0], torch.arange(3))
    with torch.no_grad():
        x = torch.randn(4, 2)
        torch.testing.assert_close(back["net"].eval()(x), module.eval()(x))


def test_bfloat16_tensor_is_a_clear_error():
    with pytest.raises(TypeError, match="bfloat16"):
        to_plain(torch.ones(2, dtype=torch.bfloat16))


def test_stack_from_arrays_checks_shapes():
    nets = [nn.Linear(3, 2) for _ in range(4)]
    stack = ParticleStack(nets)
    weights, buffers = stack.arrays()
    rebuilt = ParticleStack.from_arrays(nn.Linear(3, 2), weights, buffers)
    assert rebuilt.n_particles == 4
    x = torch.randn(5, 3)
    torch.testing.assert_close(rebuilt(x), stack(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"shape \(4, 3, 3\)"):
        ParticleStack.from_arrays(
            nn.Linear(3, 2), [np.zeros((4, 3, 3)), weights[1]], buffers
        )
    with pytest.raises(ValueError, match="2 parameters"):
        ParticleStack.from_arrays(nn.Linear(3, 2), weights[:1], buffers)


# -- pickle ----------------------------------------------------------------------------
def test_pickle_round_trip_predicts_identically(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params).fit(X, y)
    loaded = pickle.loads(pickle.dumps(reg))
    _assert_same_regression(loaded, reg, X)


def test_gpu_model_loads_and_predicts_without_cuda(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params).fit(X, y)
    expected = reg.predict(X)
    reg.device = "cuda"  # as if it had been trained on a GPU
    for dumps, loads in [(pickle.dumps, pickle.loads), (sio.dumps, None)]:
        blob = dumps(reg)
        with mock.patch("torch.cuda.is_available", return_value=False):
            with pytest.warns(UserWarning, match="loaded with device='cpu'"):
                if loads is None:
                    loaded = sio.loads(blob, trusted=sorted(_untrusted(blob)))
                else:
                    loaded = loads(blob)
            assert loaded.device == "cpu"
            np.testing.assert_array_equal(loaded.predict(X), expected)


def test_loading_leaves_the_global_random_state_alone(regression_data, fast_params):
    X, y = regression_data
    blob = pickle.dumps(MultiSWAGRegressor(**fast_params).fit(X, y))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    pickle.loads(blob)
    torch.testing.assert_close(torch.rand(3), expected)


def test_pickle_holding_torch_objects_still_loads(regression_data, fast_params):
    # Files saved before the state was plain data held the ParticleStack.
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params).fit(X, y)
    with mock.patch("sklearn_swag._base.saved_state", lambda state: state):
        blob = pickle.dumps(reg)
    assert b"ParticleStack" in blob
    np.testing.assert_array_equal(pickle.loads(blob).predict(X), reg.predict(X))


def test_a_network_changed_since_saving_is_a_clear_error(
    regression_data, user_net_params
):
    X, y = regression_data
    params = user_net_params
    reg = MultiSWAGRegressor(module=SmallNet, module__hidden=6, **params).fit(X, y)
    state = reg.__getstate__()
    state["_network"]["module_kwargs"]["hidden"] = 7  # as if SmallNet had changed
    loaded = MultiSWAGRegressor.__new__(MultiSWAGRegressor)
    with pytest.raises(ValueError, match="do not fit the network that SmallNet"):
        loaded.__setstate__(state)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_former_module_names_still_resolve(old):
    # Files saved before the subpackages name classes by their former modules.
    new = MOVED[old]
    holder = importlib.import_module(f"sklearn_swag.{new[0]}")
    name = next(
        n
        for n, v in vars(holder).items()
        if getattr(v, "__module__", None) == holder.__name__ and callable(v)
    )
    found = pickle.loads(f"csklearn_swag.{old}\n{name}\n.".encode())
    assert found is getattr(holder, name)
    with pytest.raises(AttributeError, match="no attribute"):
        _ = importlib.import_module(f"sklearn_swag.{old}").no_such_name


# -- crafted files ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted_regressor():
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(32, 3)).astype(np.float32)
    y = (X[:, 0] - 2 * X[:, 1]).astype(np.float32)
    return MultiSWAGRegressor(
        n_models=2,
        rank=2,
        pretrain_epochs=5,
        swag_epochs=3,
        module__hidden_layer_sizes=(8,),
        random_state=0,
    ).fit(X, y)


def _crafted_state(reg, edit):
    """``reg``'s saved state, a deep copy, after ``edit(state)``."""
    state = copy.deepcopy(reg.__getstate__())
    edit(state)
    return state


def _load_state(state):
    loaded = MultiSWAGRegressor.__new__(MultiSWAGRegressor)
    loaded.__setstate__(state)
    return loaded


def _crafted_skops(reg, edit):
    """A skops file of ``reg`` whose saved state was changed by ``edit``."""
    state = _crafted_state(reg, edit)
    with mock.patch.object(MultiSWAGRegressor, "__getstate__", lambda self: state):
        return sio.dumps(reg)


def _hidden_sizes(sizes):
    def edit(state):
        state["_network"]["module_kwargs"]["hidden_layer_sizes"] = sizes

    return edit


def test_edited_hidden_sizes_fail_before_the_network_is_allocated(fitted_regressor):
    # A few bytes of the file ask for a network of 2000 x 2000 weights: it
    # must be refused by its sizes, without a real tensor of that size.
    blob = _crafted_skops(fitted_regressor, _hidden_sizes((2000, 2000)))
    allocated = []
    reset = nn.Linear.reset_parameters

    def recording_reset(self):
        allocated.append((self.weight.device.type, self.weight.numel()))
        reset(self)

    with mock.patch.object(nn.Linear, "reset_parameters", recording_reset):
        with pytest.raises(ValueError, match="do not fit the network that MLP"):
            sio.loads(blob, trusted=sorted(_untrusted(blob)))
    assert allocated  # the network was built, on the meta device only
    assert [n for device, n in allocated if device != "meta"] == []


def test_edited_sizes_of_terabytes_are_a_clear_error(fitted_regressor):
    # 3 * 10**12 float32 weights would need 12 TB.
    state = _crafted_state(fitted_regressor, _hidden_sizes((10**12,)))
    with pytest.raises(ValueError, match=r"have shape \(2, 8, 3\), but the network"):
        _load_state(state)


@pytest.mark.parametrize(
    "where", ["module", "module instance", "module__activation instance"]
)
def test_only_a_module_class_builds_the_saved_network(fitted_regressor, where):
    # The optimizer's class is trusted by every file; named as the network's
    # builder it must not be called with arguments from the file.
    def edit(state):
        if where == "module":
            state["_network"]["module"] = torch.optim.Adam
        elif where == "module instance":
            state["_network"]["module"] = ModuleState(torch.optim.Adam, {})
        else:
            state["_routed"] = {
                "module__activation": ModuleState(torch.optim.Adam, {"lr": 1.0})
            }

    blob = _crafted_skops(fitted_regressor, edit)
    assert ADAM in _untrusted(blob)
    with mock.patch.object(torch.optim.Adam, "__init__") as init:
        with pytest.raises(TypeError, match="not a torch.nn.Module"):
            sio.loads(blob, trusted=sorted(_untrusted(blob)))
    init.assert_not_called()


def _set(name, value):
    def edit(state):
        state[name] = value(state[name]) if callable(value) else value

    return edit


def _set_at(name, index, value):
    def edit(state):
        state[name][index] = value

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("swag_sq_mean_", lambda a: a[:, :-1]), r"swag_sq_mean_ must be .* \(2, "),
        (_set("swag_mean_", lambda a: a[:1]), r"swag_mean_ must be an array of shape"),
        (_set("swag_mean_", lambda a: a.astype(np.float32)), "dtype float64"),
        (_set("swag_deviations_", lambda a: a[..., :-1]), "swag_deviations_ must be"),
        (_set("swag_deviations_", lambda a: a.astype(np.float64)), "float32 or"),
        (_set("swag_deviations_", lambda a: np.concatenate([a, a], 1)), "snapshots"),
        (_set_at("swag_mean_", (0, 3), np.nan), "swag_mean_ holds 1 values that are"),
        (_set_at("swag_deviations_", (1, 0, 2), np.inf), "not finite"),
        (_set("swag_sq_mean_", lambda a: a * 0.5), "negative variance"),
        (_set("swag_mean_", lambda a: a + 1.0), "below swag_mean_"),
        (_set("n_snapshots_", lambda a: a[:1]), "n_snapshots_ must hold one row"),
        (_set("particle_seeds_", lambda a: a[:1]), "particle_seeds_ must hold one"),
        (_set("n_params_", 7), "n_params_"),
    ],
)
def test_inconsistent_saved_posterior_is_a_clear_error(fitted_regressor, edit, message):
    state = _crafted_state(fitted_regressor, edit)
    with pytest.raises(ValueError, match=message):
        _load_state(state)


def test_inconsistent_posterior_in_a_skops_file_is_a_clear_error(fitted_regressor):
    blob = _crafted_skops(fitted_regressor, _set("swag_mean_", lambda a: a + 1.0))
    with pytest.raises(ValueError, match="negative variance"):
        sio.loads(blob, trusted=sorted(_untrusted(blob)))


def test_a_bad_saved_mode_names_it_and_the_allowed_ones(fitted_regressor):
    def edit(state):
        state["particles_"].mode = "fast"

    with pytest.raises(ValueError, match=r"mode 'fast'.*\['lowered', 'vmap', 'loop'\]"):
        _load_state(_crafted_state(fitted_regressor, edit))


@pytest.mark.parametrize(
    "params",
    [{}, {"swag_epochs": 0}, {"rank": 0}, {"deviation_dtype": "float16"}],
)
def test_the_saved_posterior_of_a_fit_passes_the_checks(regression_data, params):
    X, y = regression_data
    reg = MultiSWAGRegressor(
        **{"n_models": 2, "rank": 2, "pretrain_epochs": 3, "swag_epochs": 3, **params}
    ).fit(X, y)
    loaded = _load_state(_crafted_state(reg, lambda state: None))
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
