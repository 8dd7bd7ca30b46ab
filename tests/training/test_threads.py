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
