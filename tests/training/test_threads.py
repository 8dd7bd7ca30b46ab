"""Torch threads chosen by timing: for prediction, as for training."""

import threading

import numpy as np
import pytest
import torch

from sklearn_swag import MultiSWAGRegressor
from sklearn_swag._posterior.draws import _prediction_threads, _timed
from sklearn_swag._training.threads import ThreadChooser


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("sklearn_swag._training.threads.time.perf_counter", clock)
    before = torch.get_num_threads()
    yield clock
    torch.set_num_threads(before)


def _blocks(clock, n, seconds_for, used):
    """``n`` blocks whose evaluation costs ``seconds_for(threads)``."""
    for i in range(n):
        threads = torch.get_num_threads()
        used.append(threads)
        clock.now += seconds_for(threads)
        yield i


def _predict_blocks(clock, n, seconds_for):
    chooser = ThreadChooser(2, trial_steps=2, warmup_steps=1, retry_after=50)
    chooser.start()
    used = []
    assert list(_timed(_blocks(clock, n, seconds_for, used), chooser)) == list(range(n))
    return chooser, used


def test_prediction_blocks_use_more_threads_where_they_pay(clock):
    chooser, used = _predict_blocks(clock, 20, lambda threads: 1.0 / threads)
    assert chooser.threads_ == 2
    assert used[:3] == [1, 1, 1] and used[-1] == 2


def test_prediction_blocks_leave_threads_that_collapse(clock):
    # Another process holds a core: two threads wait on each other.
    chooser, used = _predict_blocks(clock, 40, lambda threads: 1.0 + 99 * (threads > 1))
    assert chooser.threads_ == 1
    assert used.count(2) <= 3  # a couple of slow blocks, then one thread again
    assert chooser.trials_[0][2] == pytest.approx(100.0)


def test_prediction_threads_only_on_the_cpu_of_the_main_thread():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert isinstance(_prediction_threads(torch.device("cpu")), ThreadChooser)
        assert _prediction_threads(torch.device("cuda")) is None
        found = []
        worker = threading.Thread(
            target=lambda: found.append(_prediction_threads(torch.device("cpu")))
        )
        worker.start()
        worker.join()
        assert found == [None]
        torch.set_num_threads(1)
        assert _prediction_threads(torch.device("cpu")) is None
    finally:
        torch.set_num_threads(before)


def test_prediction_leaves_the_thread_count_as_it_was(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params).fit(X, y)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        expected = reg.predict(np.repeat(X, 50, axis=0), return_std=True)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        np.testing.assert_allclose(
            reg.predict(np.repeat(X, 50, axis=0), return_std=True),
            expected,
            rtol=1e-6,
        )
    finally:
        torch.set_num_threads(before)


def test_threads_are_restored_after_a_block():
    from sklearn_swag._training.threads import threads_restored

    before = torch.get_num_threads()
    with threads_restored():
        torch.set_num_threads(1)
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), threads_restored():
        torch.set_num_threads(1)
        raise RuntimeError
    assert torch.get_num_threads() == before


def test_a_fit_in_a_thread_leaves_the_users_thread_count(regression_data, fast_params):
    # Only the main thread changes torch's thread count. A fit in another
    # thread used to set it (to its workers' share of the cores) while the
    # main thread ran with the count its user had set.
    import joblib
    from skorch.callbacks import Callback

    X, y = regression_data
    reg = MultiSWAGRegressor(**fast_params).fit(X, y)
    fitting, predicted = threading.Event(), threading.Event()
    seen, errors = [], []

    class Gate(Callback):
        """Records the count while the main thread is idle; lets it predict."""

        def on_batch_end(self, net, **kwargs):
            if not fitting.is_set() or predicted.is_set():
                seen.append(torch.get_num_threads())
            fitting.set()
            predicted.wait(60)

    def fit():
        try:
            with joblib.parallel_backend("threading"):
                MultiSWAGRegressor(
                    **{**fast_params, "n_jobs": 2, "callbacks": [Gate()]}
                ).fit(X, y)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    before = torch.get_num_threads()
    users = joblib.cpu_count() // 2 + 1  # never a fit's share of the cores
    worker = threading.Thread(target=fit)
    try:
        torch.set_num_threads(users)
        worker.start()
        assert fitting.wait(60)
        reg.predict(np.repeat(X, 50, axis=0), return_std=True)
        assert torch.get_num_threads() == users
        predicted.set()
        worker.join()
        assert not errors, errors[0]
        assert torch.get_num_threads() == users
    finally:
        predicted.set()
        worker.join()
        torch.set_num_threads(before)
    assert seen and set(seen) == {users}


def test_only_the_main_thread_changes_the_thread_count():
    from sklearn_swag._training.threads import set_thread_count, threads_restored

    found = []

    def other():
        with threads_restored() as may_change:
            found.append(may_change)
            try:
                set_thread_count(1)
            except RuntimeError as exc:
                found.append(str(exc))

    worker = threading.Thread(target=other)
    worker.start()
    worker.join()
    assert found[0] is False and found[1].startswith("Only the main thread")
    with threads_restored() as may_change:
        assert may_change


def test_a_fit_in_the_main_thread_tries_the_threads_it_found(
    regression_data, monkeypatch
):
    # The run sets one thread before it builds its callbacks: the threads its
    # training may try are those it found, not the one it set.
    from sklearn_swag._training.callbacks import ThreadTuner

    X, y = regression_data
    tried = []
    original = ThreadTuner.on_train_begin

    def on_train_begin(tuner, net, **kwargs):
        tried.append(tuner.chooser.threads)
        original(tuner, net, **kwargs)

    monkeypatch.setattr(ThreadTuner, "on_train_begin", on_train_begin)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        MultiSWAGRegressor(
            module__hidden_layer_sizes=(256, 256),
            noise="homoscedastic",
            n_models=2,
            pretrain_epochs=1,
            swag_epochs=1,
            batch_size=128,
            n_samples=2,
            validation_fraction=0,
            random_state=0,
        ).fit(X, y)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert tried == [2]  # one run: pretraining, then SWAG epochs
