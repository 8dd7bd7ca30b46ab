"""Fit time of the seed workload, as a ratio to a plain PyTorch loop.

The seed workload: 100 toy points, a 1-16-16-1 ELU network, full batch, Adam at
lr 0.03, 2000 + 1000 epochs, rank 20. For each particle count the table gives the
fit seconds of ``MultiSWAGRegressor``, the ratio to one plain single-network
PyTorch loop of the same 3000 epochs measured in the same process, and the ratio
to training the same particles one after another with that loop.

    python benchmarks/bench_seed.py            # 1 and 16 particles
    python benchmarks/bench_seed.py 1 16 64    # any counts
"""

import sys
import time

import numpy as np
import torch
from torch import nn

from sklearn_swag import MultiSWAGRegressor, make_toy_regression

PRETRAIN, SWAG = 2000, 1000


def plain_loop(X, y, epochs, seed=0):
    """One network, hand-written training loop: the baseline."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(1, 16), nn.ELU(), nn.Linear(16, 16), nn.ELU(), nn.Linear(16, 1)
    )
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    X_t = torch.as_tensor(X, dtype=torch.float32)
    y_t = torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1)
    start = time.perf_counter()
    for _ in range(epochs):
        opt.zero_grad()
        loss = nn.functional.mse_loss(net(X_t), y_t)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def fit_seconds(X, y, n_models):
    reg = MultiSWAGRegressor(
        module__hidden_layer_sizes=(16, 16),
        module__activation="elu",
        n_models=n_models,
        rank=20,
        pretrain_epochs=PRETRAIN,
        swag_epochs=SWAG,
        lr=0.03,
        batch_size=None,
        random_state=0,
    )
    start = time.perf_counter()
    reg.fit(X, y)
    seconds = time.perf_counter() - start
    mse = float(np.mean((reg.predict(X) - y) ** 2))
    return seconds, mse


def main(counts):
    X, y = make_toy_regression(random_state=0)
    plain_loop(X, y, 200)  # warm up
    fit_seconds(X, y, 1)
    base = min(plain_loop(X, y, PRETRAIN + SWAG) for _ in range(2))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"plain loop, one network, {PRETRAIN + SWAG} epochs: {base:.2f} s")
    print(f"{'particles':>9} {'fit s':>7} {'x plain':>8} {'x P plain':>10} {'MSE':>8}")
    for n_models in counts:
        seconds, mse = fit_seconds(X, y, n_models)
        print(
            f"{n_models:>9} {seconds:>7.2f} {seconds / base:>8.2f} "
            f"{seconds / (n_models * base):>10.3f} {mse:>8.5f}"
        )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 16])
