"""Fit time of the seed workload, as a ratio to a plain PyTorch loop.

The seed workload: the 100 points of ``make_toy_regression(random_state=0)``, a
1-16-16-1 ELU network, full batch, Adam at lr 0.03, 2000 + 1000 epochs, rank 20.
For each particle count the table gives

- ``fit s``: the seconds ``MultiSWAGRegressor.fit`` takes;
- ``plain s``: the baseline, one plain single-network PyTorch loop of the same
  3000 epochs, measured twice right before the row (the min is kept), so that
  drift of a noisy machine shows up from row to row; it is measured at torch's
  thread count and at one thread (``thr``), and the faster is kept;
- ``x plain``: fit seconds / baseline;
- ``x P plain``: fit seconds / (P * baseline), the cost relative to training the
  same P particles one after another with the plain loop (below 1 is faster);
- ``MSE``: training mean squared error of the predictive mean.

Run from the repository root::

    python benchmarks/bench_seed.py                        # 1 16 64 256, n_jobs=2
    python benchmarks/bench_seed.py 1 16 --n-jobs 1        # any counts
    python benchmarks/bench_seed.py --epochs-scale 0.1     # a quick trial run
"""

import argparse
import time

import numpy as np
import torch
from seed_workload import PRETRAIN, SWAG, make_regressor, plain_loop

from sklearn_swag import make_toy_regression


def baseline(X, y, epochs):
    """The plain loop measured twice; the faster run is the baseline.

    It is measured at torch's thread count and at one thread, twice each: a
    321-weight network gains nothing from threads and, on a busy machine, often
    runs faster on one. Returns the fastest seconds and the thread count that
    gave them.
    """
    threads = torch.get_num_threads()
    runs = []
    try:
        for n in sorted({threads, 1}, reverse=True):
            torch.set_num_threads(n)
            runs += [(plain_loop(X, y, epochs), n) for _ in range(2)]
    finally:
        torch.set_num_threads(threads)
    return min(runs)


def fit_seconds(X, y, n_models, pretrain, swag, n_jobs):
    reg = make_regressor(n_models, pretrain, swag, n_jobs=n_jobs)
    start = time.perf_counter()
    reg.fit(X, y)
    seconds = time.perf_counter() - start
    mse = float(np.mean((reg.predict(X) - y) ** 2))
    return seconds, mse


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "counts",
        nargs="*",
        type=int,
        default=[1, 16, 64, 256],
        help="particle counts (default: 1 16 64 256)",
    )
    parser.add_argument(
        "--n-jobs", type=int, default=2, help="n_jobs of the estimator (default: 2)"
    )
    parser.add_argument(
        "--epochs-scale",
        type=float,
        default=1.0,
        help="multiply both epoch counts, for quick trials (default: 1.0)",
    )
    args = parser.parse_args(argv)
    pretrain = max(1, round(PRETRAIN * args.epochs_scale))
    swag = max(1, round(SWAG * args.epochs_scale))
    epochs = pretrain + swag

    X, y = make_toy_regression(random_state=0)
    plain_loop(X, y, 200)  # warm up torch
    fit_seconds(X, y, 2, 20, 10, args.n_jobs)  # warm up skorch and the joblib pool

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"n_jobs={args.n_jobs}, {pretrain} + {swag} epochs, full batch, rank 20"
    )
    print(
        "baseline: one plain PyTorch network, same epochs, min of 2 runs at "
        "each thread count, re-measured before every row"
    )
    header = (
        f"{'particles':>9} {'fit s':>8} {'plain s':>8} {'thr':>3} {'x plain':>8} "
        f"{'x P plain':>10} {'MSE':>9}"
    )
    print(header)
    print("-" * len(header))
    for n_models in args.counts:
        base, threads = baseline(X, y, epochs)
        seconds, mse = fit_seconds(X, y, n_models, pretrain, swag, args.n_jobs)
        print(
            f"{n_models:>9} {seconds:>8.2f} {base:>8.2f} {threads:>3} "
            f"{seconds / base:>8.2f} "
            f"{seconds / (n_models * base):>10.3f} {mse:>9.5f}",
            flush=True,
        )
    base, threads = baseline(X, y, epochs)
    print(f"{'end':>9} {'':>8} {base:>8.2f} {threads:>3}  (baseline re-measured)")


if __name__ == "__main__":
    main()
