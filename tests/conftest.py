"""Shared fixtures: small float32 data and fast estimator settings."""

import os

import numpy as np
import pytest

# Strict mode: a fallback of the batched rewrite for any reason but an
# unsupported operation (a bug of the rewrite) fails the test instead of
# hiding as slowness (sklearn_swag._network.lowering.strict). Set before any
# test runs, so that worker processes inherit it.
os.environ.setdefault("SKLEARN_SWAG_STRICT", "1")

#: Settings that train in well under a second on a 2-core CPU.
FAST = dict(
    n_models=3,
    rank=4,
    pretrain_epochs=60,
    swag_epochs=10,
    n_samples=4,
    lr=0.03,
    batch_size=None,
    module__hidden_layer_sizes=(16,),
    early_stopping=False,  # fixed epochs; tests of early stopping set it
    swa_lr=None,  # one learning rate; tests of swa_lr set it
    random_state=0,
)
#: A few epochs of mini-batches; tests add the particles and draws they need.
MINI_BATCH = dict(
    rank=3, pretrain_epochs=20, swag_epochs=5, batch_size=16, lr=0.01, random_state=0
)
#: FAST without the built-in network's settings, for a network of the user's.
FAST_USER_NET = {k: v for k, v in FAST.items() if not k.startswith("module__")}


@pytest.fixture
def fast_params():
    return dict(FAST)


@pytest.fixture
def user_net_params():
    return dict(FAST_USER_NET)


@pytest.fixture
def regression_data():
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(64, 3)).astype(np.float32)
    y = (X[:, 0] - 2 * X[:, 1] + 0.5 * np.sin(3 * X[:, 2])).astype(np.float32)
    y += 0.05 * rng.standard_normal(64).astype(np.float32)
    return X, y


@pytest.fixture
def toy_1d():
    from sklearn_swag import make_toy_regression

    return make_toy_regression(n_samples=40, random_state=0)
