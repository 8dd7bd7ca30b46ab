"""Seeds: one root seed per fit, and from it a seed for every random choice.

Every particle gets its own seeds up front (:func:`particle_seeds`), so that
what a particle learns never depends on which group it lands in or how many
particles the fit has; the fit's other random choices (the held-out split,
the BatchNorm rows) each draw from a stream of their own (:func:`derived_rng`).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

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


def _run_seed(data_seed, run: int) -> int:
    """The data seed of a particle's ``run``-th training run (the first: itself)."""
    if run == 0:
        return int(data_seed)
    return int(np.random.SeedSequence([int(data_seed), run]).generate_state(1)[0])


def _dropout_seed(data_seed) -> int:
    """A seed for a particle's dropout masks, apart from its shuffling seed."""
    return (int(data_seed) * 2654435761 + 1) % 2**63
