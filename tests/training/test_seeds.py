"""Seeds: the root seed, the derived streams and the particles' seeds."""

import numpy as np

from sklearn_swag._training.seeds import (
    BN_ROWS_STREAM,
    SPLIT_STREAM,
    derived_rng,
    particle_seeds,
    root_seed,
)


def test_particle_seeds_are_per_particle_and_reproducible():
    a = particle_seeds(0, 6)
    b = particle_seeds(0, 6)
    assert a.shape == (6, 3)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == a.size
    assert (a >= 0).all() and (a <= np.iinfo(np.int32).max).all()
    # the first particles' seeds do not depend on how many particles follow
    np.testing.assert_array_equal(particle_seeds(0, 2), a[:2])
    assert not np.array_equal(particle_seeds(1, 6), a)


def test_root_seed():
    assert root_seed(3) == 3
    assert root_seed(np.random.RandomState(0)) == root_seed(np.random.RandomState(0))
    state = np.random.get_state()[1].copy()
    assert root_seed(None) != root_seed(None)  # fresh entropy, ...
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # ... not numpy's


def test_derived_streams_are_independent():
    a = derived_rng(0, SPLIT_STREAM).random(4)
    np.testing.assert_array_equal(a, derived_rng(0, SPLIT_STREAM).random(4))
    assert not np.allclose(a, derived_rng(0, BN_ROWS_STREAM).random(4))
