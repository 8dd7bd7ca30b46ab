"""A fit's stop signal: every group in this process stops, and is waited for."""

import pickle
import threading
import time

import joblib
import pytest
from skorch.callbacks import Callback

from sklearn_swag import MultiSWAGRegressor
from sklearn_swag._training.stopping import FitStopped, StopSignal


def test_a_copy_is_the_signal_in_this_process_only_while_registered():
    signal = StopSignal()
    with signal.registered():
        assert pickle.loads(pickle.dumps(signal)) is signal
    elsewhere = pickle.loads(pickle.dumps(signal))
    assert elsewhere is not signal and elsewhere.token == signal.token
    signal.stop()
    elsewhere.check()  # a copy in another process never fires


def test_stop_waits_for_the_running_groups_and_starts_none():
    signal, started, left = StopSignal(), threading.Event(), []

    def group():
        with signal.running():
            started.set()
            try:
                while True:
                    signal.check()
                    time.sleep(0.001)
            except FitStopped:
                time.sleep(0.05)  # the end of a batch
                left.append(True)

    thread = threading.Thread(target=group)
    thread.start()
    assert started.wait(10)
    signal.stop()
    assert left == [True]
    thread.join()
    with pytest.raises(FitStopped), signal.running():
        pass


def test_a_failing_group_stops_the_others(regression_data, fast_params):
    # The other thread used to train its group to the end after fit raised.
    X, y = regression_data
    batches, lock = [], threading.Lock()

    class FailFirst(Callback):
        """The first thread to train fails on its third batch."""

        def on_batch_end(self, net, **kwargs):
            with lock:
                batches.append((threading.get_ident(), time.monotonic()))
                first = batches[0][0]
                mine = sum(ident == first for ident, _ in batches)
                others = len(batches) - mine
            if threading.get_ident() == first and mine >= 3 and others:
                raise RuntimeError("this group fails")

    reg = MultiSWAGRegressor(
        **{**fast_params, "n_models": 2, "n_jobs": 2, "pretrain_epochs": 3000},
        callbacks=[FailFirst()],
    )
    with (
        joblib.parallel_backend("threading"),
        pytest.raises(RuntimeError, match="fails"),
    ):
        reg.fit(X, y)
    raised = time.monotonic()
    time.sleep(0.2)
    assert not [at for _, at in batches if at > raised]
    assert "swag_mean_" not in vars(reg)
