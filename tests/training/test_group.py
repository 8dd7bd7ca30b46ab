"""Training one group of particles."""

from unittest import mock

import numpy as np
import torch
from skorch.callbacks import Callback


def test_a_tiny_network_trains_on_one_thread(regression_data, fast_params):
    from sklearn_swag import MultiSWAGRegressor
    from sklearn_swag._training.callbacks import SWAGCollector

    seen = []
    original = SWAGCollector.on_epoch_end

    def record(self, net, **kwargs):
        seen.append(torch.get_num_threads())
        original(self, net, **kwargs)

    X, y = regression_data
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with mock.patch.object(SWAGCollector, "on_epoch_end", record):
            MultiSWAGRegressor(**fast_params).fit(X, y)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(threads)
    assert set(seen) == {1}


def test_read_only_rows_train_without_a_warning_or_a_copy():
    # A process-based joblib backend hands large arrays over as read-only
    # memory maps.
    import warnings

    from sklearn_swag._training.group import _read_only_tensor

    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    values.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = _read_only_tensor(values, torch.device("cpu"))
    assert tensor.data_ptr() == values.ctypes.data


# -- every way a run of a group can end ------------------------------------------------


def _breast_cancer():
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y


def _always_drop(monkeypatch):
    # Stopped particles are left out whenever a quarter of them have stopped,
    # however fast an epoch is (the default asks for a measurable saving).
    from sklearn_swag._training.callbacks import PretrainingMonitor

    monkeypatch.setattr(PretrainingMonitor, "DROP_SECONDS", -1.0)


def _check_fitted(est, X, n_models):
    assert est.pretrain_epochs_.shape == (n_models,)
    assert np.isfinite(est.train_loss_).all()
    assert (np.abs(est.swag_mean_).sum(axis=1) > 0).all()
    out = est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)
    assert np.isfinite(out).all()


def test_particles_stopping_at_the_last_pretraining_epoch():
    # A few particles stop at the last epoch of the budget: no epoch is left
    # for the others to go on with, so the pretraining ends for all of them.
    from sklearn_swag import MultiSWAGClassifier

    X, y = _breast_cancer()
    clf = MultiSWAGClassifier(
        n_models=4, pretrain_epochs=10, swag_epochs=3, n_iter_no_change=5,
        tol=0.01, batch_size=128, rank=3, random_state=28,
    ).fit(X, y)  # fmt: skip
    _check_fitted(clf, X, 4)
    assert clf.pretrain_epochs_.max() <= 10


def test_stopping_at_the_last_epoch_when_stopped_particles_always_drop(monkeypatch):
    from sklearn_swag import MultiSWAGClassifier

    _always_drop(monkeypatch)
    X, y = _breast_cancer()
    for seed in range(4):
        clf = MultiSWAGClassifier(
            n_models=4, pretrain_epochs=6, swag_epochs=2, n_iter_no_change=2,
            tol=0.01, batch_size=128, rank=2, random_state=seed,
        ).fit(X, y)  # fmt: skip
        _check_fitted(clf, X, 4)
        ends = clf.history_["phase"]
        assert (ends == "pretrain").sum(axis=1).max() <= 6


def test_some_particles_stop_and_the_others_go_on(regression_data, monkeypatch):
    from sklearn_swag import MultiSWAGRegressor

    _always_drop(monkeypatch)
    X, y = regression_data
    reg = MultiSWAGRegressor(
        n_models=4, pretrain_epochs=60, swag_epochs=3, n_iter_no_change=3,
        tol=1e-3, batch_size=16, rank=2, n_samples=2, random_state=1,
    ).fit(X, y)  # fmt: skip
    assert len(set(reg.pretrain_epochs_.tolist())) > 1  # they stopped apart
    _check_fitted(reg, X, 4)


def test_every_particle_stops_in_the_first_epochs(regression_data, monkeypatch):
    from sklearn_swag import MultiSWAGRegressor

    _always_drop(monkeypatch)
    X, y = regression_data
    # Only the first epoch counts as an improvement: each particle stops at the
    # second.
    reg = MultiSWAGRegressor(
        n_models=3, pretrain_epochs=20, swag_epochs=2, n_iter_no_change=1,
        tol=1e9, batch_size=16, rank=2, n_samples=2, random_state=0,
    ).fit(X, y)  # fmt: skip
    assert (reg.pretrain_epochs_ <= 2).all()
    assert (reg.history_["phase"] == "pretrain").sum(axis=1).max() == 2
    _check_fitted(reg, X, 3)


class EndsRun(Callback):
    """A user's callback that ends the run of one phase before its first batch."""

    def __init__(self, phase="swag"):
        self.phase = phase

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        pretraining = any(name == "early_stopping" for name, _ in net.callbacks_)
        if pretraining == (self.phase == "pretrain"):
            net.max_epochs = 0


def test_a_user_callback_ending_the_swag_run_before_a_batch(regression_data):
    # No snapshot was taken: each particle's posterior is its final weights,
    # as in a deep ensemble, instead of the zero weights of an empty average.
    from sklearn_swag import MultiSWAGRegressor

    X, y = regression_data
    reg = MultiSWAGRegressor(
        n_models=2, pretrain_epochs=5, swag_epochs=3, early_stopping=True,
        batch_size=16, rank=2, n_samples=2, random_state=0,
        callbacks=[EndsRun("swag")],
    ).fit(X, y)  # fmt: skip
    assert (reg.n_snapshots_ == 0).all()
    assert (np.abs(reg.swag_mean_).sum(axis=1) > 0).all()
    assert np.isfinite(reg.train_loss_).all()  # the pretraining's last losses
    mean, std = reg.predict(X, return_std=True)
    assert np.isfinite(mean).all() and np.isfinite(std).all()


def test_a_user_callback_ending_the_pretraining_before_a_batch(regression_data):
    from sklearn_swag import MultiSWAGClassifier

    X, y = regression_data
    labels = (y > np.median(y)).astype(int)
    clf = MultiSWAGClassifier(
        n_models=2, pretrain_epochs=5, swag_epochs=2, early_stopping=True,
        batch_size=16, rank=2, n_samples=2, random_state=0,
        callbacks=[EndsRun("pretrain")],
    ).fit(X, labels)  # fmt: skip
    assert (clf.pretrain_epochs_ == 0).all()  # back at the initial weights
    _check_fitted(clf, X, 2)


def test_a_swag_phase_without_a_snapshot_is_refused(regression_data):
    import pytest

    from sklearn_swag import MultiSWAGRegressor

    X, y = regression_data
    reg = MultiSWAGRegressor(
        n_models=2, pretrain_epochs=3, swag_epochs=2, swag_every=3.0,
        early_stopping=False, batch_size=None, random_state=0,
    )  # fmt: skip
    with pytest.raises(ValueError, match="swag_every=3 .*swag_epochs=2"):
        reg.fit(X, y)
    # Half-epoch snapshots fit in: several steps per epoch.
    reg.set_params(swag_every=0.5, swag_epochs=1, batch_size=16).fit(X, y)
    assert (reg.n_snapshots_ == 2).all()
