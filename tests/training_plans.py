"""A small training plan and its data, for tests of one group's training."""

import numpy as np
import torch
from torch import nn

from sklearn_swag._training.plan import TrainingPlan


def toy_rows(n=40):
    """``n`` rows of two features and a smooth target, float32."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(n, 2)).astype(np.float32)
    y = (np.sin(X[:, :1]) + 0.5 * X[:, 1:]).astype(np.float32)
    return X, y


def particle_seeds(n_particles=2):
    """Seeds of ``n_particles`` particles, one row each, as a fit draws them."""
    return np.random.RandomState(42).randint(2**31 - 1, size=(n_particles, 3))


def small_plan(**overrides):
    """A plan for :func:`toy_rows`: a 2-8-1 ELU network, Adam, 3 + 4 epochs."""
    params = dict(
        module=None,
        module_kwargs={"hidden_layer_sizes": (8,), "activation": "elu"},
        n_features=2,
        n_outputs=1,
        criterion=nn.MSELoss,
        criterion_kwargs={},
        optimizer=torch.optim.Adam,
        optimizer_kwargs={},
        iterator_kwargs={},
        lr=0.01,
        batch_size=16,  # three shuffled batches per epoch, the last of 8 rows
        pretrain_epochs=3,
        swag_epochs=4,
        rank=3,
    )
    params.update(overrides)
    return TrainingPlan(**params)
