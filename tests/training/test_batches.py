"""Tests of a stack's mini-batches, each particle shuffled on its own."""

import pytest
import torch
from particle_stacks import (
    FACTORIES,
    MODES,
    N_ROWS,
    _assert_same_weights,
    _data,
    _modules,
    _sequential,
    _stack,
    _train_single,
    _train_stack,
)
from skorch.dataset import Dataset
from torch.nn.utils import parameters_to_vector

from sklearn_swag._training.batches import ParticleBatches


@pytest.mark.parametrize("mode", MODES)
def test_mini_batch_training_equals_separate_networks(mode):
    modules = _modules(FACTORIES[mode])
    stack = _stack(mode, modules)
    X, y = _data()
    seeds = [11, 12, 13, 14]
    batch_size, n_epochs = 10, 4  # 3 full batches and one of 2 rows per epoch
    batches = ParticleBatches(
        Dataset(X, y),
        batch_size,
        [torch.Generator().manual_seed(s) for s in seeds],
        shuffle=True,
    )
    for _ in range(n_epochs):
        _train_stack(stack, list(batches), lr=0.01)
    # Each particle's batch order comes from its own generator: rebuilding it
    # from the seed alone reproduces the particle.
    for module, seed in zip(modules, seeds, strict=True):
        g = torch.Generator().manual_seed(seed)
        for _ in range(n_epochs):
            order = torch.randperm(N_ROWS, generator=g)
            _train_single(
                module,
                [
                    (X[order[i : i + batch_size]], y[order[i : i + batch_size]])
                    for i in range(0, N_ROWS, batch_size)
                ],
                lr=0.01,
            )
    _assert_same_weights(stack, modules)


def test_mini_batch_training_with_a_wrong_order_differs():
    # The check above can fail: particle 2 trained on the natural row order
    # ends somewhere else.
    modules = _modules(_sequential)
    stack = _stack("lowered", modules)
    X, y = _data()
    batches = ParticleBatches(
        Dataset(X, y), 10, [torch.Generator().manual_seed(s) for s in range(4)]
    )
    for _ in range(4):
        _train_stack(stack, list(batches), lr=0.01)
    for _ in range(4):
        _train_single(
            modules[2], [(X[i : i + 10], y[i : i + 10]) for i in range(0, 32, 10)], 0.01
        )
    gap = stack.flat_weights()[2] - parameters_to_vector(modules[2].parameters())
    assert gap.abs().max() > 1e-3


# -- ParticleBatches --------------------------------------------------------------


def _index_dataset(n):
    """Rows that name themselves: X[i] = i, y[i] = -i."""
    X = torch.arange(n, dtype=torch.float32).reshape(n, 1)
    return Dataset(X, -X)


def _generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("batch_size", [10, 11, 1000])
def test_one_full_batch_when_batch_size_covers_the_data(batch_size):
    dataset = _index_dataset(10)
    batches = ParticleBatches(dataset, batch_size, _generators([0, 1, 2]))
    assert len(batches) == 1
    epoch = list(batches)
    assert len(epoch) == 1
    Xb, yb = epoch[0]
    assert Xb is dataset.X
    assert yb is dataset.y


@pytest.mark.parametrize(
    "n, batch_size, drop_last, sizes",
    [
        (10, 3, False, [3, 3, 3, 1]),
        (10, 3, True, [3, 3, 3]),
        (9, 3, False, [3, 3, 3]),
        (9, 3, True, [3, 3, 3]),
        (10, 9, False, [9, 1]),
        (10, 9, True, [9]),
    ],
)
@pytest.mark.parametrize("shuffle", [True, False])
def test_number_and_size_of_batches(n, batch_size, drop_last, sizes, shuffle):
    batches = ParticleBatches(
        _index_dataset(n),
        batch_size,
        _generators([0, 1, 2]),
        shuffle=shuffle,
        drop_last=drop_last,
    )
    assert len(batches) == len(sizes)
    epoch = list(batches)
    assert [Xb.shape for Xb, _ in epoch] == [(3, s, 1) for s in sizes]
    for Xb, yb in epoch:
        assert torch.equal(yb, -Xb)


def _epoch_orders(batches):
    """Each particle's row order over one epoch, shape (P, rows seen)."""
    return torch.cat([Xb[..., 0] for Xb, _ in batches], dim=1).long()


def test_shuffled_epoch_visits_every_row_once_per_particle():
    n = 23
    batches = ParticleBatches(_index_dataset(n), 5, _generators([0, 1, 2, 3]))
    first, second = _epoch_orders(batches), _epoch_orders(batches)
    for order in (*first, *second):
        assert sorted(order.tolist()) == list(range(n))
    # Different generators, different orders; a new epoch, a new order.
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(first[2], first[3])
    assert not torch.equal(first[0], second[0])
    assert not torch.equal(first[0], torch.arange(n))


def test_each_particle_is_shuffled_by_its_own_generator():
    n, seeds = 23, [5, 6, 7, 8]
    together = ParticleBatches(_index_dataset(n), 5, _generators(seeds))
    alone = ParticleBatches(_index_dataset(n), 5, _generators([seeds[2]]))
    g = torch.Generator().manual_seed(seeds[2])
    for _ in range(3):
        order = _epoch_orders(together)[2]
        assert torch.equal(_epoch_orders(alone)[0], order)
        assert torch.equal(torch.randperm(n, generator=g), order)


def test_no_shuffle_gives_the_natural_order():
    n = 23
    batches = ParticleBatches(
        _index_dataset(n), 5, _generators([0, 1, 2]), shuffle=False
    )
    for _ in range(2):
        assert torch.equal(_epoch_orders(batches), torch.arange(n).expand(3, n))
