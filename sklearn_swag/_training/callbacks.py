"""skorch callbacks that turn a training run into SWAG.

skorch runs the training loop; these callbacks watch it. :class:`SWAGCollector`
adds one snapshot of every particle's weights to the SWAG moments at the end of
each SWAG epoch, :class:`DivergenceCheck` stops a run whose loss is no longer
finite, :class:`LearningRatePlan` sets each epoch's learning rate,
:class:`PretrainingMonitor` stops the pretraining particle by particle,
:class:`ThreadTuner` times the training steps to choose the number of torch
threads, :class:`StopCheck` ends a run whose fit was stopped, and
:class:`EpochProgress` draws a progress bar. The user's own skorch
callbacks are checked against these by :func:`_checked_callbacks`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from skorch.callbacks import Callback, EarlyStopping, LRScheduler

from .._posterior.swag import SWAGMoments
from .stopping import StopSignal
from .threads import ThreadChooser


class SWAGCollector(Callback):
    """Collect SWAG moments of a particle stack during its SWAG epochs.

    Parameters
    ----------
    start_epoch : int
        Epochs of plain training before collection starts.
    rank : int
        Maximum number of deviation rows kept per particle.
    deviation_dtype : torch.dtype, default=torch.float32
        Storage type of the deviation rows.
    every_steps : int or None, default=None
        Take a snapshot after every ``every_steps`` training steps of the
        SWAG epochs; None takes one at the end of every SWAG epoch.

    Attributes
    ----------
    moments_ : SWAGMoments or None
        The statistics collected so far; created at the start of training.
    """

    def __init__(
        self,
        start_epoch: int,
        rank: int,
        deviation_dtype: torch.dtype = torch.float32,
        every_steps: int | None = None,
    ) -> None:
        self.start_epoch = start_epoch
        self.rank = rank
        self.deviation_dtype = deviation_dtype
        self.every_steps = every_steps

    def initialize(self):
        self.moments_ = None
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        stack = net.module_
        self.moments_ = SWAGMoments(
            stack.n_particles,
            stack.n_params,
            self.rank,
            device=next(stack.parameters()).device,
            deviation_dtype=self.deviation_dtype,
        )
        self._steps = 0

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        if self.every_steps is None or not training:
            return
        if len(net.history) > self.start_epoch:
            self._steps += 1
            if self._steps % self.every_steps == 0:
                self.moments_.collect(net.flat_weights())

    def on_epoch_end(self, net, **kwargs):
        if self.every_steps is None and len(net.history) > self.start_epoch:
            self.moments_.collect(net.flat_weights())


class LearningRatePlan(Callback):
    """The learning rate of each epoch: ``lr``, then annealed to ``swa_lr``.

    Pretraining runs at ``lr``. The SWAG epochs anneal it to ``swa_lr`` over
    their first ``anneal_epochs`` epochs along a cosine, as
    :class:`torch.optim.swa_utils.SWALR` does, and keep ``swa_lr`` after.

    Parameters
    ----------
    lr : float
        Learning rate of the pretraining epochs.
    swa_lr : float
        Learning rate of the SWAG epochs once annealed.
    start_epoch : int
        Number of pretraining epochs.
    anneal_epochs : int
        SWAG epochs over which the rate moves from ``lr`` to ``swa_lr``; 0
        switches at once.
    """

    def __init__(
        self, lr: float, swa_lr: float, start_epoch: int, anneal_epochs: int
    ) -> None:
        self.lr = lr
        self.swa_lr = swa_lr
        self.start_epoch = start_epoch
        self.anneal_epochs = anneal_epochs

    def rate(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (1-based)."""
        into_swag = epoch - self.start_epoch
        if into_swag <= 0:
            return self.lr
        if into_swag > self.anneal_epochs:
            return self.swa_lr
        # SWALR's cosine: from lr at the start to swa_lr after anneal_epochs.
        # Written out rather than driving torch's SWALR, measured on 72
        # settings (lr, swa_lr, start_epoch, anneal_epochs): through skorch's
        # LRScheduler (built at the start of a run, stepped after each epoch,
        # the pretraining by a SequentialLR) the annealing starts an epoch
        # late, so 54 of the 72 schedules differ; stepped before each SWAG
        # epoch instead, SWALR matches only to rounding (390 of 864 annealing
        # rates differ, by up to 1.8e-15 relative: it recovers the starting
        # rate from the current one at every step), which would change the
        # trained weights in their last bits, and in a SWAG-only run it steps
        # before the optimizer does (torch warns). The test compares both.
        done = into_swag / self.anneal_epochs
        weight = (1.0 - math.cos(math.pi * done)) / 2.0
        return self.lr + (self.swa_lr - self.lr) * weight

    def on_epoch_begin(self, net, **kwargs):
        rate = self.rate(len(net.history))
        for group in net.optimizer_.param_groups:
            group["lr"] = rate


#: ``swa_lr="auto"``: this many times the share of the training rows in one
#: batch, at most ``_AUTO_SWA_LR_MAX``. The rate of constant SGD whose iterates
#: sample a posterior shrinks as batch / rows (Mandt et al. 2017); the factor
#: was chosen on the UCI benchmark (``benchmarks/bench_uci.py``).
_AUTO_SWA_LR_FACTOR = 0.1
_AUTO_SWA_LR_MAX = 0.01


def _swa_lr(swa_lr, batch_size: int | None, n_train: int) -> float | None:
    """The learning rate of the SWAG epochs, with ``"auto"`` resolved."""
    if swa_lr != "auto":
        return None if swa_lr is None else float(swa_lr)
    batch = n_train if batch_size is None else min(batch_size, n_train)
    return min(_AUTO_SWA_LR_MAX, _AUTO_SWA_LR_FACTOR * batch / n_train)


class TrainingHistory(Callback):
    """Per-particle training loss, learning rate and phase of every epoch.

    Parameters
    ----------
    start_epoch : int
        Number of pretraining epochs; later epochs are "swag" epochs.

    Attributes
    ----------
    train_loss_ : list of torch.Tensor of shape (P,)
        Each epoch's mean training loss of every particle, weighted by the
        rows of its batches.
    start_loss_ : torch.Tensor of shape (P,) or None
        Every particle's loss on its first mini-batch, before that batch's
        update: the loss it started from.
    lr_ : list of float
        Each epoch's learning rate (of the first parameter group).
    """

    def __init__(self, start_epoch: int) -> None:
        self.start_epoch = start_epoch

    def initialize(self):
        self.train_loss_ = []
        self.start_loss_ = None
        self.lr_ = []
        return self

    def on_epoch_begin(self, net, **kwargs):
        self._first = None  # the epoch's first batch: (losses, rows)
        self._sum = None  # from the second batch on: losses times rows, summed
        self._rows = 0

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        losses = net.criterion_.last_losses
        if not training or losses is None:
            return
        rows = batch[0].shape[-2]
        if self.start_loss_ is None:
            self.start_loss_ = losses.detach().clone()
        if self._first is None:  # an epoch of one batch needs no arithmetic
            self._first = (losses, rows)
        else:
            if self._sum is None:
                self._sum = self._first[0] * self._first[1]
            self._sum.add_(losses, alpha=rows)
        self._rows += rows

    def on_epoch_end(self, net, **kwargs):
        if self._sum is not None:
            self.train_loss_.append(self._sum / self._rows)
        elif self._first is not None:
            self.train_loss_.append(self._first[0])
        self.lr_.append(float(net.optimizer_.param_groups[0]["lr"]))

    def as_arrays(self) -> dict:
        """The history as numpy arrays: ``train_loss`` (P, E), ``lr`` (E,),
        ``start_loss`` (P,) or None."""
        loss = torch.stack(self.train_loss_, dim=1) if self.train_loss_ else None
        start = self.start_loss_
        return {
            "train_loss": None if loss is None else loss.cpu().double().numpy(),
            "start_loss": None if start is None else start.cpu().double().numpy(),
            "lr": np.asarray(self.lr_, dtype=np.float64),
        }


class _PretrainingDone(Exception):
    """Every particle of the group has stopped improving on the held-out rows."""


class _SomeStopped(Exception):
    """Enough particles have stopped to train the others without them."""


class PretrainingMonitor(Callback):
    """Early stopping of the pretraining, particle by particle.

    At the end of every epoch each particle's loss on the held-out rows is
    measured (eval mode; what the criterion's ``stopping_values`` give, where
    it defines them). A particle whose loss has not fallen below its best
    by more than ``tol`` for ``n_iter_no_change`` epochs stops: its weights
    and buffers of its best epoch are kept, and nothing it does later counts.
    When every particle of the group has stopped, the pretraining ends
    (:class:`_PretrainingDone`); :meth:`restore_best` then puts every
    particle back at its best epoch. A particle's best epoch depends on its
    own losses alone, never on the other particles of its group.

    With ``may_drop``, the run also ends (:class:`_SomeStopped`) once the
    stopped particles are worth leaving out: at least a quarter of the
    stack, and computing them for another ``n_iter_no_change`` epochs would
    cost more than ``DROP_SECONDS``. The caller then goes on with the others
    in a smaller stack, monitored by :meth:`continued`.

    Parameters
    ----------
    X_val, y_val : torch.Tensor
        The held-out rows and targets (targets with a weight column where
        the criterion weights rows).
    n_iter_no_change : int
        Epochs without improvement before a particle stops.
    tol : float
        Improvement that counts.

    may_drop : bool, default=False
        Whether the run may end when some particles have stopped.

    Attributes
    ----------
    best_epoch_ : torch.Tensor of shape (P,)
        Each particle's best epoch (1-based, counted from the start of the
        pretraining).
    epochs_ : int
        Epochs of this run so far.
    """

    #: Seconds that leaving the stopped particles out must save (the cost of
    #: a new run: a skorch net, its optimizer and callbacks).
    DROP_SECONDS = 0.01

    def __init__(
        self,
        X_val: torch.Tensor,
        y_val: torch.Tensor,
        n_iter_no_change: int,
        tol: float,
        may_drop: bool = False,
    ) -> None:
        self.X_val = X_val
        self.y_val = y_val
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.may_drop = may_drop
        self.epoch_offset = 0
        self._continues = False  # set by continued(): the state is carried over

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        stack = net.module_
        n = stack.n_particles
        device = self.X_val.device
        self._stopped = torch.zeros(n, dtype=torch.bool, device=device)
        self.losses_: list[torch.Tensor] = []
        self.epochs_ = 0
        self._epoch_start = time.perf_counter()
        if self._continues:
            return
        self._best = torch.full((n,), math.inf, dtype=torch.float64, device=device)
        self._waiting = torch.zeros(n, dtype=torch.int64, device=device)
        self.best_epoch_ = torch.zeros(n, dtype=torch.int64, device=device)
        # Flat weight vectors: an improving epoch saves them in one operation.
        self._weights = net.flat_weights().clone()
        self._buffers = [b.clone() for b in stack.stacked_buffers()]

    def continued(self, keep: torch.Tensor) -> PretrainingMonitor:
        """A monitor of the particles at ``keep`` in a run that goes on.

        It starts from their best losses, epochs, weights and waiting so far,
        and counts epochs on from this run's.
        """
        new = PretrainingMonitor(
            self.X_val, self.y_val, self.n_iter_no_change, self.tol, self.may_drop
        )
        new.epoch_offset = self.epoch_offset + self.epochs_
        new._continues = True
        new._best = self._best[keep]
        new._waiting = self._waiting[keep]
        new.best_epoch_ = self.best_epoch_[keep]
        new._weights = self._weights[keep]
        new._buffers = [b[keep] for b in self._buffers]
        return new

    @property
    def stopped(self) -> torch.Tensor:
        """Which particles of this run have stopped, shape (P,)."""
        return self._stopped

    def on_epoch_end(self, net, **kwargs):
        stack = net.module_
        with torch.no_grad():
            stack.eval()
            try:
                out = stack(self.X_val)
            finally:
                stack.train()
            losses = net.criterion_.per_particle(
                out, self.y_val, stopping=True
            ).double()
        self.losses_.append(losses)
        self.epochs_ += 1
        active = ~self._stopped
        better = active & (losses < self._best)
        if bool(better.any()):
            epoch = self.epoch_offset + self.epochs_
            self.best_epoch_[better] = epoch
            with torch.no_grad():
                self._weights[better] = net.flat_weights()[better]
                for saved, current in zip(
                    self._buffers, stack.stacked_buffers(), strict=True
                ):
                    saved[better] = current[better]
        improved = losses < self._best - self.tol
        self._waiting = torch.where(improved, 0, self._waiting + 1)
        self._best = torch.where(better, losses, self._best)
        self._stopped |= active & (self._waiting >= self.n_iter_no_change)
        now = time.perf_counter()
        seconds, self._epoch_start = now - self._epoch_start, now
        if bool(self._stopped.all()):
            raise _PretrainingDone
        if self.may_drop and self._worth_dropping(seconds):
            raise _SomeStopped

    def _worth_dropping(self, epoch_seconds: float) -> bool:
        share = float(self._stopped.double().mean())
        saved = share * epoch_seconds * self.n_iter_no_change
        return share >= 0.25 and saved > self.DROP_SECONDS

    def restore_best(self, stack, which: torch.Tensor, positions: torch.Tensor) -> None:
        """Put particles back at the weights and buffers of their best epoch.

        Parameters
        ----------
        stack : ParticleStack
            Where to write them: this run's stack, or a larger one.
        which : torch.Tensor
            Indices of this run's particles to restore.
        positions : torch.Tensor
            Their positions in ``stack``.
        """
        with torch.no_grad():
            best = stack.unflatten(self._weights[which.to(self._weights.device)])
            for value, current in zip(best, stack.weights, strict=True):
                current[positions.to(current.device)] = value
            pairs = zip(self._buffers, stack.stacked_buffers(), strict=True)
            for saved, current in pairs:
                current[positions.to(current.device)] = saved[which.to(saved.device)]

    def as_array(self) -> np.ndarray:
        """Held-out losses, shape ``(P, n_epochs)``."""
        if not self.losses_:
            return np.zeros((len(self.best_epoch_), 0))
        return torch.stack(self.losses_, dim=1).cpu().numpy()


class DivergenceCheck(Callback):
    """Raise as soon as a particle's training loss stops being finite.

    Parameters
    ----------
    particle_ids : sequence of int
        The estimator-wide number of each particle in the stack, for the
        message.
    """

    def __init__(self, particle_ids: Sequence[int]) -> None:
        self.particle_ids = particle_ids

    def on_epoch_end(self, net, **kwargs):
        # skorch has recorded every batch's summed loss: finite, so was every
        # particle's (a sum is NaN or infinite where a term is). Only where
        # one is not are the particles' losses read, one sync more.
        batches = list.__getitem__(net.history, -1).get("batches", ())
        if all(math.isfinite(b.get("train_loss", math.nan)) for b in batches):
            return
        criterion = net.criterion_
        if criterion.any_nonfinite():
            bad = criterion.nonfinite
            ids = [self.particle_ids[i] for i in bad.nonzero().flatten().tolist()]
            raise FloatingPointError(
                f"Training diverged: the loss of particle(s) {ids} became NaN or "
                f"infinite by epoch {len(net.history)}. Lower `lr`, scale the "
                "inputs and targets, or choose another optimizer."
            )


class ThreadTuner(Callback):
    """Choose a group's torch threads by timing its training steps.

    A skorch callback that drives a
    :class:`~sklearn_swag._training.threads.ThreadChooser` with the training steps:
    one thread to start with, more where a timed trial shows they pay, and
    back to one as soon as steps collapse (another process holding a core).

    Parameters
    ----------
    chooser : ThreadChooser
        What decides; its ``threads_`` and ``trials_`` tell what it did.
    """

    def __init__(self, chooser: ThreadChooser) -> None:
        self.chooser = chooser

    @property
    def threads_(self) -> int:
        return self.chooser.threads_

    @property
    def trials_(self) -> list:
        return self.chooser.trials_

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.chooser.start()

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        self.chooser.begin_step()

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        self.chooser.end_step()


class StopCheck(Callback):
    """End a run between two batches once its fit is stopped.

    Parameters
    ----------
    signal : StopSignal
        The fit's signal (:mod:`~sklearn_swag._training.stopping`).

    Raises
    ------
    FitStopped
        At the start of a batch, once ``signal`` is set.
    """

    def __init__(self, signal: StopSignal) -> None:
        self.signal = signal

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        self.signal.check()


#: Seconds between two redraws of a progress bar.
_BAR_SECONDS = 0.1


class EpochProgress(Callback):
    """A progress bar over every epoch of one group of particles.

    One bar covers the group's whole fit, its pretraining and its SWAG
    epochs; where early stopping ends the pretraining sooner, the bar drops
    the epochs left out. It shows the phase, the particles' mean training
    loss and, with early stopping, how many particles have stopped.

    Parameters
    ----------
    description : str
        Text in front of the bar, naming the group's particles.
    total : int
        Epochs of the group's whole fit.
    position : int, default=0
        The bar's line, so that groups training at once each keep theirs.
    """

    def __init__(self, description: str, total: int, position: int = 0) -> None:
        self.description = description
        self.total = total
        self.position = position
        self.bar_ = None
        self.phase = "pretrain"
        self.swag_start = 0
        self.monitor: PretrainingMonitor | None = None

    def start_run(
        self, phase: str, swag_start: int, monitor: PretrainingMonitor | None = None
    ) -> None:
        """Begin a training run: ``phase`` ("pretrain", "swag" or "both")."""
        self.phase, self.swag_start, self.monitor = phase, swag_start, monitor
        if self.bar_ is None:
            from tqdm.auto import tqdm

            self.bar_ = tqdm(
                total=self.total,
                desc=self.description,
                unit="epoch",
                position=self.position,
                leave=True,
                mininterval=_BAR_SECONDS,
            )

    def end_pretraining(self, epochs_left: int) -> None:
        """The pretraining stopped early: ``epochs_left`` SWAG epochs remain."""
        self.bar_.total = self.bar_.n + epochs_left
        self.bar_.refresh()

    def on_epoch_end(self, net, **kwargs):
        phase = self.phase
        if phase == "both":
            phase = "pretrain" if len(net.history) <= self.swag_start else "swag"
        postfix = {"phase": phase}
        losses = net.criterion_.last_losses
        if losses is not None:
            postfix["loss"] = f"{float(losses.mean()):.4g}"
        if self.monitor is not None:
            stopped = int(self.monitor.stopped.sum())
            postfix["stopped"] = f"{stopped}/{len(losses) if losses is not None else 0}"
        self.bar_.set_postfix(postfix, refresh=False)
        self.bar_.update(1)

    def close(self) -> None:
        if self.bar_ is not None:
            self.bar_.close()


def _checked_callbacks(callbacks, swa_lr) -> list:
    """The user's skorch callbacks, or a clear error before any training."""
    checked = []
    for entry in callbacks or ():
        named = isinstance(entry, tuple) and len(entry) == 2
        callback = entry[1] if named else entry
        if (
            named
            and not isinstance(entry[0], str)
            or not isinstance(callback, Callback)
        ):
            raise TypeError(
                "callbacks must hold skorch callbacks or (name, callback) pairs; "
                f"got {entry!r}."
            )
        if isinstance(callback, EarlyStopping):
            raise ValueError(
                "skorch's EarlyStopping stops a fit by raising KeyboardInterrupt, "
                "which stops the whole MultiSWAG fit; leave it out."
            )
        if isinstance(callback, LRScheduler) and swa_lr is not None:
            raise ValueError(
                "swa_lr sets the learning rate of every epoch, which an "
                "LRScheduler callback would fight; use one or the other."
            )
        checked.append(entry)
    return checked
