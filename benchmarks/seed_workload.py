"""The seed workload shared by the benchmarks: its baseline loop and estimator.

100 toy points, a 1-16-16-1 ELU network, full batch, Adam at lr 0.03,
2000 + 1000 epochs, rank 20.
"""

import time

import torch
from torch import nn

from sklearn_swag import MultiSWAGRegressor

PRETRAIN, SWAG = 2000, 1000


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(X, y, epochs, device="cpu", seed=0):
    """One network, hand-written full-batch training loop on ``device``.

    Returns the seconds the training loop takes (the set-up is not timed).
    """
    with torch.random.fork_rng(devices=[]):  # leave the caller's seed alone
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Linear(1, 16), nn.ELU(), nn.Linear(16, 16), nn.ELU(), nn.Linear(16, 1)
        )
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    X_t = torch.as_tensor(X, dtype=torch.float32, device=device)
    y_t = torch.as_tensor(y, dtype=torch.float32, device=device).reshape(-1, 1)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(epochs):
        opt.zero_grad()
        loss = nn.functional.mse_loss(net(X_t), y_t)
        loss.backward()
        opt.step()
    synchronize(device)
    return time.perf_counter() - start


def make_regressor(n_models, pretrain=PRETRAIN, swag=SWAG, device="cpu", n_jobs=1):
    """The seed's MultiSWAG estimator with ``n_models`` particles."""
    return MultiSWAGRegressor(
        module__hidden_layer_sizes=(16, 16),
        module__activation="elu",
        n_models=n_models,
        rank=20,
        pretrain_epochs=pretrain,
        swag_epochs=swag,
        lr=0.03,
        batch_size=None,
        validation_fraction=0,  # all 100 rows, as the plain loop trains on
        n_jobs=n_jobs,
        device=device,
        random_state=0,
    )
