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
