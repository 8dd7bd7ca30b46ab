"""The skorch net of a training run: its history."""

import numpy as np
import pytest
from conftest import MINI_BATCH
from skorch.callbacks import Callback
from skorch.history import History

from sklearn_swag import MultiSWAGRegressor
from sklearn_swag._training.net import _RunHistory


def _write(history):
    for epoch in range(3):
        history.new_epoch()
        history.record("epoch", epoch + 1)
        for batch in range(2):
            history.new_batch()
            history.record_batch("train_loss", float(epoch + batch))
            history.record_batch("train_batch_size", 10 + batch)
            history.record_batch("train_loss", float(epoch * batch))  # overwrite
        history.record("train_batch_count", 2)


def test_run_history_holds_what_skorchs_history_holds():
    ours, skorchs = _RunHistory(), History()
    _write(ours)
    _write(skorchs)
    assert ours.to_list() == skorchs.to_list()
    assert ours[:, "epoch"] == skorchs[:, "epoch"] == [1, 2, 3]
    assert ours[-1, "batches", :, "train_loss"] == [0.0, 2.0]
    assert ours[-1, "batches", -1, "train_batch_size"] == 11


@pytest.mark.parametrize("write", ["record", "record_batch", "new_batch"])
def test_run_history_refuses_writes_before_an_epoch(write):
    args = {"record": ("a", 1), "record_batch": ("a", 1), "new_batch": ()}[write]
    with pytest.raises(ValueError, match="new_epoch"):
        getattr(_RunHistory(), write)(*args)


class _LossReader(Callback):
    """Reads the history as a user's callback does; fails the fit where it cannot."""

    def on_batch_end(self, net, **kwargs):
        loss = net.history[-1, "batches", -1, "train_loss"]
        assert isinstance(loss, float) and np.isfinite(loss)

    def on_epoch_end(self, net, **kwargs):
        assert net.history[-1, "epoch"] == len(net.history)


def test_a_users_callback_reads_the_history_as_in_skorch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2)).astype(np.float32)
    y = X.sum(axis=1)
    reg = MultiSWAGRegressor(
        **MINI_BATCH, n_models=2, validation_fraction=0, callbacks=[_LossReader()]
    ).fit(X, y)
    assert reg.n_features_in_ == 2


class _Recorder(Callback):
    """Notes every hook it defines; ``on_epoch_begin`` is skorch's empty one.

    The notes go to a list of the class: every group trains with a copy of
    the user's callbacks.
    """

    calls: list = []

    def __init__(self, name):
        self.name = name

    def on_batch_begin(self, net, **kwargs):
        self.calls.append((self.name, "on_batch_begin"))

    def on_epoch_end(self, net, **kwargs):
        self.calls.append((self.name, "on_epoch_end"))


def test_notify_calls_the_hooks_callbacks_define_in_skorchs_order():
    calls = _Recorder.calls = []
    first, second = _Recorder("first"), _Recorder("second")
    # A hook set on the instance counts too.
    second.on_train_begin = lambda net, **kwargs: calls.append(("second", "begin"))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 2)).astype(np.float32)
    MultiSWAGRegressor(
        module__hidden_layer_sizes=(4,),
        n_models=1,
        pretrain_epochs=1,
        swag_epochs=1,
        batch_size=None,
        validation_fraction=0,
        callbacks=[("first", first), ("second", second)],
    ).fit(X, X.sum(axis=1))
    per_epoch = [
        ("first", "on_batch_begin"),
        ("second", "on_batch_begin"),
        ("first", "on_epoch_end"),
        ("second", "on_epoch_end"),
    ]
    assert calls == [("second", "begin"), *per_epoch, *per_epoch]


def test_the_net_listens_only_where_a_callback_does_something():
    from skorch.callbacks import GradientNormClipping

    from sklearn_swag._training.net import _GroupNet, _listens

    recorder = _Recorder("r")
    assert _listens(recorder, "on_batch_begin")
    assert not _listens(recorder, "on_epoch_begin")
    assert _listens(GradientNormClipping(), "on_grad_computed")
    assert not _listens(Callback(), "on_grad_computed")
    net = _GroupNet(module=None, criterion=None, callbacks=[("r", recorder)])
    net.initialize_callbacks()
    assert net.listeners_["on_batch_begin"] == [recorder]
    assert net.listeners_["on_epoch_begin"] == []
    assert not net.watches_gradients_
