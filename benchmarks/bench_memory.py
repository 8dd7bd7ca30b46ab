"""Memory of a fitted model with about a million weights per particle.

An MLP 10-1000-1000-1 (1,013,001 weights), 16 particles, rank 20, is fitted on
256 random rows, full batch, for 2 + 25 epochs (so that 20 deviation rows are
held), once with ``deviation_dtype="float32"`` and once with ``"float16"``;
``n_jobs=1``. Each configuration runs in a fresh Python process so that peak
memories do not mix; a third process only imports the package and makes the
data, as the floor. For each the table gives

- ``peak fit MB``: peak resident set size of the process after ``fit``
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``);
- ``peak pkl MB``: the same after ``pickle.dumps`` of the fitted estimator, which
  holds the pickle in memory as well;
- ``moments MB``: ``swag_mean_.nbytes + swag_sq_mean_.nbytes +
  swag_deviations_.nbytes``;
- ``formula MB``: ``n_models * n_params * (16 + rank * b)`` bytes, b = 4 or 2,
  which must equal the moments (asserted);
- ``pickle MB``: ``len(pickle.dumps(reg))``;
- ``fit s``: the seconds ``fit`` took.

MB is 10**6 bytes. Run from the repository root::

    python benchmarks/bench_memory.py
"""

import json
import pickle
import resource
import subprocess
import sys
import time

N_MODELS, RANK, HIDDEN, N_FEATURES, N_ROWS = 16, 20, (1000, 1000), 10, 256
PRETRAIN, SWAG = 2, 25
MB = 1e6


def peak_rss_bytes():
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def child(config):
    """Run one configuration in this (fresh) process; print a JSON line."""
    import numpy as np

    from sklearn_swag import MultiSWAGRegressor

    rng = np.random.RandomState(0)
    X = rng.standard_normal((N_ROWS, N_FEATURES)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] + 0.1 * rng.standard_normal(N_ROWS)).astype(np.float32)
    if config == "import":
        print(json.dumps({"config": config, "peak_fit": peak_rss_bytes()}))
        return
    reg = MultiSWAGRegressor(
        module__hidden_layer_sizes=HIDDEN,
        n_models=N_MODELS,
        rank=RANK,
        deviation_dtype=config,
        noise="homoscedastic",
        pretrain_epochs=PRETRAIN,
        swag_epochs=SWAG,
        lr=1e-3,
        batch_size=None,
        n_jobs=1,
        random_state=0,
    )
    start = time.perf_counter()
    reg.fit(X, y)
    seconds = time.perf_counter() - start
    peak_fit = peak_rss_bytes()
    moments = (
        reg.swag_mean_.nbytes + reg.swag_sq_mean_.nbytes + reg.swag_deviations_.nbytes
    )
    pickled = len(pickle.dumps(reg))
    result = {
        "config": config,
        "n_params": int(reg.n_params_),
        "k": int(reg.swag_deviations_.shape[1]),
        "dtype": str(reg.swag_deviations_.dtype),
        "moments": int(moments),
        "pickle": pickled,
        "peak_fit": peak_fit,
        "peak_pickle": peak_rss_bytes(),
        "seconds": seconds,
    }
    print(json.dumps(result))


def run_child(config):
    proc = subprocess.run(
        [sys.executable, __file__, "--child", config],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"configuration {config!r} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    floor = run_child("import")
    rows = [run_child(dtype) for dtype in ("float32", "float16")]
    n_params = rows[0]["n_params"]
    print(
        f"MLP {N_FEATURES}-{'-'.join(map(str, HIDDEN))}-1: n_params_ = {n_params:,}; "
        f"{N_MODELS} particles, rank {RANK}, {N_ROWS} rows, "
        f"{PRETRAIN} + {SWAG} epochs, full batch, n_jobs=1"
    )
    print(
        f"peak RSS after import + data (floor): {floor['peak_fit'] / MB:.0f} MB; "
        "MB = 10**6 bytes; one fresh process per row"
    )
    header = (
        f"{'deviations':<10} {'K':>3} {'peak fit MB':>11} {'peak pkl MB':>11} "
        f"{'moments MB':>10} {'formula MB':>10} {'pickle MB':>9} {'fit s':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        b = 4 if row["config"] == "float32" else 2
        formula = N_MODELS * row["n_params"] * (16 + RANK * b)
        assert row["k"] == RANK, f"{row['k']} deviation rows held, not {RANK}"
        assert row["dtype"] == row["config"], (row["dtype"], row["config"])
        assert row["moments"] == formula, (row["moments"], formula)
        print(
            f"{row['config']:<10} {row['k']:>3} {row['peak_fit'] / MB:>11.0f} "
            f"{row['peak_pickle'] / MB:>11.0f} {row['moments'] / MB:>10.1f} "
            f"{formula / MB:>10.1f} {row['pickle'] / MB:>9.1f} "
            f"{row['seconds']:>6.1f}"
        )
    ratio = rows[1]["moments"] / rows[0]["moments"]
    print(f"float16 / float32: moments {ratio:.3f}, ", end="")
    print(f"pickle {rows[1]['pickle'] / rows[0]['pickle']:.3f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
