"""How long the particles pretrain: budgets in optimizer steps, not epochs.

An epoch is one pass over the training rows: one optimizer step on 100 rows
at full batch, hundreds on a large data set. A budget or a patience counted
in epochs therefore shrinks with the data: ten epochs without improvement
are 20 steps on the 277 rows of the yacht data (too few to tell a plateau
from the noise of 28 held-out rows) and 700 steps on the 9,000 of the power
plant data. ``pretrain_epochs="auto"`` and ``n_iter_no_change="auto"`` count
optimizer steps instead, with a floor in epochs, so that a small data set
trains for as many steps as a large one (:func:`pretrain_epochs`,
:func:`patience`). The step counts were chosen on the UCI regression
benchmark (``benchmarks/bench_uci.py``).
"""

from __future__ import annotations

import math

#: ``pretrain_epochs="auto"``: at least this many optimizer steps, and at
#: least ``AUTO_MIN_EPOCHS`` epochs.
AUTO_PRETRAIN_STEPS = 20_000
AUTO_MIN_EPOCHS = 200

#: ``n_iter_no_change="auto"``: at least this many optimizer steps without
#: improvement of the held-out loss, and at least ``AUTO_MIN_PATIENCE`` epochs.
AUTO_PATIENCE_STEPS = 2_000
AUTO_MIN_PATIENCE = 10


def steps_per_epoch(batch_size: int | None, n_train: int) -> int:
    """Optimizer steps in one epoch over ``n_train`` rows."""
    if batch_size is None:
        return 1
    return max(1, math.ceil(n_train / batch_size))


def pretrain_epochs(value, batch_size: int | None, n_train: int) -> int:
    """``pretrain_epochs`` with ``"auto"`` resolved for ``n_train`` rows.

    Examples
    --------
    >>> pretrain_epochs("auto", 128, 277)  # 3 steps an epoch
    6667
    >>> pretrain_epochs("auto", 128, 40_000)
    200
    >>> pretrain_epochs(50, 128, 277)
    50
    """
    return _epochs(value, AUTO_PRETRAIN_STEPS, AUTO_MIN_EPOCHS, batch_size, n_train)


def patience(value, batch_size: int | None, n_train: int) -> int:
    """``n_iter_no_change`` with ``"auto"`` resolved for ``n_train`` rows.

    Examples
    --------
    >>> patience("auto", 128, 277)
    667
    >>> patience("auto", 128, 40_000)
    10
    """
    return _epochs(value, AUTO_PATIENCE_STEPS, AUTO_MIN_PATIENCE, batch_size, n_train)


def _epochs(value, steps: int, floor: int, batch_size: int | None, n_train: int):
    """``value``, or for "auto" the epochs of ``steps`` steps, at least ``floor``."""
    if value != "auto":
        return int(value)
    return max(floor, math.ceil(steps / steps_per_epoch(batch_size, n_train)))
