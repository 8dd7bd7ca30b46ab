"""Inputs of any shape: images (N, C, H, W) and sequences (N, T, F)."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from conftest import FAST_USER_NET
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from torch import nn

from sklearn_swag import MultiSWAGClassifier, MultiSWAGRegressor
from sklearn_swag._network.build import build_stack
from sklearn_swag._rows import _merge_identical_rows, _validation_split

#: Few particles and epochs of mini-batches: a tiny CNN trains in a second.
ND = {
    **FAST_USER_NET,
    "n_models": 2,
    "rank": 2,
    "pretrain_epochs": 8,
    "swag_epochs": 3,
    "n_samples": 2,
    "batch_size": 16,
    "lr": 0.01,
}


class TinyCNN(nn.Module):
    """Conv2d - BatchNorm2d - ReLU - MaxPool2d - Flatten - Linear on (N, 1, 4, 4)."""

    def __init__(self, n_outputs=1, side=4):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1),
            nn.BatchNorm2d(3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(3 * (side // 2) ** 2, n_outputs),
        )

    def forward(self, x):
        return self.body(x)


class PooledCNN(nn.Module):
    """Conv2d - ReLU - AdaptiveAvgPool2d - Flatten - Linear."""

    def __init__(self, n_outputs=1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, n_outputs),
        )

    def forward(self, x):
        return self.body(x)


class SeqNet(nn.Module):
    """A Conv1d over the time axis of (N, T, F) sequences."""

    def __init__(self, n_outputs=1, n_channels=2):
        super().__init__()
        self.conv = nn.Conv1d(n_channels, 4, 3, padding=1)
        self.out = nn.Linear(4, n_outputs)

    def forward(self, x):
        h = torch.relu(self.conv(x.transpose(1, 2)))
        return self.out(h.mean(dim=2))


def _images(n=48, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-1, 1, size=(n, 1, 4, 4)).astype(np.float32)
    y = X[:, 0, :2, :2].mean(axis=(1, 2)) - X[:, 0, 2:, 2:].mean(axis=(1, 2))
    return X, y.astype(np.float32)


def _sequences(n=48, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, 6, 2)).astype(np.float32)
    return X, X[:, :, 0].mean(axis=1)


def _fitted(kind, shape):
    """A fitted estimator of ``kind`` on images (4-D) or sequences (3-D)."""
    X, y = _images() if shape == 4 else _sequences()
    module = TinyCNN if shape == 4 else SeqNet
    if kind == "classifier":
        y = (y > np.median(y)).astype(int)
        est = MultiSWAGClassifier(module=module, module__n_outputs=2, **ND)
    else:
        est = MultiSWAGRegressor(module=module, **ND)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback of the batched rewrite
        est.fit(X, y)
    return est, X, y


@pytest.mark.parametrize("shape", [4, 3])
def test_regressor_methods_take_nd_inputs(shape):
    reg, X, y = _fitted("regressor", shape)
    assert reg.input_shape_ == X.shape[1:]
    assert reg.n_features_in_ == int(np.prod(X.shape[1:]))
    assert reg.particles_.mode == "lowered"
    assert reg.particles_.sample_ndim == shape - 1
    mean, std = reg.predict(X[:5], return_std=True)
    assert mean.shape == std.shape == (5,) and np.all(std > 0)
    assert reg.predict_dist(X[:5]).mean().shape == (5,)
    assert reg.sample_y(X[:5], n_samples=3).shape == (5, 3)
    assert np.isfinite(reg.score(X, y))
    if reg.particles_.has_batch_norm:
        assert reg.bn_update_X_.shape[1:] == X.shape[1:]


@pytest.mark.parametrize("shape", [4, 3])
def test_classifier_methods_take_nd_inputs(shape):
    clf, X, y = _fitted("classifier", shape)
    assert clf.input_shape_ == X.shape[1:]
    assert clf.particles_.mode == "lowered"
    proba = clf.predict_proba(X[:5])
    assert proba.shape == (5, 2)
    np.testing.assert_allclose(clf.predict_log_proba(X[:5]), np.log(proba), rtol=1e-6)
    assert set(clf.predict(X)) <= set(clf.classes_)
    assert clf.predict_dist(X[:5]).proba().shape == (5, 2)
    assert clf.sample_proba(X[:5], n_samples=3).shape == (5, 2, 3)
    assert 0 <= clf.score(X, y) <= 1


def test_prediction_in_blocks_of_nd_rows(monkeypatch):
    reg, X, _ = _fitted("regressor", 4)
    whole = reg.predict(X, return_std=True)
    monkeypatch.setattr("sklearn_swag._base._PREDICT_FLOATS", 10)  # 5 rows a block
    blocked = reg.predict(X, return_std=True)
    for a, b in zip(whole, blocked, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_warm_start_adds_particles_on_nd_inputs():
    reg, X, y = _fitted("regressor", 4)
    first = reg.predict(X[:5])
    reg.set_params(warm_start=True, n_models=3).fit(X, y)
    assert len(reg.swag_mean_) == 3
    with pytest.raises(ValueError, match="data differ"):
        reg.set_params(n_models=4).fit(X[:, :, ::-1].copy(), y)
    assert reg.predict(X[:5]).shape == first.shape


def test_pickle_round_trip_of_an_image_model():
    clf, X, _ = _fitted("classifier", 4)
    loaded = pickle.loads(pickle.dumps(clf))
    assert loaded.input_shape_ == clf.input_shape_
    assert loaded.particles_.sample_ndim == 3
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X))


def test_loading_checks_the_saved_input_shape():
    reg, _, _ = _fitted("regressor", 4)
    state = reg.__getstate__()
    state["input_shape_"] = (1, 4)
    with pytest.raises(ValueError, match="input_shape_"):
        MultiSWAGRegressor.__new__(MultiSWAGRegressor).__setstate__(state)


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_another_sample_shape_at_prediction_is_refused(kind):
    est, X, _ = _fitted(kind, 4)
    with pytest.raises(ValueError, match=r"samples of shape \(1, 3, 4\).*\(1, 4, 4\)"):
        est.predict(X[:, :, :3])
    with pytest.raises(ValueError, match=r"shape \(48, 16\).*\(1, 4, 4\)"):
        est.predict(X.reshape(len(X), -1))
    with pytest.raises(ValueError, match="Expected 2D array"):
        est.predict(X[:, 0, 0, 0])


def test_two_d_model_refuses_nd_inputs_naming_both_shapes(regression_data):
    X, y = regression_data
    reg = MultiSWAGRegressor(module=nn.Linear, module__in_features=3,
                             module__out_features=1, **ND).fit(X, y)  # fmt: skip
    assert reg.input_shape_ == (3,) and reg.n_features_in_ == 3
    with pytest.raises(ValueError, match=r"samples of shape \(3, 1\).*\(3,\)"):
        reg.predict(X[:, :, None])
    with pytest.raises(ValueError, match="X has 2 features, but MultiSWAGRegressor"):
        reg.predict(X[:, :2])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_nan_and_inf_in_nd_inputs_are_refused(kind, bad):
    est, X, y = _fitted(kind, 4)
    X = X.copy()
    X[3, 0, 2, 1] = bad
    with pytest.raises(ValueError, match="Input X contains"):
        est.predict(X)
    with pytest.raises(ValueError, match="Input X contains"):
        type(est)(**est.get_params()).fit(X, y)


def test_nd_inputs_beyond_float32_are_refused():
    X, y = _images()
    X = X.astype(np.float64)
    X[0, 0, 1, 2] = 1e39
    with pytest.raises(ValueError, match=r"float32 range.*\(0, 1, 2\)"):
        MultiSWAGRegressor(module=TinyCNN, **ND).fit(X, y)


def test_nd_inputs_need_consistent_lengths_and_rows():
    X, y = _images()
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MultiSWAGRegressor(module=TinyCNN, **ND).fit(X, y[:-1])
    with pytest.raises(ValueError, match="sample_weight"):
        MultiSWAGRegressor(module=TinyCNN, **ND).fit(X, y, sample_weight=y[:-1])
    with pytest.raises(ValueError, match="0 sample"):
        MultiSWAGRegressor(module=TinyCNN, **ND).fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="no values per sample"):
        MultiSWAGRegressor(module=TinyCNN, **ND).fit(X[:, :, :0], y)


@pytest.mark.parametrize("est", [MultiSWAGRegressor, MultiSWAGClassifier])
def test_builtin_network_with_nd_inputs_is_a_clear_error(est):
    X, y = _images()
    y = (y > 0).astype(int)
    with pytest.raises(
        ValueError, match=r"module=None.*CNN.*flatten.*\(n_samples, 16\)"
    ):
        est(**{**ND, "module__hidden_layer_sizes": (4,)}).fit(X, y)


@pytest.mark.parametrize("est", [MultiSWAGRegressor, MultiSWAGClassifier])
def test_one_d_X_is_refused(est):
    with pytest.raises(ValueError, match="Expected 2D array"):
        est(**ND).fit(np.arange(10.0), np.arange(10) % 2)


def test_identical_images_are_merged_and_kept_on_one_side():
    X, _ = _images(12)
    X = np.concatenate([X, X[:4]])
    y = np.zeros((16, 1))
    merged, _, weights = _merge_identical_rows(X, y, np.ones(16))
    assert merged.shape == (12, 1, 4, 4) and weights.sum() == 16
    assert sorted(map(bytes, merged)) == sorted(map(bytes, X[:12]))
    train, held = _validation_split(X, 0.25, np.random.default_rng(0))
    assert not {X[i].tobytes() for i in train} & {X[i].tobytes() for i in held}


@pytest.mark.parametrize("module", [TinyCNN, PooledCNN])
def test_small_cnns_are_lowered_without_fallback(module):
    torch.manual_seed(0)
    modules = [module() for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stack = build_stack(modules, torch.randn(5, 1, 4, 4))
    assert stack.mode == "lowered" and stack.sample_ndim == 3
    x = torch.randn(3, 7, 1, 4, 4)  # each particle's own rows
    out = stack.train()(x)
    assert out.shape == (3, 7, 1)


def test_sequence_net_is_lowered_without_fallback():
    modules = [SeqNet() for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stack = build_stack(modules, torch.randn(5, 6, 2))
    assert stack.mode == "lowered" and stack.sample_ndim == 2
    # (P, N, T, F): per-particle rows, not shared (N, T, F) read as (P, N, F).
    assert stack.eval()(torch.randn(2, 5, 6, 2)).shape == (2, 5, 1)
    assert stack(torch.randn(5, 6, 2)).shape == (2, 5, 1)


def test_pipeline_reshapes_flat_pixels_into_images():
    X, y = _images()
    to_images = FunctionTransformer(lambda Z: np.asarray(Z).reshape(-1, 1, 4, 4))
    pipe = make_pipeline(to_images, MultiSWAGRegressor(module=TinyCNN, **ND))
    pipe.fit(X.reshape(len(X), -1), y)
    assert pipe.predict(X.reshape(len(X), -1)[:5]).shape == (5,)
    assert pipe[-1].input_shape_ == (1, 4, 4)


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * 16, 10),
        )

    def forward(self, x):
        return self.body(x)


def test_digits_as_images_with_a_tiny_cnn():
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    y = digits.target
    clf = MultiSWAGClassifier(
        module=DigitsCNN,
        n_models=2,
        rank=2,
        pretrain_epochs=6,
        swag_epochs=2,
        batch_size=64,
        lr=0.01,
        n_samples=2,
        early_stopping=False,
        random_state=0,
    ).fit(X[:1200], y[:1200])
    assert clf.score(X[1200:], y[1200:]) > 0.85


@pytest.mark.parametrize("mode", ["lowered", "vmap", "loop"])
def test_every_evaluation_mode_takes_shared_and_own_nd_rows(mode):
    from sklearn_swag import ParticleStack

    torch.manual_seed(0)
    modules = [PooledCNN() for _ in range(2)]
    stack = ParticleStack(modules, mode=mode, sample_ndim=3).eval()
    shared, own = torch.randn(5, 1, 4, 4), torch.randn(2, 5, 1, 4, 4)
    with torch.no_grad():
        np.testing.assert_allclose(
            stack(shared), torch.stack([m(shared) for m in modules]), atol=1e-6
        )
        np.testing.assert_allclose(
            stack(own),
            torch.stack([m(x) for m, x in zip(modules, own, strict=True)]),
            atol=1e-6,
        )


def test_early_stopping_weights_and_stratified_split_on_images():
    X, y = _images(60)
    y = (y > np.median(y)).astype(int)
    weights = np.where(np.arange(60) % 3 == 0, 2.0, 1.0)
    clf = MultiSWAGClassifier(
        module=TinyCNN,
        module__n_outputs=2,
        **{**ND, "early_stopping": True, "validation_fraction": 0.2},
    ).fit(X, y, sample_weight=weights)
    assert clf.n_train_samples_ < 60
    assert clf.predict_proba(X).shape == (60, 2)
