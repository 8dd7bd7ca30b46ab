"""Fit time per network-epoch on large data, against MLPRegressor and plain PyTorch.

Synthetic regression with 20 features (standard normal inputs, a smooth
function of the first five plus noise), float32, at the row counts in
``--rows`` (default 10,000, 100,000 and 1,000,000). For each, the seconds one
network takes for one epoch over all rows (a "network-epoch"):

- ``multiswag``: ``MultiSWAGRegressor`` with its defaults (5 particles, the
  built-in 64-64 ReLU MLP, mini-batches of 128, default ``n_jobs``), early
  stopping off so that the epochs are fixed;
- ``multiswag, user module``: the same with the network as a user writes it,
  an ``nn.Module`` class of the same layers;
- ``multiswag, n_jobs=2``: particles split over two worker threads;
- ``multiswag, batch 1024``: the big-data setting the scaling guide suggests;
- ``plain loop``: one network of the same layers, a hand-written loop with
  Adam over shuffled mini-batches of 128 of a tensor held in memory, which
  also keeps the SWAG moments (mean, mean of squares, last 20 deviations) at
  the end of every epoch, as the package does;
- ``plain loop, batch 1024``: the same with batches of 1024;
- ``MLPRegressor``: scikit-learn's ``MLPRegressor(hidden_layer_sizes=(64,
  64))`` with its defaults (Adam, batches of 200).

MultiSWAG's time per network-epoch is the difference of two fits that differ
only in their epochs, over the extra network-epochs: what each further epoch
costs. The shorter fit has 2 epochs; the longer one as many more as make about
``--row-epochs`` (default 2,000,000) rows per network, at least 2, so that the
difference is well above the timing noise at every size. What is paid once per
fit (checks, merging identical rows, the held-out split, the noise fit, moving
the fitted state) is given on its own as ``fixed s``, the shorter fit's seconds
less its epochs. The baselines are timed over the same numbers of epochs (their
set-up excluded). Every time is the shortest of ``--repeats`` (default 2).
Ratios: MultiSWAG's per network-epoch time over the plain loop's and over
MLPRegressor's (below 1: faster per network), and microseconds per row (flat
when the cost per row does not grow with the rows).

Run from the repository root::

    python benchmarks/bench_large.py
    python benchmarks/bench_large.py --rows 10000 100000   # quicker
    python benchmarks/bench_large.py --threads 1           # one thread everywhere
"""

import warnings

import numpy as np
import torch
from _common import PlainMoments, argument_parser, pin_threads, print_head, timed
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor
from torch import nn

from sklearn_swag import MultiSWAGRegressor

N_FEATURES = 20
HIDDEN = 64
RANK = 20


class UserNet(nn.Module):
    """The built-in network's layers as a user writes them."""

    def __init__(self, n_features=N_FEATURES, hidden=HIDDEN):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, X):
        return self.layers(X)


def make_data(n_rows, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, N_FEATURES), dtype=np.float32)
    y = (
        np.sin(X[:, 0])
        + X[:, 1] * X[:, 2]
        + 0.5 * np.abs(X[:, 3])
        - 0.3 * X[:, 4] ** 2
        + 0.1 * rng.standard_normal(n_rows, dtype=np.float32)
    )
    return X, y.astype(np.float32)


def fit_seconds(X, y, epochs, **params):
    """Seconds of one MultiSWAGRegressor fit of ``epochs`` (pretrain + 1 SWAG)."""
    reg = MultiSWAGRegressor(
        pretrain_epochs=epochs - 1,
        swag_epochs=1,
        early_stopping=False,
        noise="homoscedastic",  # one network per particle, as the plain loop
        random_state=0,
        **params,
    )
    seconds, _ = timed(lambda: reg.fit(X, y))
    return seconds, reg.n_models


def plain_loop_seconds(X, y, epochs, batch_size, seed=0):
    """One network, a hand-written mini-batch loop that keeps the SWAG moments."""
    torch.manual_seed(seed)
    net = UserNet()
    opt = torch.optim.Adam(net.parameters(), lr=0.003)
    X_t, y_t = torch.as_tensor(X), torch.as_tensor(y).reshape(-1, 1)
    moments = PlainMoments(net.parameters(), RANK)
    generator = torch.Generator().manual_seed(seed)

    def train():
        for _ in range(epochs):
            order = torch.randperm(len(X_t), generator=generator)
            for low in range(0, len(X_t), batch_size):
                rows = order[low : low + batch_size]
                opt.zero_grad()
                loss = nn.functional.mse_loss(net(X_t[rows]), y_t[rows])
                loss.backward()
                opt.step()
            moments.collect()

    return timed(train)[0]


def mlp_seconds(X, y, epochs):
    mlp = MLPRegressor(
        hidden_layer_sizes=(HIDDEN, HIDDEN),
        max_iter=epochs,
        tol=0.0,
        n_iter_no_change=epochs + 1,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return timed(lambda: mlp.fit(X, y))[0]


VARIANTS = {
    "multiswag": {},
    "multiswag, user module": {"module": UserNet},
    "multiswag, n_jobs=2": {"n_jobs": 2},
    "multiswag, batch 1024": {"batch_size": 1024},
}


def measure(n_rows, row_epochs, repeats):
    X, y = make_data(n_rows)
    short = 2
    long = short + max(2, round(row_epochs / n_rows))
    rows = {}
    for name, params in VARIANTS.items():
        fit_seconds(X[:1000], y[:1000], 2, **params)  # starts any workers
        t_short = min(fit_seconds(X, y, short, **params)[0] for _ in range(repeats))
        t_long, n_models = min(
            (fit_seconds(X, y, long, **params) for _ in range(repeats)),
            key=lambda r: r[0],
        )
        per = (t_long - t_short) / (n_models * (long - short))
        rows[name] = {"per": per, "fixed": t_short - n_models * short * per}
    for name, batch in (("plain loop", 128), ("plain loop, batch 1024", 1024)):
        seconds = min(plain_loop_seconds(X, y, long, batch) for _ in range(repeats))
        rows[name] = {"per": seconds / long}
    seconds = min(mlp_seconds(X, y, long) for _ in range(repeats))
    rows["MLPRegressor"] = {"per": seconds / long}
    return rows


def main():
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--rows", type=float, nargs="+", default=[1e4, 1e5, 1e6], help="row counts"
    )
    parser.add_argument(
        "--row-epochs",
        type=float,
        default=2e6,
        help="rows times epochs that the longer MultiSWAG fit adds per network",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch and BLAS threads (default: as set)",
    )
    args = parser.parse_args()
    if args.threads:
        pin_threads(args.threads)
    MultiSWAGRegressor(pretrain_epochs=1, swag_epochs=1).fit(*make_data(200))  # warm
    print_head(
        [
            "rows",
            "model",
            "s per network-epoch",
            "us per row",
            "x plain loop",
            "x MLPRegressor",
            "fixed s",
        ]
    )
    for n_rows in map(int, args.rows):
        rows = measure(n_rows, args.row_epochs, args.repeats)
        plain, mlp = rows["plain loop"]["per"], rows["MLPRegressor"]["per"]
        for name, row in rows.items():
            fixed = f"{row['fixed']:.2f}" if "fixed" in row else ""
            print(
                f"| {n_rows:,} | {name} | {row['per']:.4f} | "
                f"{1e6 * row['per'] / n_rows:.2f} | {row['per'] / plain:.2f} | "
                f"{row['per'] / mlp:.2f} | {fixed} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
