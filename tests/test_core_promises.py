"""Promises of the estimator core that grid search, threads and users rely on.

Each test here states one promise of the user guide: particles that do not
depend on how many there are, predictions that depend on the fitted state
alone, the caller's random states left alone, Ctrl-C that stops a fit, thread-
safe prediction, a held-out split that keeps copies of a row together, and
optimizers that would couple the particles refused.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from unittest import mock

import joblib
import numpy as np
import pytest
import torch
from conftest import MINI_BATCH
from networks import BatchNormNet, SeedNet

from sklearn_swag import MultiSWAGRegressor
from sklearn_swag._rows import _validation_split
from sklearn_swag._training.callbacks import SWAGCollector


# -- particles do not depend on how many there are ---------------------------------
@pytest.mark.parametrize("validation_fraction", [0.0, 0.25])
def test_particle_i_is_the_same_in_a_larger_fit(
    regression_data, fast_params, validation_fraction
):
    X, y = regression_data
    params = {
        **fast_params,
        "validation_fraction": validation_fraction,
        "optimizer__foreach": True,  # rounding the same for any group size
    }
    two = MultiSWAGRegressor(**{**params, "n_models": 2}).fit(X, y)
    three = MultiSWAGRegressor(**{**params, "n_models": 3}).fit(X, y)
    np.testing.assert_array_equal(two.particle_seeds_, three.particle_seeds_[:2])
    assert two.n_train_samples_ == three.n_train_samples_
    np.testing.assert_allclose(two.swag_mean_, three.swag_mean_[:2], atol=1e-6)
    np.testing.assert_allclose(
        two.sample_y(X, n_samples=2), three.sample_y(X, n_samples=2), atol=1e-4
    )


def test_held_out_rows_do_not_depend_on_n_models():
    X = np.random.RandomState(0).randn(50, 2)
    from sklearn_swag._training.seeds import SPLIT_STREAM, derived_rng

    first = _validation_split(X, 0.2, derived_rng(7, SPLIT_STREAM))
    again = _validation_split(X, 0.2, derived_rng(7, SPLIT_STREAM))
    other = _validation_split(X, 0.2, derived_rng(8, SPLIT_STREAM))
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


# -- prediction depends on the fitted state only -----------------------------------
@pytest.mark.parametrize("module", [None, BatchNormNet])
def test_set_params_after_fit_changes_no_prediction(regression_data, module):
    X, y = regression_data
    params = dict(MINI_BATCH, n_models=2, n_samples=3)
    reg = MultiSWAGRegressor(module, **params).fit(X, y)
    before = (*reg.predict(X, return_std=True), reg.sample_y(X, n_samples=3))
    reg.set_params(
        swag_epochs=0, scale=0.25, n_samples=7, n_models=5, rank=1,
        noise="heteroscedastic", bn_update_rows=0, validation_fraction=0.5,
        normalize_y=not reg._normalizes_y(), batch_size=3, random_state=11,
    )  # fmt: skip
    after = (*reg.predict(X, return_std=True), reg.sample_y(X, n_samples=3))
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


# -- the caller's random states ------------------------------------------------------
def test_fit_never_reseeds_the_callers_cuda_generators(regression_data, fast_params):
    X, y = regression_data
    with (
        mock.patch("torch.cuda.manual_seed_all") as seed_all,
        mock.patch("torch.cuda.manual_seed") as seed_one,
    ):
        MultiSWAGRegressor(**fast_params).fit(X, y)
        params = {k: v for k, v in fast_params.items() if k[:8] != "module__"}
        MultiSWAGRegressor(SeedNet, **params, module__input_dim=3).fit(X, y)
    seed_all.assert_not_called()
    seed_one.assert_not_called()


def test_fit_without_random_state_leaves_numpy_alone(regression_data, fast_params):
    X, y = regression_data
    np.random.seed(5)
    state = np.random.get_state()[1].copy()
    MultiSWAGRegressor(**{**fast_params, "random_state": None}).fit(X, y)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


# -- Ctrl-C --------------------------------------------------------------------------
@pytest.mark.parametrize("backend, n_jobs", [(None, 1), ("threading", 2)])
def test_ctrl_c_stops_fit_and_keeps_the_earlier_model(
    regression_data, fast_params, backend, n_jobs
):
    X, y = regression_data
    reg = MultiSWAGRegressor(**{**fast_params, "n_jobs": n_jobs}).fit(X, y)
    good = reg.predict(X)
    mean = reg.swag_mean_.copy()
    original = SWAGCollector.on_epoch_end

    def interrupt(self, net, **kwargs):
        if len(net.history) == 5:
            raise KeyboardInterrupt
        original(self, net, **kwargs)

    with mock.patch.object(SWAGCollector, "on_epoch_end", interrupt):
        with pytest.raises(KeyboardInterrupt):
            if backend is None:
                reg.fit(X, 2 * y)
            else:
                with joblib.parallel_backend(backend):
                    reg.fit(X, 2 * y)
    np.testing.assert_array_equal(reg.swag_mean_, mean)
    np.testing.assert_array_equal(reg.predict(X), good)


#: A fit in two threads that sends itself SIGINT once both train, then reports
#: which threads trained after fit raised, and exits by the KeyboardInterrupt.
_INTERRUPTED_FIT = """
import faulthandler, json, os, signal, sys, threading, time
import joblib
import numpy as np
from skorch.callbacks import Callback
from sklearn_swag import MultiSWAGRegressor

# Ctrl-C raises KeyboardInterrupt even where the parent ignores SIGINT (a
# background job of a shell without job control passes SIG_IGN on).
signal.signal(signal.SIGINT, signal.default_int_handler)
batches, timer = [], []

class Probe(Callback):
    def on_batch_end(self, net, **kwargs):
        batches.append((threading.get_ident(), time.monotonic()))
        if len({ident for ident, _ in batches}) == 2 and not timer:
            timer.append(threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)))
            timer[0].start()

rng = np.random.RandomState(0)
X = rng.uniform(-1, 1, (256, 3)).astype(np.float32)
y = X.sum(1)
reg = MultiSWAGRegressor(
    n_models=2, pretrain_epochs=2, swag_epochs=1, rank=1, batch_size=16,
    module__hidden_layer_sizes=(16,), early_stopping=False, random_state=0,
).fit(X, y)
before = reg.predict(X)
reg.set_params(n_jobs=2, pretrain_epochs=10**6, callbacks=[Probe()])


def watchdog():  # both workers should train within seconds: say where they are
    if not timer:
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os.kill(os.getpid(), signal.SIGINT)


dog = threading.Timer(120, watchdog)
dog.daemon = True
dog.start()
outcome = "finished"
try:
    with joblib.parallel_backend("threading"):
        reg.fit(X, y)
except KeyboardInterrupt:
    outcome = "interrupted"
caught = time.monotonic()
dog.cancel()
time.sleep(0.5)
report = {
    "outcome": outcome,
    "threads_training_after": len({i for i, at in batches if at > caught}),
    "same_predictions": bool(np.array_equal(reg.predict(X), before)),
    "threads_that_trained": len({ident for ident, _ in batches}),
}
print(json.dumps(report), flush=True)
raise KeyboardInterrupt
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to itself")
def test_ctrl_c_stops_every_worker_thread_and_the_process_exits_normally(tmp_path):
    # Both threads used to train on after fit raised, and the process then
    # aborted on exit (exit code 134).
    script = tmp_path / "interrupted_fit.py"
    script.write_text(textwrap.dedent(_INTERRUPTED_FIT))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True, text=True, cwd=root, env=env, timeout=300,
    )  # fmt: skip
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {
        "outcome": "interrupted",
        "threads_training_after": 0,
        "same_predictions": True,
        "threads_that_trained": 2,
    }, done.stderr
    # An uncaught KeyboardInterrupt ends Python by SIGINT (130 in a shell).
    assert done.returncode in (-signal.SIGINT, 128 + signal.SIGINT), done.stderr


# -- thread-safe prediction ----------------------------------------------------------
@pytest.mark.parametrize("module", [None, SeedNet, BatchNormNet])
def test_prediction_is_thread_safe(regression_data, module):
    X, y = regression_data
    params = dict(MINI_BATCH, n_models=3, n_samples=4)
    reg = MultiSWAGRegressor(module, **params).fit(X, y)
    queries = [X[i::4] for i in range(4)]
    expected = [reg.predict(q, return_std=True) for q in queries]
    expected_draws = [reg.sample_y(q, n_samples=5) for q in queries]
    errors, barrier = [], threading.Barrier(8)

    def work(k):
        try:
            barrier.wait()
            for _ in range(3):
                i = k % 4
                if k % 2:
                    got = reg.sample_y(queries[i], n_samples=5)
                    np.testing.assert_allclose(got, expected_draws[i], rtol=1e-6)
                else:
                    got = reg.predict(queries[i], return_std=True)
                    np.testing.assert_allclose(got, expected[i], rtol=1e-6)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_prediction_never_moves_or_switches_the_fitted_stack(
    regression_data, user_net_params
):
    X, y = regression_data
    reg = MultiSWAGRegressor(BatchNormNet, **user_net_params).fit(X, y)
    stack = reg.particles_
    training = stack.training
    buffers = [b.clone() for b in stack.stacked_buffers()]
    with (
        mock.patch.object(type(stack), "to", side_effect=AssertionError("moved")),
        mock.patch.object(type(stack), "eval", side_effect=AssertionError("eval")),
    ):
        reg.predict(X, return_std=True)
        reg.sample_y(X, n_samples=2)
    assert stack.training == training
    for old, new in zip(buffers, stack.stacked_buffers(), strict=True):
        assert torch.equal(old, new)


# -- copies of a row stay on one side of the held-out split ------------------------
def test_copies_of_a_row_are_never_split():
    rng = np.random.RandomState(0)
    base = rng.randn(40, 3)
    X = np.repeat(base, 8, axis=0)[rng.permutation(320)]
    train, held = _validation_split(X, 0.1, np.random.default_rng(0))
    assert len(held) >= 32 and len(train) + len(held) == 320
    train_rows = {row.tobytes() for row in X[train]}
    assert not any(row.tobytes() in train_rows for row in X[held])


def test_a_single_distinct_row_cannot_be_held_out():
    X = np.ones((10, 2))
    with pytest.raises(ValueError, match="no row to train on"):
        _validation_split(X, 0.1, np.random.default_rng(0))


def test_noise_on_repeated_rows_is_not_underestimated():
    """Eight copies of every row: the held-out noise still finds the true one."""
    rng = np.random.RandomState(0)
    base = rng.uniform(-1, 1, size=(60, 2))
    X = np.repeat(base, 8, axis=0)
    y = np.sin(3 * X[:, 0]) + X[:, 1] + 0.3 * rng.standard_normal(len(X))
    reg = MultiSWAGRegressor(
        n_models=2, pretrain_epochs=60, swag_epochs=10, rank=4, n_samples=4,
        lr=0.01, random_state=0,
    ).fit(X, y)  # fmt: skip
    # On held-out copies the networks would look almost noiseless.
    assert reg.noise_variance_[0] > 0.5 * 0.3**2


# -- optimizers that couple the particles --------------------------------------------
class _PlainSGD(torch.optim.Optimizer):
    """A user's own elementwise optimizer."""

    def __init__(self, params, lr=0.1):
        super().__init__(params, {"lr": lr})

    def direction(self, grad):
        return grad

    def step(self, closure=None):
        loss = None if closure is None else closure()  # skorch passes one
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.data.add_(self.direction(p.grad), alpha=-group["lr"])
        return loss


class _GlobalNormSGD(_PlainSGD):
    """SGD on gradients divided by their tensor's norm: couples the stack."""

    def direction(self, grad):
        return grad / (grad.norm() + 1e-12)


@pytest.mark.parametrize(
    "optimizer",
    [
        torch.optim.LBFGS,
        pytest.param(
            getattr(torch.optim, "Adafactor", None),
            marks=pytest.mark.skipif(
                not hasattr(torch.optim, "Adafactor"),
                reason="torch.optim.Adafactor came in torch 2.5",
            ),
            id="Adafactor",
        ),
        _GlobalNormSGD,
    ],
)
def test_an_optimizer_that_couples_particles_is_refused(
    regression_data, fast_params, optimizer
):
    X, y = regression_data
    reg = MultiSWAGRegressor(**{**fast_params, "optimizer": optimizer})
    with mock.patch("sklearn_swag._base.fit_group") as fit_group:
        with pytest.raises(ValueError, match="optimizer="):
            reg.fit(X, y)
    fit_group.assert_not_called()


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.RMSprop, _PlainSGD])
def test_elementwise_optimizers_are_accepted(regression_data, fast_params, optimizer):
    X, y = regression_data
    MultiSWAGRegressor(**{**fast_params, "optimizer": optimizer, "lr": 0.01}).fit(X, y)


def test_values_beyond_float32_are_clear_errors(regression_data):
    # The networks compute in float32: such values used to "fit" and then fail
    # every prediction ("means must be finite").
    X, y = regression_data
    X, y = X.astype(np.float64), y.astype(np.float64)
    params = dict(n_models=1, pretrain_epochs=2, swag_epochs=2, rank=1)
    big_X = X.copy()
    big_X[0, 2] = 1e39
    with pytest.raises(ValueError, match=r"float32 range .* column\(s\) \[2\]"):
        MultiSWAGRegressor(**params).fit(big_X, y)
    with pytest.raises(ValueError, match=r"too large to standardise"):
        MultiSWAGRegressor(**params).fit(X, y * 1e160)
    with pytest.raises(ValueError, match=r"y has values beyond the float32 range"):
        MultiSWAGRegressor(**params, normalize_y=False).fit(X, y * 1e39)
    reg = MultiSWAGRegressor(**params).fit(X, y)
    with pytest.raises(ValueError, match=r"float32 range .* column\(s\) \[2\]"):
        reg.predict(big_X)
    assert np.isfinite(reg.predict(X)).all()
