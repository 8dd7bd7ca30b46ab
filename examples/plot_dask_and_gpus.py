"""
Particles on a dask cluster, and on GPUs
========================================

``fit`` splits the ``n_models`` particles into ``n_jobs`` groups and hands each
group to a joblib worker, which trains the group as one batched network. Any
joblib backend runs the groups: loky processes by default, threads, or the
workers of a ``dask.distributed`` cluster. Every particle's seeds are drawn
from ``random_state`` in the calling process before the groups are sent out,
so the same groups train the same way whichever backend runs them. (A
different ``n_jobs`` stacks the particles into different groups; the batched
arithmetic then rounds differently in the last bits, and a long training run
can amplify that well beyond rounding. Compare fits with the same
``n_jobs``.)

Here we fit the same model locally and on a dask ``LocalCluster`` of two
worker processes, compare the two, and show how the same groups go to GPUs.
dask is an optional extra (``pip install "sklearn_swag[dask]"``); without it
the example says so and skips the cluster. Set ``SKLEARN_SWAG_QUICK=1`` for a
short smoke run.
"""

# %%
# Setup
# -----
# dask starts its worker processes with the ``spawn`` method, and each of
# them imports this script again (under another ``__name__``). The cells
# that do the work are therefore guarded by ``if __name__ == "__main__":``,
# so that the workers do not run the example a second time; a script that
# starts a ``LocalCluster`` with processes needs the same guard.
import logging
import os
import time

import joblib
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from sklearn_swag import MultiSWAGRegressor, make_toy_regression  # noqa: E402

try:
    from dask.distributed import Client, LocalCluster
except ImportError:  # dask is an optional extra
    Client = LocalCluster = None

QUICK = os.environ.get("SKLEARN_SWAG_QUICK") == "1"

X, y = make_toy_regression(n_samples=100, random_state=0)
grid = np.linspace(-1.0, 1.5, 251).reshape(-1, 1)

#: The toy problem's network, with eight particles (four in the quick run).
params = dict(
    n_models=4 if QUICK else 8,
    rank=20,
    pretrain_epochs=20 if QUICK else 200,
    swag_epochs=5 if QUICK else 50,
    lr=0.03,
    batch_size=None,
    module__hidden_layer_sizes=(16, 16),
    module__activation="elu",
    early_stopping=False,
    swa_lr=None,
    random_state=0,
)

# %%
# A local fit
# -----------
# With ``n_jobs=2`` the particles form two groups. joblib's default backend
# would train them in two worker processes (loky); here the ``threading``
# backend trains them in two threads of this process.
if __name__ == "__main__":
    start = time.perf_counter()
    with joblib.parallel_backend("threading"):
        local = MultiSWAGRegressor(n_jobs=2, **params).fit(X, y)
    print(f"local fit (2 groups, 2 threads): {time.perf_counter() - start:.1f} s")
    local_mean, local_std = local.predict(grid, return_std=True)

# %%
# The same fit on a dask cluster
# ------------------------------
# A ``LocalCluster`` of two worker processes with one thread each stands in
# for a real cluster (for which ``Client("tcp://scheduler:8786")`` would
# connect to its scheduler; its workers need ``sklearn_swag`` and torch
# installed). Inside ``joblib.parallel_backend("dask")`` the same two groups
# become dask tasks: the data
# and the training plan travel to the workers, the trained particles and
# their SWAG moments come back, and the fitted estimator lives in this
# process as usual. Leaving the ``with`` block closes
# the client and the cluster.
if __name__ == "__main__" and LocalCluster is None:
    print(
        "Note: dask is not installed, so the cluster part is skipped. Install "
        'the optional extra with: pip install "sklearn_swag[dask]"'
    )
elif __name__ == "__main__":
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,  # no dashboard in this example
            silence_logs=logging.ERROR,  # nor its routine warnings
        ) as cluster,
        Client(cluster) as client,
    ):
        print(f"cluster: {len(client.scheduler_info()['workers'])} workers")
        start = time.perf_counter()
        with joblib.parallel_backend("dask"):
            on_dask = MultiSWAGRegressor(n_jobs=2, **params).fit(X, y)
        print(f"dask fit (2 groups, 2 workers): {time.perf_counter() - start:.1f} s")

    dask_mean, dask_std = on_dask.predict(grid, return_std=True)
    diff_mean = np.abs(dask_mean - local_mean).max()
    diff_std = np.abs(dask_std - local_std).max()
    print(
        f"max abs difference from the local fit: mean {diff_mean:.1e}, "
        f"std {diff_std:.1e}"
    )
    # Same seeds, same groups: the fits agree up to floating-point rounding
    # (worker processes may take other vectorised code paths in the last bits,
    # which training amplifies a little).
    assert np.allclose(dask_mean, local_mean, rtol=1e-4, atol=1e-4)
    assert np.allclose(dask_std, local_std, rtol=1e-4, atol=1e-4)

    fig, ax = plt.subplots(figsize=(7, 4))
    x = grid[:, 0]
    ax.fill_between(
        x,
        dask_mean - 2 * dask_std,
        dask_mean + 2 * dask_std,
        color="C0",
        alpha=0.3,
        lw=0,
        label="dask fit: mean ± 2 std",
    )
    ax.plot(x, dask_mean, color="C0", lw=2, label="dask fit: mean")
    ax.plot(x, local_mean, "k--", lw=1, label="local fit: mean")
    ax.scatter(X[:, 0], y, s=6, color="k", zorder=3)
    ax.set(
        xlabel="x",
        ylabel="y",
        ylim=(-3, 3),
        title=f"{params['n_models']} particles fitted on a dask cluster and locally",
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    plt.show()

# %%
# GPUs
# ----
# ``device="cuda"`` sends the groups round robin to the visible GPUs (a list
# such as ``["cuda:0", "cuda:2"]`` chooses them); with ``n_jobs`` equal to
# the number of GPUs, every GPU trains one group at the same time. Prediction
# runs on the first device, and the fitted moments are stored on the CPU, so
# the model pickles and loads on a machine without a GPU. GPU arithmetic
# differs from the CPU's in the last bits, so the two fits agree closely but
# not exactly.
if __name__ == "__main__":
    if torch.cuda.is_available():
        n_gpus = torch.cuda.device_count()
        start = time.perf_counter()
        on_gpus = MultiSWAGRegressor(device="cuda", n_jobs=n_gpus, **params)
        on_gpus.fit(X, y)
        print(f"fit on {n_gpus} GPU(s): {time.perf_counter() - start:.1f} s")
        gpu_mean = on_gpus.predict(grid)
        diff = np.abs(gpu_mean - local_mean).max()
        print(f"max abs difference of the mean from the CPU fit: {diff:.1e}")
    else:
        print(
            "No GPU is visible (torch.cuda.is_available() is False), so the "
            "particles stay on the CPU."
        )
