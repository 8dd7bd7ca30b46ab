"""skorch callbacks that turn a training run into SWAG.

skorch runs the training loop; these callbacks watch it. :class:`SWAGCollector`
adds one snapshot of every particle's weights to the SWAG moments at the end of
each SWAG epoch, :class:`DivergenceCheck` stops a run whose loss is no longer
finite, and :class:`EpochProgress` draws a progress bar.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from skorch.callbacks import Callback

from ._swag import SWAGMoments


class SWAGCollector(Callback):
    """Collect SWAG moments of a particle stack at the end of epochs.

    Parameters
    ----------
    start_epoch : int
        Epochs of plain training before collection starts: snapshots are
        taken at the end of every epoch after the first ``start_epoch``.
    rank : int
        Maximum number of deviation rows kept per particle.
    deviation_dtype : torch.dtype, default=torch.float32
        Storage type of the deviation rows.

    Attributes
    ----------
    moments_ : SWAGMoments or None
        The statistics collected so far; created at the start of training.
    """

    def __init__(
        self, start_epoch: int, rank: int, deviation_dtype: torch.dtype = torch.float32
    ) -> None:
        self.start_epoch = start_epoch
        self.rank = rank
        self.deviation_dtype = deviation_dtype

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

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) > self.start_epoch:
            self.moments_.collect(net.module_.flat_weights())


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
        bad = net.criterion_.nonfinite
        if bad is not None and bool(bad.any()):
            ids = [self.particle_ids[i] for i in bad.nonzero().flatten().tolist()]
            raise FloatingPointError(
                f"Training diverged: the loss of particle(s) {ids} became NaN or "
                f"infinite by epoch {len(net.history)}. Lower `lr`, scale the "
                "inputs and targets, or choose another optimizer."
            )


class EpochProgress(Callback):
    """A progress bar over the epochs of one group of particles.

    Parameters
    ----------
    description : str
        Text in front of the bar.
    """

    def __init__(self, description: str) -> None:
        self.description = description

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        from tqdm.auto import tqdm

        self.bar_ = tqdm(total=net.max_epochs, desc=self.description, leave=False)

    def on_epoch_end(self, net, **kwargs):
        self.bar_.update(1)
        losses = net.criterion_.last_losses
        if losses is not None:
            self.bar_.set_postfix(loss=f"{float(losses.mean()):.4g}", refresh=False)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        self.bar_.close()
