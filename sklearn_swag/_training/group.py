"""Training one group of particles: what a joblib worker runs.

:func:`fit_group` trains a group's particles as one stack and returns their
SWAG moments. Without early stopping that is one run of pretraining and SWAG
epochs; with it, the pretraining runs first (:func:`_pretrain`), going on
without the particles that have stopped, and the SWAG epochs follow in a run
of their own. Each particle's batch order and dropout come from its own
seeds, afresh for every run, so that a particle trains as it would in any
other group.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from .._network.losses import ParticleLoss
from .._network.stack import ParticleStack
from .callbacks import (
    EpochProgress,
    PretrainingMonitor,
    SWAGCollector,
    TrainingHistory,
    _PretrainingDone,
    _SomeStopped,
)
from .history import _group_history
from .net import _callbacks, _group_net, _GroupNet, _Interrupted
from .optimizers import _ELEMENTWISE_OPTIMIZERS, _sliced_optimizer_state
from .plan import TrainingPlan
from .seeds import DATA_SEED, INIT_SEED, _dropout_seed, _run_seed
from .stopping import StopSignal
from .threads import set_thread_count, threads_restored


def fit_group(
    plan: TrainingPlan,
    X: np.ndarray,
    y: np.ndarray,
    particle_ids: np.ndarray,
    seeds: np.ndarray,
    device: torch.device,
    modules: list[nn.Module] | ParticleStack | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    position: int = 0,
    stop: StopSignal | None = None,
) -> dict:
    """Train one group of particles and collect their SWAG moments.

    Parameters
    ----------
    plan : TrainingPlan
        What to build and how long to train.
    X : ndarray of shape (n_samples, n_features), float32
    y : ndarray of shape (n_samples, n_outputs), float32
        With ``plan.weighted``, a last column of row weights.
    particle_ids : ndarray of shape (P,)
        Estimator-wide numbers of the particles, for messages.
    seeds : ndarray of shape (P, 3)
        Their rows of :func:`~sklearn_swag._training.seeds.particle_seeds`.
    device : torch.device
        Where to train.
    modules : list of torch.nn.Module, ParticleStack or None, default=None
        The particles' initialised networks, or their stack (built by the
        caller, which traces the network once for all groups); built from
        ``seeds`` when None.
    validation : tuple of ndarray or None, default=None
        The held-out rows ``(X, y)``, for early stopping of the pretraining
        (``plan.early_stopping``).
    position : int, default=0
        The line of the group's progress bar (with ``plan.verbose``).
    stop : StopSignal or None, default=None
        The fit's stop signal, checked before every batch
        (:mod:`~sklearn_swag._training.stopping`).

    Returns
    -------
    dict
        ``stack`` (the trained :class:`ParticleStack`, on the CPU), ``mean``,
        ``sq_mean``, ``deviations``, ``n_snapshots``, ``train_loss``,
        ``history`` and ``pretrain_epochs`` (per particle: the pretraining
        epoch whose weights the SWAG phase started from), all on the CPU.

    Raises
    ------
    FitStopped
        When ``stop`` is set before the group ends.
    """
    stack = _initial_stack(plan, seeds, modules)
    criterion = ParticleLoss(
        plan.build_criterion(), weighted=plan.weighted, class_targets=plan.class_targets
    )
    X_t, y_t = _read_only_tensor(X, device), _read_only_tensor(y, device)
    progress = _progress_bar(plan, particle_ids, position)
    base = _Run(plan, X_t, y_t, particle_ids, device, criterion, progress, stop)
    histories = []
    collector = best_epochs = final_losses = None
    with (
        nullcontext() if stop is None else stop.running(),
        _own_global_generators(int(seeds[0, DATA_SEED]), device),
        threads_restored() as own_threads,
        _closing(progress),
    ):
        for index, (phase, epochs, swag_start) in enumerate(_phases(plan)):
            if epochs == 0:
                continue
            run = base.started(seeds, index, own_threads)
            if phase == "pretrain":
                monitor = _pretraining_monitor(plan, validation, device)
                runs, best_epochs, final_losses = _pretrain(run, stack, monitor)
                histories += runs
                if progress is not None:
                    progress.end_pretraining(plan.swag_epochs)
                continue
            if final_losses is None:
                final_losses = torch.full((len(seeds),), math.nan, dtype=torch.float64)
            entry, collector, final_losses = _train(
                run, stack, phase, epochs, swag_start, final_losses
            )
            histories.append(entry)
    return _group_result(plan, stack, collector, histories, best_epochs, final_losses)


@dataclass
class _Run:
    """What a training run of a group uses: the data, the loss, the progress
    bar and, once :meth:`started`, the particles' generators of this run."""

    plan: TrainingPlan
    X: torch.Tensor
    y: torch.Tensor
    particle_ids: np.ndarray
    device: torch.device
    criterion: ParticleLoss
    progress: EpochProgress | None
    #: The fit's stop signal, checked before every batch.
    stop: StopSignal | None = None
    #: Each particle's batch order, and its dropout.
    generators: list = field(default_factory=list)
    dropout_generators: list = field(default_factory=list)
    #: The most torch threads the run may try: in the main thread, the count
    #: it found on starting; elsewhere 1 (only the main thread sets the count).
    thread_limit: int = 1

    def started(self, seeds: np.ndarray, index: int, own_threads: bool) -> _Run:
        """The ``index``-th run of the group: its generators seeded, its threads set.

        Each particle's own batch order and dropout are seeded afresh for
        every run: after early stopping, a particle's SWAG epochs do not
        depend on how long its group pretrained. With ``own_threads`` (in
        the main thread, see :mod:`~sklearn_swag._training.threads`) the run
        chooses torch's thread count.
        """
        generators = [
            torch.Generator().manual_seed(_run_seed(s, index))
            for s in seeds[:, DATA_SEED]
        ]
        dropout_generators = [
            torch.Generator(device=self.device).manual_seed(
                _dropout_seed(_run_seed(s, index))
            )
            for s in seeds[:, DATA_SEED]
        ]
        # Never more threads than this process allows (OMP_NUM_THREADS, a loky
        # worker's share, the user's torch.set_num_threads). Asked in every
        # thread: torch settles a thread's own count when it is first asked,
        # which here is before the main thread may change the count.
        found = torch.get_num_threads()
        thread_limit = found if own_threads else 1
        if self.device.type == "cpu" and own_threads:
            set_thread_count(1)  # ThreadTuner tries more where it may pay
        return replace(
            self,
            generators=generators,
            dropout_generators=dropout_generators,
            thread_limit=thread_limit,
        )

    def net(
        self,
        phase: str,
        stack: ParticleStack,
        members: list[int],
        epochs: int,
        swag_start: int,
        monitor: PretrainingMonitor | None = None,
    ) -> tuple[_GroupNet, TrainingHistory, SWAGCollector | None]:
        """The skorch net that trains the particles ``members`` (of the group)
        as ``stack``, with the run's history and SWAG collector."""
        stack.dropout_generators = [self.dropout_generators[i] for i in members]
        if self.progress is not None:
            self.progress.start_run(phase, swag_start, monitor)
        callbacks, history, collector = _callbacks(
            self.plan,
            stack,
            len(self.X),
            self.particle_ids[members],
            swag_start,
            self.thread_limit,
            monitor,
            self.progress,
            self.stop,
        )
        net = _group_net(
            self.plan, stack, self.criterion, self.device, callbacks, epochs
        )
        net.particle_generators_ = [self.generators[i] for i in members]
        self.criterion.new_particles()
        return net, history, collector


def _initial_stack(plan: TrainingPlan, seeds: np.ndarray, modules) -> ParticleStack:
    """The group's stack: as given, of the given networks, or built from seeds."""
    if modules is None:
        modules = [plan.build_module(s) for s in seeds[:, INIT_SEED]]
    if isinstance(modules, ParticleStack):
        return modules
    return ParticleStack(modules, mode=plan.stack_mode, sample_ndim=plan.sample_ndim)


def _phases(plan: TrainingPlan) -> list[tuple[str, int, int]]:
    """The group's runs: ``(phase, epochs, pretraining epochs in the run)``.

    With early stopping the pretraining is a run of its own; otherwise one run
    ("both") holds the pretraining and the SWAG epochs.
    """
    if plan.early_stopping and plan.pretrain_epochs > 0:
        return [
            ("pretrain", plan.pretrain_epochs, plan.pretrain_epochs),
            ("swag", plan.swag_epochs, 0),
        ]
    return [("both", plan.pretrain_epochs + plan.swag_epochs, plan.pretrain_epochs)]


def _progress_bar(plan: TrainingPlan, particle_ids, position: int):
    """The group's progress bar over all its epochs (with ``plan.verbose``)."""
    if not plan.verbose:
        return None
    first, last = int(particle_ids[0]), int(particle_ids[-1])
    return EpochProgress(
        f"particles {first}-{last}" if last > first else f"particle {first}",
        total=plan.pretrain_epochs + plan.swag_epochs,
        position=position,
    )


@contextmanager
def _own_global_generators(seed: int, device: torch.device):
    """Own states for what draws from the global generators (a user module's
    dropout): seeded here, restored afterwards, and no other device touched."""
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.default_generators[cuda[0]].manual_seed(seed)
        yield


def _train(
    run: _Run,
    stack: ParticleStack,
    phase: str,
    epochs: int,
    swag_start: int,
    last_losses: torch.Tensor,
):
    """A run of every particle of the group, whose SWAG epochs follow
    ``swag_start`` epochs of pretraining.

    Returns
    -------
    entry : tuple
        The run's history entry ``(phase, history, net, members, None)``.
    collector : SWAGCollector
        The run's SWAG moments.
    last_losses : torch.Tensor of shape (P,)
        Each particle's loss on its last mini-batch (``last_losses``, the
        losses so far, updated).
    """
    last_losses = last_losses.clone()
    members = list(range(stack.n_particles))
    net, history, collector = run.net(phase, stack, members, epochs, swag_start)
    try:
        net.fit(run.X, run.y)
    except _Interrupted:
        raise KeyboardInterrupt from None
    _keep_latest_losses(run.criterion, last_losses, torch.arange(stack.n_particles))
    entry = (phase, history, net, torch.arange(stack.n_particles), None)
    return entry, collector, last_losses


def _keep_latest_losses(
    criterion: ParticleLoss, losses: torch.Tensor, members: torch.Tensor
) -> None:
    """Write the losses of the run's last mini-batch into ``losses[members]``.

    A run that ended before its first mini-batch (a user's callback can end
    it at its start) leaves the losses of the run before it.
    """
    if criterion.last_losses is not None:
        losses[members] = criterion.last_losses.detach().cpu().double()


def _pretraining_monitor(plan: TrainingPlan, validation, device) -> PretrainingMonitor:
    """Early stopping of the pretraining on the held-out rows."""
    return PretrainingMonitor(
        _read_only_tensor(validation[0], device),
        _read_only_tensor(validation[1], device),
        plan.n_iter_no_change,
        plan.tol,
        may_drop=_may_drop_stopped(plan),
    )


def _pretrain(
    run: _Run, stack: ParticleStack, monitor: PretrainingMonitor
) -> tuple[list, torch.Tensor, torch.Tensor]:
    """Pretraining with early stopping, leaving stopped particles out.

    A run trains the particles still improving; when the monitor says enough
    of them have stopped (:class:`_SomeStopped`), the stopped ones are put
    back at their best epoch in ``stack`` and the others go on in a smaller
    stack, with their weights, optimizer state, batch order, dropout
    generators and early-stopping state as they were. A particle therefore
    trains as it would have in the full stack (up to the rounding of a
    batched computation of another size), and the group stops paying for
    particles that have stopped.

    Returns
    -------
    runs : list
        History entries ``(phase, history, net, members, valid_losses)``.
    best_epochs : torch.Tensor of shape (P,)
        Each particle's best pretraining epoch.
    last_losses : torch.Tensor of shape (P,)
        Each particle's loss on its last mini-batch.
    """
    n = stack.n_particles
    device = run.X.device
    members = torch.arange(n)
    run_stack, state, runs = stack, None, []
    best_epochs = torch.zeros(n, dtype=torch.int64)
    last_losses = torch.full((n,), math.nan, dtype=torch.float64)
    remaining = run.plan.pretrain_epochs
    while True:
        who = members.tolist()
        net, history, _ = run.net(
            "pretrain", run_stack, who, remaining, remaining, monitor
        )
        # Particles that stop at the last epoch leave no epoch to go on with.
        dropping = _fit_until_stopped(run, net, state) and monitor.epochs_ < remaining
        runs.append(("pretrain", history, net, members, monitor.as_array()))
        _keep_latest_losses(run.criterion, last_losses, members)
        done = monitor.stopped.cpu() if dropping else torch.ones(len(who), dtype=bool)
        keep = (~done).nonzero().flatten()
        if dropping:  # taken before the stopped particles are restored
            next_stack = run_stack.subset(keep)
            state = _sliced_optimizer_state(net.optimizer_, keep)
            next_monitor = monitor.continued(keep.to(device))
        which = done.nonzero().flatten()
        monitor.restore_best(stack, which=which, positions=members[which])
        best_epochs[members[which]] = monitor.best_epoch_[which.to(device)].cpu()
        if not dropping:
            return runs, best_epochs, last_losses
        remaining -= monitor.epochs_
        members = members[keep]
        run_stack, monitor = next_stack, next_monitor


def _fit_until_stopped(run: _Run, net: _GroupNet, state: dict | None) -> bool:
    """Fit ``net`` until its epochs are over or its monitor stops it.

    With ``state``, the particles go on as they were: the optimizer starts
    from that state. Returns whether the monitor stopped the run with some
    particles still to train (:class:`_SomeStopped`).
    """
    try:
        if state is None:
            net.fit(run.X, run.y)
        else:  # the particles that go on, as they were
            net.initialize()
            net.optimizer_.load_state_dict(state)
            net.partial_fit(run.X, run.y)
    except _Interrupted:
        raise KeyboardInterrupt from None
    except (_PretrainingDone, _SomeStopped) as stop:
        net.notify("on_train_end", X=run.X, y=run.y)  # the user's callbacks
        if run.progress is not None:
            run.progress.on_epoch_end(net)  # the epoch the monitor ended
        return isinstance(stop, _SomeStopped)
    return False


def _may_drop_stopped(plan: TrainingPlan) -> bool:
    """Whether pretraining may go on without the particles that stopped.

    Only with an optimizer whose state is per weight (so that it can be cut
    along the particle axis) and without user callbacks, which would start
    afresh with every run.
    """
    known = isinstance(plan.optimizer, type) and issubclass(
        plan.optimizer, _ELEMENTWISE_OPTIMIZERS
    )
    return known and not plan.callbacks


def _group_result(
    plan: TrainingPlan,
    stack: ParticleStack,
    collector: SWAGCollector | None,
    histories: list,
    best_epochs: torch.Tensor | None,
    final_losses: torch.Tensor | None,
) -> dict:
    """What :func:`fit_group` returns, all on the CPU."""
    n = stack.n_particles
    stack = stack.to("cpu")
    stack.dropout_generators = None  # generators neither travel nor pickle
    mean, sq_mean, deviations, n_snapshots = _moments(plan, stack, collector)
    if best_epochs is not None:
        pretrain_epochs = best_epochs.numpy()
    else:
        pretrain_epochs = np.full(n, plan.pretrain_epochs)
    if final_losses is None:
        final_losses = torch.full((n,), math.nan, dtype=torch.float64)
    return {
        "stack": stack,
        "mean": mean.numpy(),
        "sq_mean": sq_mean.numpy(),
        "deviations": deviations.numpy(),
        "n_snapshots": n_snapshots.numpy(),
        "train_loss": final_losses.numpy().astype(np.float64),
        "history": _group_history(histories, n),
        "pretrain_epochs": pretrain_epochs.astype(np.int64),
    }


def _moments(plan: TrainingPlan, stack: ParticleStack, collector) -> tuple:
    """The SWAG moments of the group's particles, on the CPU.

    Without SWAG epochs the group is a deep ensemble: the posterior of each
    particle is its final weights. So it is when the SWAG run ended before
    its first snapshot (a user's callback can end it at its start).
    """
    moments = None if collector is None else collector.moments_
    if moments is not None and plan.swag_epochs > 0 and bool(moments.n_snapshots.all()):
        return (
            moments.mean.cpu(),
            moments.sq_mean.cpu(),
            moments.deviations.cpu(),
            moments.n_snapshots.cpu(),
        )
    n = stack.n_particles
    mean = stack.flat_weights().to(torch.float64)
    deviations = torch.zeros(
        n, 0, stack.n_params, dtype=getattr(torch, plan.deviation_dtype)
    )
    return mean, mean * mean, deviations, torch.zeros(n, dtype=torch.int64)


@contextmanager
def _closing(progress: EpochProgress | None):
    """Close the progress bar (if any) however training ends."""
    try:
        yield
    finally:
        if progress is not None:
            progress.close()


def _read_only_tensor(values: np.ndarray, device: torch.device) -> torch.Tensor:
    """``values`` as a tensor on ``device``, without a copy on the CPU.

    A process-based joblib backend hands large arrays to its workers as
    read-only memory maps; training only reads the rows, so they are used as
    they are rather than copied into every worker (torch warns about tensors
    it cannot write to).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.as_tensor(values).to(device)
