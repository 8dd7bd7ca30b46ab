"""Seeds, groups and devices of the particles."""

from unittest import mock

import numpy as np
import pytest
import torch

from sklearn_swag._training.particles import (
    BN_ROWS_STREAM,
    SPLIT_STREAM,
    TrainingPlan,
    check_device,
    derived_rng,
    group_devices,
    particle_seeds,
    partition,
    resolve_devices,
    root_seed,
)


@pytest.mark.parametrize("n_models, n_jobs", [(1, 1), (5, 2), (16, 3), (3, 8)])
def test_partition_covers_every_particle_once_in_order(n_models, n_jobs):
    groups = partition(n_models, n_jobs)
    assert len(groups) == min(n_models, n_jobs)
    np.testing.assert_array_equal(np.concatenate(groups), np.arange(n_models))
    sizes = [len(g) for g in groups]
    assert max(sizes) - min(sizes) <= 1


def test_particle_seeds_are_per_particle_and_reproducible():
    a = particle_seeds(0, 6)
    b = particle_seeds(0, 6)
    assert a.shape == (6, 3)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == a.size
    assert (a >= 0).all() and (a <= np.iinfo(np.int32).max).all()
    # the first particles' seeds do not depend on how many particles follow
    np.testing.assert_array_equal(particle_seeds(0, 2), a[:2])
    assert not np.array_equal(particle_seeds(1, 6), a)


def test_root_seed():
    assert root_seed(3) == 3
    assert root_seed(np.random.RandomState(0)) == root_seed(np.random.RandomState(0))
    state = np.random.get_state()[1].copy()
    assert root_seed(None) != root_seed(None)  # fresh entropy, ...
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # ... not numpy's


def test_derived_streams_are_independent():
    a = derived_rng(0, SPLIT_STREAM).random(4)
    np.testing.assert_array_equal(a, derived_rng(0, SPLIT_STREAM).random(4))
    assert not np.allclose(a, derived_rng(0, BN_ROWS_STREAM).random(4))


def _plan(**kwargs):
    base = dict(
        module=None, module_kwargs={}, n_features=3, n_outputs=1,
        criterion=torch.nn.MSELoss, criterion_kwargs={}, optimizer=torch.optim.Adam,
        optimizer_kwargs={}, iterator_kwargs={}, lr=0.01, batch_size=None,
        pretrain_epochs=1, swag_epochs=1, rank=2,
    )  # fmt: skip
    return TrainingPlan(**{**base, **kwargs})


def test_threads_follow_the_work_per_step():
    from sklearn_swag._training.particles import FLOPS_PER_THREAD

    plan = _plan(max_threads=4)
    plan.flops_per_row = 100.0  # a tiny network: 4.8e5 flops per step
    assert plan.threads_for(16, 100) == 1
    plan.flops_per_row = FLOPS_PER_THREAD / 100  # 3 * 128 * 16 / 100 = 61 threads
    assert plan.threads_for(16, 128) == 4  # capped
    plan.batch_size = 1
    assert plan.threads_for(16, 10_000) == 1  # 0.48 * FLOPS_PER_THREAD
    plan.max_threads = None
    plan.batch_size = None
    assert plan.threads_for(16, 128) == 61
    plan.flops_per_row = 0.0  # unknown: one thread
    assert plan.threads_for(16, 128) == 1


class _Clock:
    """Stands in for time.perf_counter: each step lasts what the test says."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _run_steps(tuner, clock, seconds_for):
    """Drive ``tuner`` through steps; ``seconds_for(threads)`` is a step's cost."""
    tuner.on_batch_begin(None)
    clock.now += seconds_for(tuner.threads_)
    tuner.on_batch_end(None)


@pytest.fixture
def tuner_clock(monkeypatch):
    from sklearn_swag._training.callbacks import ThreadTuner
    from sklearn_swag._training.threads import ThreadChooser

    clock = _Clock()
    monkeypatch.setattr("sklearn_swag._training.threads.time.perf_counter", clock)
    before = torch.get_num_threads()
    tuner = ThreadTuner(ThreadChooser(2, trial_steps=3, warmup_steps=2, retry_after=10))
    tuner.initialize()
    tuner.on_train_begin(None)
    yield tuner, clock
    torch.set_num_threads(before)


def test_thread_tuner_keeps_more_threads_where_they_pay(tuner_clock):
    tuner, clock = tuner_clock
    assert tuner.threads_ == 1 and torch.get_num_threads() == 1
    for _ in range(20):
        _run_steps(tuner, clock, lambda threads: 1.0 / threads)
    assert tuner.threads_ == 2 and torch.get_num_threads() == 2
    assert tuner.trials_ == [(9, 1.0, 0.5)]


def test_thread_tuner_leaves_a_collapse_at_once_and_retries_later(tuner_clock):
    tuner, clock = tuner_clock
    threads_seen = []
    for _ in range(30):
        _run_steps(tuner, clock, lambda threads: 1.0 if threads == 1 else 100.0)
        threads_seen.append(tuner.threads_)
    # Trial at step 5: its first step (thread start-up) is not judged, the
    # second collapses; the retries come 10, then 20 steps later.
    assert [step for step, *_ in tuner.trials_] == [7, 18]
    assert threads_seen.count(2) == 3  # three slow steps in 30
    assert tuner.threads_ == 1


def test_thread_tuner_goes_back_to_one_thread_when_the_machine_gets_busy(tuner_clock):
    tuner, clock = tuner_clock
    for _ in range(12):
        _run_steps(tuner, clock, lambda threads: 1.0 / threads)
    assert tuner.threads_ == 2
    _run_steps(tuner, clock, lambda threads: 50.0)  # one slow step: kept
    assert tuner.threads_ == 2
    _run_steps(tuner, clock, lambda threads: 1.0 / threads)
    _run_steps(tuner, clock, lambda threads: 50.0)
    _run_steps(tuner, clock, lambda threads: 50.0)  # two in a row: back to one
    assert tuner.threads_ == 1 and torch.get_num_threads() == 1


def test_check_measures_flops_per_row():
    plan = _plan(module_kwargs={"hidden_layer_sizes": (16,)})
    modules = [plan.build_module(s) for s in (1, 2)]
    plan.check(modules, torch.zeros(8, 3))
    # 3*16 + 16*1 multiply-adds, two flops each
    assert plan.flops_per_row == 2 * (3 * 16 + 16 * 1)


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


def test_check_device_cpu_and_errors():
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a torch device"):
        check_device("gpu")
    with mock.patch("torch.cuda.is_available", return_value=False):
        with pytest.raises(ValueError, match="CUDA is not available"):
            check_device("cuda")


def test_check_device_cuda_index_must_exist():
    with (
        mock.patch("torch.cuda.is_available", return_value=True),
        mock.patch("torch.cuda.device_count", return_value=2),
    ):
        assert check_device("cuda:1") == torch.device("cuda", 1)
        with pytest.raises(ValueError, match="2 CUDA device"):
            check_device("cuda:2")


def test_devices_resolve_and_go_round_robin():
    with (
        mock.patch("torch.cuda.is_available", return_value=True),
        mock.patch("torch.cuda.device_count", return_value=2),
    ):
        gpus = resolve_devices("cuda")
        assert gpus == [torch.device("cuda", 0), torch.device("cuda", 1)]
        assert [d.index for d in group_devices(gpus, 5)] == [0, 1, 0, 1, 0]
        listed = resolve_devices(["cuda:1", "cpu"])
        assert group_devices(listed, 3) == [
            torch.device("cuda", 1),
            torch.device("cpu"),
            torch.device("cuda", 1),
        ]
        with pytest.raises(ValueError, match="2 CUDA device"):
            resolve_devices(["cuda:0", "cuda:5"])
    assert group_devices(resolve_devices("cpu"), 2) == [torch.device("cpu")] * 2
    with pytest.raises(ValueError, match="at least one device"):
        resolve_devices([])


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


def test_fused_optimizer_only_where_the_user_did_not_choose():
    from sklearn_swag._training.particles import _fast_optimizer_kwargs

    cpu = torch.device("cpu")
    assert _fast_optimizer_kwargs(torch.optim.Adam, {}, cpu) == {"fused": True}
    assert _fast_optimizer_kwargs(torch.optim.Adam, {"foreach": False}, cpu) == {
        "foreach": False
    }
    assert _fast_optimizer_kwargs(torch.optim.RMSprop, {}, cpu) == {}


def test_read_only_rows_train_without_a_warning_or_a_copy():
    # A process-based joblib backend hands large arrays over as read-only
    # memory maps.
    import warnings

    from sklearn_swag._training.particles import _read_only_tensor

    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    values.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = _read_only_tensor(values, torch.device("cpu"))
    assert tensor.data_ptr() == values.ctypes.data
