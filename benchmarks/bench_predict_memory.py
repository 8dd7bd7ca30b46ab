"""Peak memory and time of ``predict(X, return_std=True)`` on millions of rows.

A ``MultiSWAGRegressor`` with the default network and ``n_samples`` (20 draws a
particle) is fitted briefly on 2,000 random rows of 20 features, then predicts
``--rows`` random rows (default 1,000,000 and 4,000,000) with 5 and 64
particles (``--particles``). Each configuration runs in a fresh Python process,
so that peak memories do not mix. For each the table gives

- ``peak MB``: how much the peak resident set size
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) rose during the prediction,
  the query rows and the fitted model already in memory; MB is 2**20 bytes;
- ``s``: the seconds the prediction took, and ``s / M rows``.

Prediction goes through blocks of rows whose per-particle arrays are bounded,
so the peak should not grow with the rows. Run from the repository root::

    python benchmarks/bench_predict_memory.py
    python benchmarks/bench_predict_memory.py --rows 1000000 --particles 5
"""

import json
import subprocess
import sys

from _common import argument_parser, print_head

CHILD = """
import json, resource, sys, time
import numpy as np
from sklearn_swag import MultiSWAGRegressor

n_rows, n_models = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
X_train = rng.normal(size=(2000, 20)).astype(np.float32)
y_train = X_train[:, 0] + 0.1 * rng.normal(size=2000)
reg = MultiSWAGRegressor(
    n_models=n_models, pretrain_epochs=5, swag_epochs=5, early_stopping=False,
    noise="homoscedastic", random_state=0,
).fit(X_train, y_train)
X = rng.standard_normal(size=(n_rows, 20), dtype=np.float32)  # no float64 copy
reg.predict(X[:1000], return_std=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
reg.predict(X, return_std=True)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mb": (after - before) / 1024, "seconds": seconds}))
"""


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--particles", type=int, nargs="+", default=[5, 64])
    args = parser.parse_args()
    print_head(["particles", "rows", "peak MB", "s", "s / M rows"])
    for n_models in args.particles:
        for n_rows in args.rows:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(n_rows), str(n_models)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            print(
                f"| {n_models} | {n_rows:,} | {result['peak_mb']:.0f} | "
                f"{result['seconds']:.1f} | {result['seconds'] / n_rows * 1e6:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
