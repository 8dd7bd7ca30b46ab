"""Mini-batches for training a particle stack.

Each particle visits the rows in its own order, drawn from its own generator,
so a particle's batches do not depend on the other particles of its group.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._network.inference import batch_bounds


def training_batches(
    n_rows: int, batch_size: int | None, drop_last: bool, merge_single_row: bool
) -> list[tuple[int, int]]:
    """The ``(start, stop)`` rows of each training batch of an epoch.

    One batch when ``batch_size`` is None or covers the data; a last batch
    of one row joins the one before with ``merge_single_row``; a last,
    smaller batch is skipped with ``drop_last``.
    """
    if batch_size is None or batch_size >= n_rows:
        return [(0, n_rows)]
    if merge_single_row:
        bounds = batch_bounds(n_rows, batch_size)
    else:
        bounds = [
            (low, min(n_rows, low + batch_size)) for low in range(0, n_rows, batch_size)
        ]
    if drop_last and bounds[-1][1] - bounds[-1][0] < batch_size:
        bounds = bounds[:-1]
    return bounds


class ParticleBatches:
    """Mini-batches for a particle stack, each particle shuffled on its own.

    It takes the place of a ``DataLoader`` in the skorch net that trains a
    stack: the data stay as two tensors on the training device and a batch is
    an index into them, so no rows are collated one by one.

    Parameters
    ----------
    dataset : skorch.dataset.Dataset
        Holds the tensors ``X`` of shape (n, n_features) and ``y`` of shape
        (n, n_outputs).
    batch_size : int
        Rows per batch; the whole data set when it is at least ``n``.
    generators : list of torch.Generator
        One per particle; drives that particle's shuffling only.
    shuffle : bool, default=True
        Whether each particle visits the rows in its own random order every
        epoch.
    drop_last : bool, default=False
        Whether to skip a last, smaller batch.
    merge_single_row : bool, default=False
        Whether a last batch of one row joins the batch before it (for
        ``BatchNorm``, which cannot normalise a single row).
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        generators: Sequence[torch.Generator],
        shuffle: bool = True,
        drop_last: bool = False,
        merge_single_row: bool = False,
    ) -> None:
        self.X = dataset.X
        self.y = dataset.y
        self.batch_size = int(batch_size)
        self.generators = generators
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.merge_single_row = merge_single_row

    def _bounds(self) -> list[tuple[int, int]]:
        return training_batches(
            len(self.X), self.batch_size, self.drop_last, self.merge_single_row
        )

    def __len__(self) -> int:
        return len(self._bounds())

    def __iter__(self):
        n = len(self.X)
        if self.batch_size >= n:
            yield self.X, self.y
            return
        if self.shuffle:
            order = torch.stack(
                [torch.randperm(n, generator=g) for g in self.generators]
            ).to(self.X.device)
        else:
            order = torch.arange(n, device=self.X.device).expand(
                len(self.generators), n
            )
        for low, high in self._bounds():
            idx = order[:, low:high]
            yield self.X[idx], self.y[idx]
