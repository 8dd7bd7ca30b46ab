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
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from skorch import NeuralNet
from torch import nn

from ._callbacks import DivergenceCheck, EpochProgress, SWAGCollector
from ._mlp import MLP
from ._stacking import ParticleBatches, ParticleLoss, ParticleStack, build_stack

#: Serialises the moments in which a worker thread borrows the global torch
#: random state to initialise a module, so threads never see each other's seed.
_GLOBAL_RNG_LOCK = threading.Lock()

#: Columns of :func:`particle_seeds`.
INIT_SEED, DATA_SEED, SAMPLE_SEED = 0, 1, 2


def particle_seeds(random_state: np.random.RandomState, n_models: int) -> np.ndarray:
    """Independent seeds for each particle.

    Parameters
    ----------
    random_state : numpy.random.RandomState
        The estimator's random state, already checked.
    n_models : int
        Number of particles.

    Returns
    -------
    ndarray of shape (n_models, 3)
        Per particle: the seed of its initial weights, of its mini-batch order
        (and dropout), and of its posterior draws.
    """
    return random_state.randint(np.iinfo(np.int32).max, size=(n_models, 3))


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
    deviation_dtype: str = "float32"
    verbose: int = 0
    #: Most torch threads a group may use on a CPU, so that the workers
    #: together never ask for more threads than there are cores.
    max_threads: int | None = None
    #: How the particle stacks evaluate; set by :meth:`check`.
    stack_mode: str = "auto"

    def build_module(self, seed: int) -> nn.Module:
        """One particle's network, initialised from ``seed``.

        The global torch random state is borrowed under a lock and restored.
        """
        with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            if isinstance(self.module, nn.Module):
                return _reinitialised_copy(self.module)
            if self.module is None:
                return _build_routed(
                    MLP,
                    "module",
                    self.module_kwargs,
                    n_features=self.n_features,
                    n_outputs=self.n_outputs,
                )
            return _build_routed(self.module, "module", self.module_kwargs)

    def build_criterion(self) -> nn.Module:
        if isinstance(self.criterion, nn.Module):
            return self.criterion
        return _build_routed(self.criterion, "criterion", self.criterion_kwargs)

    def check(self, modules: list[nn.Module], probe: torch.Tensor) -> str:
        """Build the parts once in the calling process, or fail clearly.

        Runs before any worker starts, so that a wrong routed parameter, or a
        network that cannot be batched over particles, is reported here (with
        its warning) and not from inside a worker.

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
        _build_routed(
            self.optimizer,
            "optimizer",
            self.optimizer_kwargs,
            modules[0].parameters(),
            lr=self.lr,
        )
        return build_stack(modules, probe).mode


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


def _dropout_seed(data_seed) -> int:
    """A seed for a particle's dropout masks, apart from its shuffling seed."""
    return (int(data_seed) * 2654435761 + 1) % 2**63


@contextmanager
def _thread_limit(max_threads: int | None):
    """Cap torch's intra-op threads for the duration of a block."""
    previous = torch.get_num_threads()
    if max_threads is None or previous <= max_threads:
        yield
        return
    torch.set_num_threads(max_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _reinitialised_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose layers are re-initialised."""
    copy_ = copy.deepcopy(module)
    for sub in copy_.modules():
        reset = getattr(sub, "reset_parameters", None)
        if callable(reset):
            reset()
    return copy_


class _GroupNet(NeuralNet):
    """A skorch net that trains one particle stack.

    Compared with a plain ``NeuralNet`` it has no default callbacks (the
    timer, the loss scorers and the printed log cost more than a tiny
    network's step) and it feeds batches through :class:`ParticleBatches`.
    """

    def get_default_callbacks(self):
        return []

    def get_iterator(self, dataset, training=False):
        kwargs = self.get_params_for("iterator_train" if training else "iterator_valid")
        batch_size = kwargs.pop("batch_size", self.batch_size)
        if batch_size in (None, -1):
            batch_size = len(dataset)
        return ParticleBatches(dataset, batch_size, self.particle_generators_, **kwargs)


def fit_group(
    plan: TrainingPlan,
    X: np.ndarray,
    y: np.ndarray,
    particle_ids: np.ndarray,
    seeds: np.ndarray,
    device: torch.device,
    modules: list[nn.Module] | None = None,
) -> dict:
    """Train one group of particles and collect their SWAG moments.

    Parameters
    ----------
    plan : TrainingPlan
        What to build and how long to train.
    X : ndarray of shape (n_samples, n_features), float32
    y : ndarray of shape (n_samples, n_outputs), float32
    particle_ids : ndarray of shape (P,)
        Estimator-wide numbers of the particles, for messages.
    seeds : ndarray of shape (P, 3)
        Their rows of :func:`particle_seeds`.
    device : torch.device
        Where to train.
    modules : list of torch.nn.Module, default=None
        The particles' initialised networks; built from ``seeds`` when None.

    Returns
    -------
    dict
        ``stack`` (the trained :class:`ParticleStack`, on the CPU), ``mean``,
        ``sq_mean``, ``deviations``, ``n_snapshots`` and ``train_loss``, all
        on the CPU.
    """
    if modules is None:
        modules = [plan.build_module(s) for s in seeds[:, INIT_SEED]]
    X_t = torch.as_tensor(X)
    y_t = torch.as_tensor(y)
    stack = ParticleStack(modules, mode=plan.stack_mode)
    criterion = ParticleLoss(plan.build_criterion())
    collector = SWAGCollector(
        start_epoch=plan.pretrain_epochs,
        rank=plan.rank,
        deviation_dtype=getattr(torch, plan.deviation_dtype),
    )
    callbacks: list = [
        ("divergence", DivergenceCheck(list(map(int, particle_ids)))),
        ("swag", collector),
    ]
    if plan.verbose:
        first, last = int(particle_ids[0]), int(particle_ids[-1])
        callbacks.append(("progress", EpochProgress(f"particles {first}-{last}")))
    net = _GroupNet(
        module=stack,
        criterion=criterion,
        optimizer=plan.optimizer,
        lr=plan.lr,
        max_epochs=plan.pretrain_epochs + plan.swag_epochs,
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
    net.particle_generators_ = [
        torch.Generator().manual_seed(int(s)) for s in seeds[:, DATA_SEED]
    ]
    stack.dropout_generators = [
        torch.Generator(device=device).manual_seed(_dropout_seed(s))
        for s in seeds[:, DATA_SEED]
    ]
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), _thread_limit(plan.max_threads):
        torch.manual_seed(int(seeds[0, DATA_SEED]))
        net.fit(X_t.to(device), y_t.to(device))

    stack = net.module_.to("cpu")
    stack.dropout_generators = None  # generators neither travel nor pickle
    if plan.swag_epochs > 0:
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
    return {
        "stack": stack,
        "mean": mean.numpy(),
        "sq_mean": sq_mean.numpy(),
        "deviations": deviations.numpy(),
        "n_snapshots": n_snapshots.numpy(),
        "train_loss": criterion.last_losses.cpu().numpy().astype(np.float64),
    }


def merge_groups(results: list[dict]) -> dict:
    """Join the results of :func:`fit_group` in particle order."""
    keys = ("mean", "sq_mean", "deviations", "n_snapshots", "train_loss")
    if len(results) == 1:  # no copy: the deviations can be most of the memory
        merged = {key: results[0][key] for key in keys}
    else:
        merged = {key: np.concatenate([r[key] for r in results]) for key in keys}
    merged["stack"] = ParticleStack.concatenate([r["stack"] for r in results])
    return merged
