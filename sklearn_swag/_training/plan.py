"""The training plan: what a worker needs to build and train its particles.

:class:`TrainingPlan` is plain data that travels to every joblib worker: the
network, criterion and optimizer with their routed parameters, the epochs and
the SWAG settings. It builds each particle's network from its seed, checks
the parts once in the calling process (:meth:`TrainingPlan.check`), and sizes
the torch threads of a group from the network's floating-point operations.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._network.build import build_stack
from .optimizers import check_optimizer_decouples
from .routed import _build_routed, build_network

#: Serialises the moments in which a worker thread borrows the global torch
#: random state to initialise a module, so threads never see each other's seed.
_GLOBAL_RNG_LOCK = threading.Lock()


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
    #: Axes of one sample (1 for rows of features, 3 for ``(C, H, W)``
    #: images); ``n_features`` counts its values.
    sample_ndim: int = 1
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
        probe : torch.Tensor of shape (n_rows, n_features) or (n_rows, ...)
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
