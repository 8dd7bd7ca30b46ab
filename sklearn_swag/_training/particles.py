"""Particles: seeds, groups, devices, and the training of one group.

MultiSWAG trains ``n_models`` independent SWAG particles. Every particle gets
its own seeds up front (:func:`particle_seeds`), so that what a particle learns
never depends on which group it lands in; the particles are then split into
one contiguous group per joblib worker (:func:`partition`), each group bound to
a device (:func:`group_devices`) and trained as one stacked network by a skorch
net (:func:`fit_group`).
"""

from __future__ import annotations

import copy
import math
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state
from skorch import NeuralNet
from torch import nn

from .._network.build import build_stack
from .._network.losses import ParticleLoss
from .._network.mlp import MLP
from .._network.stack import ParticleStack
from .._training.batches import ParticleBatches, training_batches
from .._training.callbacks import (
    DivergenceCheck,
    EpochProgress,
    LearningRatePlan,
    PretrainingMonitor,
    SWAGCollector,
    ThreadTuner,
    TrainingHistory,
    _PretrainingDone,
    _SomeStopped,
)
from .._training.threads import ThreadChooser, in_main_thread, threads_restored

#: Serialises the moments in which a worker thread borrows the global torch
#: random state to initialise a module, so threads never see each other's seed.
_GLOBAL_RNG_LOCK = threading.Lock()

#: Columns of :func:`particle_seeds`.
INIT_SEED, DATA_SEED, SAMPLE_SEED = 0, 1, 2

#: Streams of :func:`derived_rng`: one per random choice of a fit, so that
#: none of them depends on how many draws another one made.
PARTICLE_STREAM, SPLIT_STREAM, BN_ROWS_STREAM = 0, 1, 2


def root_seed(random_state) -> int:
    """The one seed every random choice of a fit derives from.

    An int is used as it is; a ``RandomState`` instance gives one draw; None
    takes fresh entropy from the operating system, so that the global numpy
    random state is neither read nor advanced.
    """
    if random_state is None:
        return int(np.random.SeedSequence().entropy % 2**63)
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def derived_rng(root: int, stream: int) -> np.random.Generator:
    """An independent numpy generator for one purpose (``SPLIT_STREAM``...)."""
    return np.random.default_rng(np.random.SeedSequence([int(root), int(stream)]))


def particle_seeds(root: int, n_models: int) -> np.ndarray:
    """Independent seeds for each particle.

    Particle ``i``'s seeds depend on ``root`` and ``i`` alone: particle ``i``
    of a fit with more particles is particle ``i`` of one with fewer.

    Parameters
    ----------
    root : int
        The fit's root seed (:func:`root_seed`).
    n_models : int
        Number of particles.

    Returns
    -------
    ndarray of shape (n_models, 3)
        Per particle: the seed of its initial weights, of its mini-batch order
        (and dropout), and of its posterior draws.
    """
    rows = [
        np.random.SeedSequence([int(root), PARTICLE_STREAM, i]).generate_state(3)
        for i in range(n_models)
    ]
    return (np.array(rows, dtype=np.int64) & np.iinfo(np.int32).max).reshape(
        n_models, 3
    )


def partition(n_models: int, n_jobs: int) -> list[np.ndarray]:
    """Split the particles into at most ``n_jobs`` contiguous, even groups."""
    n_groups = max(1, min(n_models, n_jobs))
    return [g for g in np.array_split(np.arange(n_models), n_groups) if len(g)]


def check_device(device: Any) -> torch.device:
    """Parse ``device`` and make sure torch can use it here.

    Raises
    ------
    ValueError
        If ``device`` is not a device name or the device is not available.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a torch device; use 'cpu', 'cuda' or "
            "'cuda:<index>'."
        ) from exc
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available; "
                "use device='cpu'."
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} does not exist: "
                f"{torch.cuda.device_count()} CUDA device(s) are visible."
            )
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(
                f"device={device!r} was requested but MPS is not available."
            )
    elif parsed.type != "cpu":
        raise ValueError(f"device={device!r} is not supported; use 'cpu' or 'cuda'.")
    return parsed


def resolve_devices(device: Any) -> list[torch.device]:
    """The devices the particle groups cycle through.

    ``"cuda"`` (without an index) stands for every visible GPU; a list or
    tuple names the devices one by one. Each is checked with
    :func:`check_device`.
    """
    names = list(device) if isinstance(device, (list, tuple)) else [device]
    if not names:
        raise ValueError("device must name at least one device, got an empty list.")
    devices: list[torch.device] = []
    for name in names:
        parsed = check_device(name)
        if parsed.type == "cuda" and parsed.index is None:
            devices += [
                torch.device("cuda", i) for i in range(torch.cuda.device_count())
            ]
        else:
            devices.append(parsed)
    return devices


def group_devices(devices: list[torch.device], n_groups: int) -> list[torch.device]:
    """The device of each group: round robin over ``devices``."""
    return [devices[i % len(devices)] for i in range(n_groups)]


@dataclass
class TrainingPlan:
    """Everything a worker needs to build and train its particles."""

    module: Any
    module_kwargs: dict
    n_features: int
    n_outputs: int
    criterion: Any
    criterion_kwargs: dict
    optimizer: Any
    optimizer_kwargs: dict
    iterator_kwargs: dict
    lr: float
    batch_size: int | None
    pretrain_epochs: int
    swag_epochs: int
    rank: int
    #: Learning rate of the SWAG epochs (None: ``lr``), reached after
    #: ``anneal_epochs``; snapshot every ``swag_every`` epochs.
    swa_lr: float | None = None
    anneal_epochs: int = 0
    swag_every: float = 1.0
    deviation_dtype: str = "float32"
    verbose: int = 0
    #: Most torch threads a group may use on a CPU, so that the workers
    #: together never ask for more threads than there are cores.
    max_threads: int | None = None
    #: Whether the targets carry a last column of row weights.
    weighted: bool = False
    #: Whether the targets are class indices (a classifier's).
    class_targets: bool = False
    #: Arguments of the built-in MLP that the estimator sets unless routed
    #: ``module__*`` parameters do.
    mlp_defaults: dict = field(default_factory=dict)
    #: Early stopping of the pretraining on the held-out rows.
    early_stopping: bool = False
    n_iter_no_change: int = 10
    tol: float = 1e-4
    #: The user's skorch callbacks (instances or ``(name, instance)``),
    #: copied into every group.
    callbacks: list = field(default_factory=list)
    #: How the particle stacks evaluate; set by :meth:`check`.
    stack_mode: str = "auto"
    #: Floating-point operations of one row's forward pass; set by
    #: :meth:`check`.
    flops_per_row: float = 0.0

    def build_module(self, seed: int) -> nn.Module:
        """One particle's network, initialised from ``seed``.

        The global torch random state is borrowed under a lock and restored.
        """
        with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
            # The CPU generator only: torch.manual_seed would reseed every
            # CUDA device of the caller too, which fork_rng does not restore.
            torch.default_generator.manual_seed(int(seed))
            return build_network(self.network_spec())

    def network_spec(self) -> dict:
        """What :func:`build_network` needs: plain data and the user's classes."""
        return {
            "module": self.module,
            "module_kwargs": dict(self.module_kwargs),
            "n_features": self.n_features,
            "n_outputs": self.n_outputs,
            "mlp_defaults": dict(self.mlp_defaults),
        }

    def build_criterion(self) -> nn.Module:
        if isinstance(self.criterion, nn.Module):
            return self.criterion
        return _build_routed(self.criterion, "criterion", self.criterion_kwargs)

    def check(self, modules: list[nn.Module], probe: torch.Tensor) -> str:
        """Build the parts once in the calling process, or fail clearly.

        Runs before any worker starts, so that a wrong routed parameter, an
        optimizer that would couple the particles, or a network that cannot
        be batched over particles, is reported here (with its warning) and
        not from inside a worker. Also measures the network's floating-point
        operations per row, from which :meth:`threads_for` sizes each group's
        threads.

        Parameters
        ----------
        modules : list of torch.nn.Module
            The first particles' networks (one or two are enough); they are
            not changed.
        probe : torch.Tensor of shape (n_rows, n_features)
            A few training rows.

        Returns
        -------
        str
            The evaluation mode the particle stacks will use.
        """
        self.build_criterion()
        check_optimizer_decouples(
            self.optimizer, self.optimizer_kwargs, self.lr, modules[0]
        )
        self.flops_per_row = _flops_per_row(modules[0], probe)
        return build_stack(modules, probe).mode

    def threads_for(self, n_particles: int, n_rows: int) -> int:
        """Torch threads for a group: as many as its work per step can use.

        A step of a small network is over in microseconds; intra-op threads
        then only wait on each other, and on a machine where other processes
        hold cores they wait far longer (a tiny network's fit can take 30x
        longer on two threads than on one). So a group may use one thread
        per ``FLOPS_PER_THREAD`` floating-point operations of a training
        step, at least one and at most ``max_threads``; where that is more
        than one, :class:`~sklearn_swag._training.callbacks.ThreadTuner` times the
        steps to choose between it and one thread.
        """
        rows = n_rows if self.batch_size is None else min(self.batch_size, n_rows)
        work = 3.0 * self.flops_per_row * rows * n_particles  # forward + backward
        wanted = max(1, int(work // FLOPS_PER_THREAD))
        if self.max_threads is None:
            return wanted
        return max(1, min(self.max_threads, wanted))


#: Floating-point operations of a training step worth trying one more torch
#: thread for. Measured on a 2-core CPU: a second thread starts to pay on a
#: quiet machine from about 1e7 per step; on a busy one it can cost 300x at
#: any size, which the timing of :class:`ThreadTuner` catches.
FLOPS_PER_THREAD = 5e6


def _flops_per_row(module: nn.Module, probe: torch.Tensor) -> float:
    """Floating-point operations of one forward pass, per row (0 if unknown)."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with (
            torch.no_grad(),
            torch.random.fork_rng(devices=[]),
            FlopCounterMode(display=False) as counter,
        ):
            copy.deepcopy(module).eval()(probe)
    except Exception:  # noqa: BLE001 - counting is advice, never a failure
        return 0.0
    return counter.get_total_flops() / max(1, len(probe))


#: Optimizers known to update every element from its own gradient history.
_ELEMENTWISE_OPTIMIZERS = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adamax,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.RMSprop,
    torch.optim.Adagrad,
    torch.optim.Adadelta,
    torch.optim.Rprop,
    torch.optim.ASGD,
)


def check_optimizer_decouples(
    optimizer, kwargs: dict, lr: float, module: nn.Module
) -> None:
    """Fail before training if ``optimizer`` would couple the particles.

    The particles of a group are trained as one stack: every parameter holds
    all of them along a leading axis, and one optimizer updates the stack. An
    optimizer that looks at more than one element at a time (LBFGS's line
    search, a factored second moment, a per-tensor trust ratio) would let one
    particle's gradients change another's update. Two steps are taken on a
    stack of two copies of every parameter, once with and once without a
    change to the second copy's gradients; the first copy must come out the
    same. Optimizers known to update each element from its own gradients
    (SGD, Adam, RMSprop, ...) are only built, which checks their routed
    parameters.

    Raises
    ------
    ValueError
        If the optimizer cannot step without a closure, or the first copy's
        update depends on the second copy's gradients.
    """
    name = getattr(optimizer, "__name__", repr(optimizer))
    if isinstance(optimizer, type) and issubclass(optimizer, _ELEMENTWISE_OPTIMIZERS):
        # Known to decouple and to step without a closure: building it checks
        # the routed parameters (a wrong one fails here, naming it).
        params = [nn.Parameter(torch.zeros(2, *p.shape)) for p in module.parameters()]
        _build_routed(optimizer, "optimizer", kwargs, params, lr=lr)
        return
    shapes = [tuple(p.shape) for p in module.parameters()]
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn((2, *shape), generator=generator) for shape in shapes]
    grads = [
        [torch.randn(p.shape, generator=generator) for p in start] for _ in range(2)
    ]
    other = [[g.clone() for g in step] for step in grads]
    for step in other:
        for g in step:
            g[1] = 3.0 * g[1] + 1.0
    outcomes = []
    for schedule in (grads, other):
        params = [nn.Parameter(p.clone()) for p in start]
        # A wrong routed parameter fails here, with a message naming it.
        opt = _build_routed(optimizer, "optimizer", kwargs, params, lr=lr)
        try:
            for step in schedule:
                for p, g in zip(params, step, strict=True):
                    p.grad = g.clone()
                opt.step()
        except Exception as exc:  # noqa: BLE001 - e.g. LBFGS wants a closure
            raise ValueError(
                f"optimizer={name} cannot train the particles as a stack "
                f"({type(exc).__name__}: {exc}). Use an optimizer that updates "
                "every weight from its own gradients, such as Adam, AdamW, SGD "
                "or RMSprop."
            ) from exc
        outcomes.append([p.detach()[0] for p in params])
    for a, b in zip(*outcomes, strict=True):
        if not torch.allclose(a, b, rtol=1e-6, atol=1e-9):
            raise ValueError(
                f"optimizer={name} couples the particles: one particle's update "
                "depends on the gradients of another in its group, because the "
                "particles are trained as one stacked set of weights. Use an "
                "optimizer that updates every weight from its own gradients, "
                "such as Adam, AdamW, SGD or RMSprop."
            )


def build_network(spec: dict) -> nn.Module:
    """One particle's network, as :meth:`TrainingPlan.network_spec` describes it.

    A module class is called with its routed arguments, an instance is copied
    and re-initialised, and None builds the built-in :class:`MLP`. The new
    weights come from the global torch random state.
    """
    module, kwargs = spec["module"], spec["module_kwargs"]
    if isinstance(module, nn.Module):
        return _reinitialised_copy(module)
    if module is None:
        return _build_routed(
            MLP,
            "module",
            {**spec["mlp_defaults"], **kwargs},
            n_features=spec["n_features"],
            n_outputs=spec["n_outputs"],
        )
    return _build_routed(module, "module", kwargs)


def _build_routed(factory, prefix: str, routed: dict, *args, **fixed):
    """``factory(*args, **fixed, **routed)``, naming the routed parameters on error."""
    try:
        return factory(*args, **fixed, **routed)
    except TypeError as exc:
        names = ", ".join(f"{prefix}__{k}" for k in routed) or "none"
        raise TypeError(
            f"Could not build {getattr(factory, '__name__', factory)} with the "
            f"routed parameters ({names}): {exc}"
        ) from exc


#: Optimizers with a fused implementation: one kernel updates every tensor.
_FUSABLE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.Adagrad)


def _fast_optimizer_kwargs(optimizer, kwargs: dict, device: torch.device) -> dict:
    """Ask for the fused implementation, unless the user chose one.

    The fused kernels compute the same update as the default loop over
    tensors, in one pass; they exist for CPU and CUDA tensors.
    """
    chosen = {"fused", "foreach", "differentiable", "capturable"} & set(kwargs)
    if optimizer in _FUSABLE and not chosen and device.type in ("cpu", "cuda"):
        return {**kwargs, "fused": True}
    return kwargs


def _run_seed(data_seed, run: int) -> int:
    """The data seed of a particle's ``run``-th training run (the first: itself)."""
    if run == 0:
        return int(data_seed)
    return int(np.random.SeedSequence([int(data_seed), run]).generate_state(1)[0])


def _dropout_seed(data_seed) -> int:
    """A seed for a particle's dropout masks, apart from its shuffling seed."""
    return (int(data_seed) * 2654435761 + 1) % 2**63


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


def _reinitialised_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose layers are re-initialised."""
    copy_ = copy.deepcopy(module)
    for sub in copy_.modules():
        reset = getattr(sub, "reset_parameters", None)
        if callable(reset):
            reset()
    return copy_


class _Interrupted(BaseException):
    """A ``KeyboardInterrupt`` on its way past skorch, which would swallow it."""


class _GroupNet(NeuralNet):
    """A skorch net that trains one particle stack.

    Compared with a plain ``NeuralNet`` it has no default callbacks (the
    timer, the loss scorers and the printed log cost more than a tiny
    network's step), it feeds batches through :class:`ParticleBatches`, and
    Ctrl-C stops the fit instead of ending training early with a
    half-trained model (skorch's ``partial_fit`` catches
    ``KeyboardInterrupt``).
    """

    def get_default_callbacks(self):
        return []

    def fit_loop(self, *args, **kwargs):
        try:
            return super().fit_loop(*args, **kwargs)
        except KeyboardInterrupt as exc:
            raise _Interrupted from exc

    def predict(self, X):
        """The mean over the group's particles, in the units the networks learn.

        What a user's scoring callback (``EpochScoring``) gets from
        ``net.predict``: one prediction per row, as from a single network.
        """
        X = getattr(X, "X", X)  # a skorch Dataset
        X_t = torch.as_tensor(np.asarray(X, dtype=np.float32), device=self.device)
        stack = self.module_
        training = stack.training
        try:
            with torch.no_grad():
                out = stack.eval()(X_t).mean(dim=0)
        finally:
            stack.train(training)
        out = out.cpu().numpy()
        return out[:, 0] if out.shape[1] == 1 else out

    def get_iterator(self, dataset, training=False):
        kwargs = self.get_params_for("iterator_train" if training else "iterator_valid")
        batch_size = kwargs.pop("batch_size", self.batch_size)
        if batch_size in (None, -1):
            batch_size = len(dataset)
        return ParticleBatches(
            dataset,
            batch_size,
            self.particle_generators_,
            merge_single_row=self.module_.normalises_batches,
            **kwargs,
        )


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
        Their rows of :func:`particle_seeds`.
    device : torch.device
        Where to train.
    modules : list of torch.nn.Module, ParticleStack or None, default=None
        The particles' initialised networks, or their stack (built by the
        caller, which keeps the tracing of a network out of worker threads:
        torch.fx patches module calls process-wide while it traces); built
        from ``seeds`` when None.
    validation : tuple of ndarray or None, default=None
        The held-out rows ``(X, y)``, for early stopping of the pretraining
        (``plan.early_stopping``).
    position : int, default=0
        The line of the group's progress bar (with ``plan.verbose``).

    Returns
    -------
    dict
        ``stack`` (the trained :class:`ParticleStack`, on the CPU), ``mean``,
        ``sq_mean``, ``deviations``, ``n_snapshots``, ``train_loss``,
        ``history`` and ``pretrain_epochs`` (per particle: the pretraining
        epoch whose weights the SWAG phase started from), all on the CPU.
    """
    if modules is None:
        modules = [plan.build_module(s) for s in seeds[:, INIT_SEED]]
    if isinstance(modules, ParticleStack):
        stack = modules
    else:
        stack = ParticleStack(modules, mode=plan.stack_mode)
    criterion = ParticleLoss(
        plan.build_criterion(), weighted=plan.weighted, class_targets=plan.class_targets
    )
    X_t, y_t = _read_only_tensor(X, device), _read_only_tensor(y, device)
    early = plan.early_stopping and plan.pretrain_epochs > 0
    phases = (
        [
            ("pretrain", plan.pretrain_epochs, plan.pretrain_epochs),
            ("swag", plan.swag_epochs, 0),
        ]
        if early
        else [("both", plan.pretrain_epochs + plan.swag_epochs, plan.pretrain_epochs)]
    )
    cuda = [device.index or 0] if device.type == "cuda" else []
    histories = []
    collector = progress = best_epochs = final_losses = None
    if plan.verbose:
        first, last = int(particle_ids[0]), int(particle_ids[-1])
        progress = EpochProgress(
            f"particles {first}-{last}" if last > first else f"particle {first}",
            total=plan.pretrain_epochs + plan.swag_epochs,
            position=position,
        )
    with (
        torch.random.fork_rng(devices=cuda),
        threads_restored(not_if_thread=True),
        _closing(progress),
    ):
        # Own states for what draws from the global generators (a user
        # module's dropout): seeded here, restored afterwards, and no other
        # device touched.
        torch.default_generator.manual_seed(int(seeds[0, DATA_SEED]))
        if cuda:
            torch.cuda.default_generators[cuda[0]].manual_seed(int(seeds[0, DATA_SEED]))
        for run, (phase, epochs, swag_start) in enumerate(phases):
            if epochs == 0:
                continue
            # Each particle's own batch order and dropout, seeded afresh for
            # every run: after early stopping, a particle's SWAG epochs do not
            # depend on how long its group pretrained.
            generators = [
                torch.Generator().manual_seed(_run_seed(s, run))
                for s in seeds[:, DATA_SEED]
            ]
            dropout_generators = [
                torch.Generator(device=device).manual_seed(
                    _dropout_seed(_run_seed(s, run))
                )
                for s in seeds[:, DATA_SEED]
            ]
            # torch's thread count is the process's: a group that runs in a
            # thread of the caller (threading backend) leaves it alone.
            own_threads = in_main_thread()
            if device.type == "cpu" and own_threads:
                torch.set_num_threads(1)  # ThreadTuner tries more where it may pay
            run_args = (plan, X_t, y_t, generators, dropout_generators, particle_ids)
            if phase == "pretrain":
                monitor = PretrainingMonitor(
                    _read_only_tensor(validation[0], device),
                    _read_only_tensor(validation[1], device),
                    plan.n_iter_no_change,
                    plan.tol,
                    may_drop=_may_drop_stopped(plan),
                )
                runs, best_epochs, final_losses = _pretrain(
                    *run_args, stack, criterion, monitor, own_threads, progress
                )
                histories += runs
                if progress is not None:
                    progress.end_pretraining(plan.swag_epochs)
                continue
            stack.dropout_generators = dropout_generators
            if progress is not None:
                progress.start_run(phase, swag_start)
            callbacks, history, collector = _callbacks(
                plan,
                stack,
                len(X),
                particle_ids,
                swag_start,
                own_threads,
                None,
                progress,
            )
            net = _group_net(plan, stack, criterion, device, callbacks, epochs)
            net.particle_generators_ = generators
            criterion.new_particles()
            try:
                net.fit(X_t, y_t)
            except _Interrupted:
                raise KeyboardInterrupt from None
            final_losses = criterion.last_losses.detach().cpu().double()
            histories.append((phase, history, net, torch.arange(len(seeds)), None))

    stack = stack.to("cpu")
    stack.dropout_generators = None  # generators neither travel nor pickle
    if collector is not None and plan.swag_epochs > 0:
        moments = collector.moments_
        mean = moments.mean.cpu()
        sq_mean = moments.sq_mean.cpu()
        deviations = moments.deviations.cpu()
        n_snapshots = moments.n_snapshots.cpu()
    else:  # a deep ensemble: the posterior of each particle is its final weights
        mean = stack.flat_weights().to(torch.float64)
        sq_mean = mean * mean
        deviations = torch.zeros(
            len(seeds), 0, stack.n_params, dtype=getattr(torch, plan.deviation_dtype)
        )
        n_snapshots = torch.zeros(len(seeds), dtype=torch.int64)
    if best_epochs is not None:
        pretrain_epochs = best_epochs.numpy()
    else:
        pretrain_epochs = np.full(len(seeds), plan.pretrain_epochs)
    if final_losses is None:
        final_losses = torch.full((len(seeds),), math.nan, dtype=torch.float64)
    return {
        "stack": stack,
        "mean": mean.numpy(),
        "sq_mean": sq_mean.numpy(),
        "deviations": deviations.numpy(),
        "n_snapshots": n_snapshots.numpy(),
        "train_loss": final_losses.numpy().astype(np.float64),
        "history": _group_history(histories, len(seeds)),
        "pretrain_epochs": pretrain_epochs.astype(np.int64),
    }


def _pretrain(
    plan: TrainingPlan,
    X_t: torch.Tensor,
    y_t: torch.Tensor,
    generators: list,
    dropout_generators: list,
    particle_ids: np.ndarray,
    stack: ParticleStack,
    criterion: ParticleLoss,
    monitor: PretrainingMonitor,
    own_threads: bool,
    progress: EpochProgress | None,
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
    device = X_t.device
    members = torch.arange(n)
    run_stack, state, runs = stack, None, []
    best_epochs = torch.zeros(n, dtype=torch.int64)
    last_losses = torch.full((n,), math.nan, dtype=torch.float64)
    remaining = plan.pretrain_epochs
    while True:
        who = members.tolist()
        run_stack.dropout_generators = [dropout_generators[i] for i in who]
        if progress is not None:
            progress.start_run("pretrain", remaining, monitor)
        callbacks, history, _ = _callbacks(
            plan,
            run_stack,
            len(X_t),
            particle_ids[who],
            remaining,
            own_threads,
            monitor,
            progress,
        )
        net = _group_net(plan, run_stack, criterion, device, callbacks, remaining)
        net.particle_generators_ = [generators[i] for i in who]
        criterion.new_particles()
        dropping = False
        try:
            if state is None:
                net.fit(X_t, y_t)
            else:  # the particles that go on, as they were
                net.initialize()
                net.optimizer_.load_state_dict(state)
                net.partial_fit(X_t, y_t)
        except _Interrupted:
            raise KeyboardInterrupt from None
        except (_PretrainingDone, _SomeStopped) as stop:
            dropping = isinstance(stop, _SomeStopped)
            net.notify("on_train_end", X=X_t, y=y_t)  # the user's callbacks
            if progress is not None:
                progress.on_epoch_end(net)  # the epoch the monitor ended
        runs.append(("pretrain", history, net, members, monitor.as_array()))
        last_losses[members] = criterion.last_losses.detach().cpu().double()
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


def _sliced_optimizer_state(optimizer: torch.optim.Optimizer, keep: torch.Tensor):
    """The optimizer's state dict with only the particles at ``keep``.

    Every state tensor shaped like its parameter is cut along the particle
    axis; scalars (Adam's step count, shared by the particles) are kept.
    """
    state = optimizer.state_dict()
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def cut(value, shape):
        if torch.is_tensor(value) and value.ndim and value.shape == shape:
            return value[keep.to(value.device)]
        return value

    # New dicts: the state dict shares its entries with the optimizer's state.
    state["state"] = {
        index: {key: cut(value, params[index].shape) for key, value in entry.items()}
        for index, entry in state["state"].items()
    }
    return state


def _callbacks(
    plan: TrainingPlan,
    stack: ParticleStack,
    n_rows: int,
    particle_ids: np.ndarray,
    swag_start: int,
    own_threads: bool = True,
    monitor: PretrainingMonitor | None = None,
    progress: EpochProgress | None = None,
) -> tuple[list, TrainingHistory, SWAGCollector | None]:
    """The callbacks of one training run of a group.

    ``swag_start`` epochs of pretraining come first, then SWAG epochs until
    the run ends. With ``monitor`` (early stopping) the run is pretraining
    alone: no snapshots, and the monitor right after the history, so that the
    epoch it ends is recorded.

    Returns
    -------
    callbacks : list
    history : TrainingHistory
    collector : SWAGCollector or None
        None with ``monitor``.
    """
    steps_per_epoch = len(
        training_batches(
            n_rows,
            plan.batch_size,
            bool(plan.iterator_kwargs.get("drop_last", False)),
            stack.normalises_batches,
        )
    )
    callbacks: list = [("divergence", DivergenceCheck(list(map(int, particle_ids))))]
    if plan.swa_lr is not None:
        rates = LearningRatePlan(plan.lr, plan.swa_lr, swag_start, plan.anneal_epochs)
        callbacks.append(("learning_rate", rates))
    collector = None
    if monitor is None:
        collector = SWAGCollector(
            start_epoch=swag_start,
            rank=plan.rank,
            deviation_dtype=getattr(torch, plan.deviation_dtype),
            every_steps=max(1, round(plan.swag_every * steps_per_epoch)),
        )
        callbacks.append(("swag", collector))
    history = TrainingHistory(swag_start)
    callbacks.append(("history", history))
    if monitor is not None:
        callbacks.append(("early_stopping", monitor))
    # The user's callbacks, a copy for every group: after the SWAG collection
    # (so a learning-rate scheduler steps after the epoch it ran).
    callbacks += [copy.deepcopy(cb) for cb in plan.callbacks]
    if progress is not None:
        callbacks.append(("progress", progress))
    # Never more threads than this process allows (OMP_NUM_THREADS, a loky
    # worker's share, the user's torch.set_num_threads).
    threads = min(plan.threads_for(len(particle_ids), n_rows), torch.get_num_threads())
    on_cpu = next(stack.parameters()).device.type == "cpu"
    if on_cpu and own_threads and threads > 1:
        callbacks.append(("threads", ThreadTuner(ThreadChooser(threads))))
    return callbacks, history, collector


def _group_net(plan, stack, criterion, device, callbacks, epochs) -> _GroupNet:
    """The skorch net of one training run of a group, with a fresh optimizer."""
    return _GroupNet(
        module=stack,
        criterion=criterion,
        optimizer=plan.optimizer,
        lr=plan.lr,
        max_epochs=epochs,
        batch_size=-1 if plan.batch_size is None else plan.batch_size,
        train_split=None,
        callbacks=callbacks,
        device=device,
        **{
            f"optimizer__{k}": v
            for k, v in _fast_optimizer_kwargs(
                plan.optimizer, plan.optimizer_kwargs, device
            ).items()
        },
        **{f"iterator_train__{k}": v for k, v in plan.iterator_kwargs.items()},
    )


def _group_history(runs: list, n_particles: int) -> dict:
    """The group's runs as per-particle arrays, epoch after epoch.

    A run that trained some of the particles (pretraining goes on without
    those that stopped) leaves the others' losses NaN in its epochs.
    """
    losses, valid, rates, phases, records = [], [], [], [], []
    start_loss = np.full(n_particles, np.nan)
    for phase, history, net, members, scores in runs:
        arrays = history.as_arrays()
        n_epochs = len(arrays["lr"])
        rows = members.numpy()
        loss = np.full((n_particles, n_epochs), np.nan)
        if arrays["train_loss"] is not None:
            loss[rows] = arrays["train_loss"]
        losses.append(loss)
        held_out = np.full((n_particles, n_epochs), np.nan)
        if scores is not None:
            held_out[rows, : scores.shape[1]] = scores
        valid.append(held_out)
        if np.isnan(start_loss).all() and arrays["start_loss"] is not None:
            start_loss[rows] = arrays["start_loss"]
        rates.append(arrays["lr"])
        if phase == "both":
            start = history.start_epoch
            phases.append(np.where(np.arange(n_epochs) < start, "pretrain", "swag"))
        else:
            phases.append(np.full(n_epochs, phase))
        records += [
            {k: v for k, v in row.items() if k != "batches"} for row in net.history
        ]
    return {
        "train_loss": np.concatenate(losses, axis=1),
        "valid_loss": np.concatenate(valid, axis=1),
        "lr": np.concatenate(rates),
        "phase": np.concatenate(phases),
        "start_loss": start_loss,
        "groups": [records],
    }


def merge_groups(results: list[dict]) -> dict:
    """Join the results of :func:`fit_group` in particle order."""
    keys = (
        "mean",
        "sq_mean",
        "deviations",
        "n_snapshots",
        "train_loss",
        "pretrain_epochs",
    )
    if len(results) == 1:  # no copy: the deviations can be most of the memory
        merged = {key: results[0][key] for key in keys}
    else:
        merged = {key: np.concatenate([r[key] for r in results]) for key in keys}
    merged["stack"] = ParticleStack.concatenate([r["stack"] for r in results])
    merged["history"] = join_histories(
        [r["history"] for r in results], [len(r["mean"]) for r in results]
    )
    return merged


def join_histories(histories: list[dict], sizes: list[int]) -> dict:
    """Per-particle histories of groups, padded to the longest group.

    Groups that stop pretraining early run fewer epochs; their particles'
    rows end in NaN (losses, learning rates) and "" (phases).
    """
    n_epochs = max(h["train_loss"].shape[1] for h in histories)

    def pad(values, size, fill):
        values = np.asarray(values)
        if values.ndim == 1:  # one row for every particle of the group
            values = np.broadcast_to(values, (size, len(values)))
        out = np.full((size, n_epochs), fill, dtype=values.dtype)
        out[:, : values.shape[1]] = values
        return out

    joined = {}
    for key, fill in (
        ("train_loss", np.nan),
        ("valid_loss", np.nan),
        ("lr", np.nan),
        ("phase", ""),
    ):
        joined[key] = np.concatenate(
            [pad(h[key], n, fill) for h, n in zip(histories, sizes, strict=True)]
        )
    joined["start_loss"] = np.concatenate(  # absent from models saved before it
        [
            h.get("start_loss", np.full(n, np.nan))
            for h, n in zip(histories, sizes, strict=True)
        ]
    )
    joined["groups"] = [group for h in histories for group in h["groups"]]
    return joined
