"""Threads of one process: loading a model never disturbs a fit in another thread.

Tracing a network once patched ``torch.nn.Module.__call__`` for the whole
process, and loading borrowed (and restored) the global torch generator: a
fit running meanwhile in another thread crashed (``module is not installed
as a submodule``) or trained differently.
"""

import pickle
import threading

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_swag import MultiSWAGRegressor


class DropoutNet(nn.Module):
    """A user network whose training draws dropout masks."""

    def __init__(self, n_in=3):
        super().__init__()
        self.hidden = nn.Linear(n_in, 16)
        self.dropout = nn.Dropout(0.1)
        self.out = nn.Linear(16, 1)

    def forward(self, x):
        return self.out(self.dropout(torch.relu(self.hidden(x))))


class VmapDropoutNet(DropoutNet):
    """One that the batched rewrite refuses (``cumsum``): it trains under vmap,
    its dropout masks drawn from the global generator the fit seeds."""

    def forward(self, x):
        return super().forward(x).cumsum(1)


def _load_in_a_loop(blob, stop, errors):
    while not stop.is_set():
        try:
            pickle.loads(blob)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
            return


@pytest.mark.filterwarnings("ignore:VmapDropoutNet could not be rewritten")
@pytest.mark.parametrize("network", [DropoutNet, VmapDropoutNet])
def test_loading_in_another_thread_leaves_a_fit_alone(
    network, regression_data, user_net_params
):
    X, y = regression_data
    params = dict(
        user_net_params, n_models=2, pretrain_epochs=10, swag_epochs=4, batch_size=8
    )
    wide = dict(params, module__hidden_layer_sizes=(512, 512), pretrain_epochs=1)
    blob = pickle.dumps(MultiSWAGRegressor(**wide).fit(X, y))
    alone = MultiSWAGRegressor(module=network, **params).fit(X, y).predict(X)
    errors = []
    for _ in range(8):
        stop = threading.Event()
        loader = threading.Thread(target=_load_in_a_loop, args=(blob, stop, errors))
        loader.start()
        try:
            reg = MultiSWAGRegressor(module=network, **params).fit(X, y)
        finally:
            stop.set()
            loader.join()
        np.testing.assert_array_equal(reg.predict(X), alone)
    assert errors == []


class Handshake(nn.Module):
    """Notes whether building its layers draws from the global generator, and,
    while ``pause`` holds two events, waits in its constructor for the test."""

    pause = None
    drew_from_global = []

    def __init__(self, n_in=3):
        super().__init__()
        before = torch.random.get_rng_state()
        self.hidden = nn.Linear(n_in, 8)
        self.out = nn.Linear(8, 1)
        Handshake.drew_from_global.append(
            not torch.equal(torch.random.get_rng_state(), before)
        )
        if Handshake.pause is not None:
            inside, resume = Handshake.pause
            inside.set()
            resume.wait(30)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


def test_loading_neither_draws_from_nor_resets_the_global_generator(
    regression_data, user_net_params
):
    X, y = regression_data
    params = dict(user_net_params, n_models=2, pretrain_epochs=2, swag_epochs=2)
    blob = pickle.dumps(MultiSWAGRegressor(module=Handshake, **params).fit(X, y))
    inside, resume = threading.Event(), threading.Event()
    Handshake.pause, Handshake.drew_from_global = (inside, resume), []
    try:
        loaded = []
        loader = threading.Thread(target=lambda: loaded.append(pickle.loads(blob)))
        loader.start()
        assert inside.wait(30)
        # Meanwhile, this thread seeds the global generator (as a fit does).
        torch.manual_seed(7)
        expected = torch.random.get_rng_state()
        resume.set()
        loader.join()
    finally:
        Handshake.pause = None
    assert torch.equal(torch.random.get_rng_state(), expected)
    # Built twice: on the meta device to check sizes, then for real.
    assert Handshake.drew_from_global and not any(Handshake.drew_from_global)
    np.testing.assert_array_equal(loaded[0].predict(X), pickle.loads(blob).predict(X))
