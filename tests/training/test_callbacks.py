"""Tests of the skorch callbacks, on real skorch nets training particle stacks."""

import math
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from skorch.callbacks import Callback
from torch import nn
from training_plans import particle_seeds, small_plan, toy_rows

from sklearn_swag._network.build import build_stack
from sklearn_swag._network.losses import ParticleLoss
from sklearn_swag._training.callbacks import (
    DivergenceCheck,
    LearningRatePlan,
    SWAGCollector,
)
from sklearn_swag._training.group import fit_group
from sklearn_swag._training.net import _GroupNet
from sklearn_swag._training.seeds import DATA_SEED, INIT_SEED

CPU = torch.device("cpu")


class Recorder(Callback):
    """Records every particle's flat weights and snapshot count after each epoch."""

    def initialize(self):
        self.weights_ = []
        self.n_snapshots_ = []
        return self

    def on_epoch_end(self, net, **kwargs):
        self.weights_.append(net.module_.flat_weights().clone())
        collector = dict(net.callbacks_).get("swag")
        if collector is not None:
            self.n_snapshots_.append(collector.moments_.n_snapshots.tolist())


class PoisonParticle(Callback):
    """Sets one particle's weights to NaN at the start of one epoch."""

    def __init__(self, particle, epoch):
        self.particle = particle
        self.epoch = epoch

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.epoch:
            with torch.no_grad():
                net.module_.weights[0][self.particle].fill_(math.nan)


def _train(plan, seeds, callbacks, X, y):
    """A skorch net built as ``fit_group`` builds it, with the given callbacks."""
    modules = [plan.build_module(s) for s in seeds[:, INIT_SEED]]
    X_t, y_t = torch.as_tensor(X), torch.as_tensor(y)
    net = _GroupNet(
        module=build_stack(modules, X_t[:8]),
        criterion=ParticleLoss(plan.build_criterion()),
        optimizer=plan.optimizer,
        lr=plan.lr,
        max_epochs=plan.pretrain_epochs + plan.swag_epochs,
        batch_size=plan.batch_size,
        train_split=None,
        callbacks=callbacks,
    )
    net.particle_generators_ = [
        torch.Generator().manual_seed(int(s)) for s in seeds[:, DATA_SEED]
    ]
    net.fit(X_t, y_t)
    return net


def _numpy_swag(snapshots, rank):
    """mean, sq_mean and last ``rank`` deviation rows of (T, P, n) snapshots."""
    snapshots = np.asarray(snapshots, dtype=np.float64)
    t = np.arange(1, len(snapshots) + 1).reshape(-1, 1, 1)
    running = np.cumsum(snapshots, axis=0) / t
    deviations = (snapshots - running)[max(len(snapshots) - rank, 0) :]
    return (
        snapshots.mean(axis=0),
        (snapshots**2).mean(axis=0),
        deviations.transpose(1, 0, 2),
    )


# -- SWAGCollector ----------------------------------------------------------------


def test_collector_averages_the_weights_after_pretraining():
    plan = small_plan()
    X, y = toy_rows()
    collector = SWAGCollector(start_epoch=plan.pretrain_epochs, rank=plan.rank)
    recorder = Recorder()
    _train(plan, particle_seeds(), [("swag", collector), ("record", recorder)], X, y)
    # One snapshot at the end of each epoch after the first three, per particle.
    assert recorder.n_snapshots_ == [[0, 0]] * 3 + [[1, 1], [2, 2], [3, 3], [4, 4]]
    moments = collector.moments_
    assert_array_equal(moments.n_snapshots.numpy(), [4, 4])
    recorded = torch.stack(recorder.weights_).numpy()  # (epochs, P, n_params)
    mean, sq_mean, deviations = _numpy_swag(recorded[3:], plan.rank)
    # Float32 weights averaged in float64: equal to float64 round-off.
    assert_allclose(moments.mean.numpy(), mean, rtol=1e-12, atol=1e-12)
    assert_allclose(moments.sq_mean.numpy(), sq_mean, rtol=1e-12, atol=1e-12)
    # Deviations are stored in float32.
    assert_allclose(moments.deviations.numpy(), deviations, rtol=1e-6, atol=1e-7)
    # The pretraining epochs are left out: including them moves the mean.
    wrong = recorded[2:].astype(np.float64).mean(axis=0)
    assert np.abs(moments.mean.numpy() - wrong).max() > 1e-4


def test_fit_group_moments_are_those_of_a_recorded_run():
    plan = small_plan()
    X, y = toy_rows()
    seeds = particle_seeds()
    result = fit_group(plan, X, y, np.array([7, 8]), seeds, CPU)
    recorder = Recorder()
    _train(plan, seeds, [("record", recorder)], X, y)
    recorded = torch.stack(recorder.weights_).numpy()
    mean, sq_mean, deviations = _numpy_swag(recorded[plan.pretrain_epochs :], 3)
    # The same computation twice on the CPU: any difference is round-off.
    assert_allclose(result["mean"], mean, rtol=1e-6, atol=1e-7)
    assert_allclose(result["sq_mean"], sq_mean, rtol=1e-6, atol=1e-7)
    assert_allclose(result["deviations"], deviations, rtol=1e-5, atol=1e-6)
    assert_array_equal(result["n_snapshots"], [4, 4])
    assert result["mean"].dtype == np.float64
    assert_allclose(
        result["stack"].flat_weights().numpy(), recorded[-1], rtol=1e-6, atol=1e-7
    )
    assert result["train_loss"].shape == (2,)
    assert np.isfinite(result["train_loss"]).all()


@pytest.mark.parametrize("rank, k", [(0, 0), (2, 2), (4, 4), (9, 4)])
def test_fit_group_keeps_at_most_rank_deviations(rank, k):
    plan = small_plan(rank=rank, pretrain_epochs=1, swag_epochs=4, batch_size=None)
    X, y = toy_rows()
    result = fit_group(plan, X, y, np.array([0, 1, 2]), particle_seeds(3), CPU)
    n_params = result["mean"].shape[1]
    assert result["deviations"].shape == (3, k, n_params)
    assert_array_equal(result["n_snapshots"], [4, 4, 4])


def test_fit_group_without_swag_epochs_is_a_deep_ensemble():
    plan = small_plan(swag_epochs=0, pretrain_epochs=5)
    X, y = toy_rows()
    seeds = particle_seeds()
    result = fit_group(plan, X, y, np.array([0, 1]), seeds, CPU)
    final = result["stack"].flat_weights().double().numpy()
    assert_array_equal(result["mean"], final)
    assert_array_equal(result["sq_mean"], final**2)
    assert result["deviations"].shape == (2, 0, final.shape[1])
    assert_array_equal(result["n_snapshots"], [0, 0])
    # The final weights are those of five epochs of training.
    recorder = Recorder()
    _train(plan, seeds, [("record", recorder)], X, y)
    assert len(recorder.weights_) == 5
    assert_allclose(final, recorder.weights_[-1].numpy(), rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        initial = torch.stack(
            [
                torch.nn.utils.parameters_to_vector(plan.build_module(s).parameters())
                for s in seeds[:, INIT_SEED]
            ]
        )
    assert np.abs(final - initial.numpy()).max(axis=1).min() > 1e-3


# -- DivergenceCheck --------------------------------------------------------------


def test_divergence_names_the_global_particle_id():
    plan = small_plan(pretrain_epochs=6, swag_epochs=0)
    X, y = toy_rows()
    callbacks = [
        ("poison", PoisonParticle(particle=1, epoch=3)),
        ("divergence", DivergenceCheck([7, 8])),
    ]
    with pytest.raises(FloatingPointError, match=r"particle\(s\) \[8\].*epoch 3"):
        _train(plan, particle_seeds(), callbacks, X, y)


def test_no_divergence_no_error():
    plan = small_plan(pretrain_epochs=3, swag_epochs=0)
    X, y = toy_rows()
    recorder = Recorder()
    _train(
        plan,
        particle_seeds(),
        [("divergence", DivergenceCheck([7, 8])), ("r", recorder)],
        X,
        y,
    )
    assert len(recorder.weights_) == 3


def test_fit_group_stops_a_diverging_run():
    # Plain gradient descent with a huge step on a linear model: the weights
    # grow geometrically until a loss overflows. The run stops at the first
    # particle that diverges, named by its global id, not its place (0 or 1).
    plan = small_plan(
        module_kwargs={"hidden_layer_sizes": ()},
        optimizer=torch.optim.SGD,
        lr=100.0,
        batch_size=None,
        pretrain_epochs=60,
        swag_epochs=0,
    )
    X, y = toy_rows()
    with pytest.raises(FloatingPointError, match=r"particle\(s\) \[(7|8|7, 8)\]"):
        fit_group(plan, X, y, np.array([7, 8]), particle_seeds(), CPU)
    # The optimizer's flat tensor was released: torch's layout check is on.
    enforced = getattr(torch._C, "_is_grad_layout_enforcement_enabled", None)
    assert enforced is None or enforced()


@pytest.mark.parametrize(
    "nonfinite, message",
    [
        (None, None),
        ([False, False, False], None),
        ([False, True, False], r"\[11\]"),
        ([True, False, True], r"\[10, 12\]"),
    ],
)
def test_divergence_check_reads_the_criterion_flags(nonfinite, message):
    criterion = ParticleLoss(nn.MSELoss())
    batches = []
    if nonfinite is not None:  # a batch whose losses are NaN where flagged
        y_pred = torch.zeros(3, 2, 1)
        y_pred[torch.tensor(nonfinite)] = float("nan")
        loss = criterion(y_pred, torch.zeros(2, 1))
        batches.append({"train_loss": loss.item()})  # as skorch records it
    net = SimpleNamespace(criterion_=criterion, history=[{"batches": batches}])
    check = DivergenceCheck([10, 11, 12])
    if message is None:
        check.on_epoch_end(net)
    else:
        with pytest.raises(FloatingPointError, match=message):
            check.on_epoch_end(net)


def test_divergence_check_reads_the_particles_only_after_a_nonfinite_batch():
    """The recorded batch losses (sums over the particles) decide whether the
    particles' own losses are read: finite sums, finite terms."""
    criterion = ParticleLoss(nn.MSELoss())
    criterion(torch.ones(3, 2, 1), torch.zeros(2, 1))
    net = SimpleNamespace(criterion_=criterion, history=[{"batches": []}])
    check = DivergenceCheck([0, 1, 2])
    with mock.patch.object(ParticleLoss, "any_nonfinite", side_effect=AssertionError):
        net.history[0]["batches"] = [{"train_loss": 3.0}, {"train_loss": 1.0}]
        check.on_epoch_end(net)
    for bad in (math.nan, math.inf):
        net.history[0]["batches"] = [{"train_loss": 3.0}, {"train_loss": bad}]
        check.on_epoch_end(net)  # the particles' losses are read: all finite


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


# -- LearningRatePlan -----------------------------------------------------------------
def _swalr_rates(lr, swa_lr, start_epoch, anneal_epochs, n_epochs):
    """Each epoch's rate with torch's SWALR built at the first SWAG epoch and
    stepped before every SWAG epoch."""
    import warnings

    from torch.optim.swa_utils import SWALR

    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler, rates = None, []
    for epoch in range(1, n_epochs + 1):
        if epoch == start_epoch + 1:
            scheduler = SWALR(optimizer, swa_lr, anneal_epochs, "cos")
        if scheduler is not None and anneal_epochs > 0:
            with warnings.catch_warnings():  # a step before the optimizer's
                warnings.simplefilter("ignore", UserWarning)
                scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
    return rates


@pytest.mark.parametrize(
    "lr, swa_lr, start_epoch, anneal_epochs",
    [(0.1, 0.02, 3, 4), (0.01, 0.05, 0, 1), (3e-4, 1e-3, 5, 0), (1.0, 0.02, 2, 7)],
)
def test_learning_rate_plan_is_swalrs_cosine(lr, swa_lr, start_epoch, anneal_epochs):
    n_epochs = start_epoch + anneal_epochs + 3
    plan = LearningRatePlan(lr, swa_lr, start_epoch, anneal_epochs)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    net = SimpleNamespace(history=[], optimizer_=optimizer)
    rates = []
    for _ in range(n_epochs):
        net.history.append({})  # skorch opens the epoch before on_epoch_begin
        plan.on_epoch_begin(net)
        rates.append(optimizer.param_groups[0]["lr"])
    # lr, then SWALR's cosine for anneal_epochs epochs, then swa_lr
    weights = [
        (1 - math.cos(math.pi * k / anneal_epochs)) / 2
        for k in range(1, anneal_epochs + 1)
    ]
    expected = (
        [lr] * start_epoch
        + [lr + (swa_lr - lr) * w for w in weights]
        + [swa_lr] * (n_epochs - start_epoch - anneal_epochs)
    )
    assert rates == expected
    assert_allclose(
        rates,
        _swalr_rates(lr, swa_lr, start_epoch, anneal_epochs, n_epochs),
        rtol=1e-14,
    )


# -- the training step --------------------------------------------------------------


class GradientWatcher(Callback):
    """Records the gradient norm skorch reports after every backward pass."""

    def initialize(self):
        self.norms_ = []
        return self

    def on_grad_computed(self, net, named_parameters, **kwargs):
        norms = [p.grad.norm() for _, p in named_parameters]
        self.norms_.append(float(torch.stack(norms).norm()))


def test_train_step_tells_gradient_watchers_and_steps_the_same_without():
    """A callback watching the gradients (skorch's ``on_grad_computed``) is
    told of every step; without one the step skips skorch's closure and
    trains to the same weights."""
    plan = small_plan(pretrain_epochs=2, swag_epochs=0)  # 3 batches an epoch
    X, y = toy_rows()
    watcher, plain, watched = GradientWatcher(), Recorder(), Recorder()
    net = _train(plan, particle_seeds(), [("r", plain)], X, y)
    assert not net.watches_gradients_
    net = _train(plan, particle_seeds(), [("g", watcher), ("r", watched)], X, y)
    assert net.watches_gradients_
    assert len(watcher.norms_) == 6 and all(n > 0 for n in watcher.norms_)
    for a, b in zip(plain.weights_, watched.weights_, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_gradient_clipping_callback_clips_every_step():
    """skorch's ``GradientNormClipping`` works through the group's step."""
    from skorch.callbacks import GradientNormClipping

    plan = small_plan(
        pretrain_epochs=1, swag_epochs=0, optimizer=torch.optim.SGD, lr=1.0
    )
    X, y = toy_rows()
    seeds = particle_seeds()
    start = torch.cat(
        [
            torch.nn.utils.parameters_to_vector(plan.build_module(s).parameters())
            for s in seeds[:, INIT_SEED]
        ]
    ).reshape(2, -1)
    recorder = Recorder()
    clip = GradientNormClipping(gradient_clip_value=1e-3)
    _train(plan, seeds, [("clip", clip), ("r", recorder)], X, y)
    # Three SGD steps at lr 1 of gradients of norm at most 1e-3 (over the
    # whole stack) move no weight by more than 3e-3.
    moved = (recorder.weights_[-1] - start).abs().max()
    assert 0 < moved <= 3e-3 + 1e-6
