"""
MultiSWAG on a toy regression problem
=====================================

The seed problem of MultiSWAG tutorials: 100 noisy points of a wiggly curve on
``[0, 0.5]``, a 1-16-16-1 ELU network trained with Adam at learning rate 0.03
on the whole data set at once for 2000 epochs, then 1000 more epochs that
collect a SWAG snapshot each, a rank-20 covariance and 20 posterior draws per
particle. We fit it with 1, 16 and 64 particles and draw, for each, the
predictive mean with 1 and 2 standard-deviation bands (left) and one function
drawn from each particle's posterior (right).

Far from the data the particles disagree, and the predictive standard deviation
grows; inside the data it shrinks to the observation noise.

It prints, per run, the fit time, the training MSE of the predictive mean and
the mean predictive standard deviation inside the data (``[0, 0.5]``) and far
from it (``x <= -1`` or ``x >= 1.5``). Run as a script, it also writes
``toy_regression_<n>.png`` for each particle count into the current directory.
Set ``SKLEARN_SWAG_QUICK=1`` for a short smoke run.
"""

# %%
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sklearn_swag import MultiSWAGRegressor, make_toy_regression  # noqa: E402

QUICK = os.environ.get("SKLEARN_SWAG_QUICK") == "1"
PRETRAIN, SWAG = (60, 20) if QUICK else (2000, 1000)
PARTICLES = (1, 4) if QUICK else (1, 16, 64)
# Run as a script, save the figures; sphinx-gallery runs examples without
# ``__file__`` and collects the open figures itself.
AS_SCRIPT = "__file__" in globals()

X, y = make_toy_regression(n_samples=100, random_state=0)
grid = np.linspace(-2.0, 2.5, 451).reshape(-1, 1)
inside = (grid[:, 0] >= 0.0) & (grid[:, 0] <= 0.5)
far = (grid[:, 0] <= -1.0) | (grid[:, 0] >= 1.5)

# %%
# Fit and plot each particle count
# --------------------------------
# ``module=None`` builds the default MLP; the routed parameters make it the
# seed's 1-16-16-1 ELU network. One batch holds all 100 points.
print(f"{'particles':>9} {'fit s':>7} {'train MSE':>10} {'std in':>8} {'std far':>8}")
for n_models in PARTICLES:
    reg = MultiSWAGRegressor(
        module__hidden_layer_sizes=(16, 16),
        module__activation="elu",
        n_models=n_models,
        rank=20,
        pretrain_epochs=PRETRAIN,
        swag_epochs=SWAG,
        lr=0.03,
        batch_size=100,
        n_samples=20,
        early_stopping=False,  # the seed's recipe: every epoch runs, ...
        swa_lr=None,  # ... at one constant learning rate
        noise="homoscedastic",  # ... and one noise variance
        random_state=0,
    )
    start = time.perf_counter()
    reg.fit(X, y)
    seconds = time.perf_counter() - start

    dist = reg.predict_dist(grid)
    mean, std = dist.mean(), dist.std()
    mse = np.mean((reg.predict(X) - y) ** 2)
    print(
        f"{n_models:>9} {seconds:>7.1f} {mse:>10.5f} "
        f"{std[inside].mean():>8.4f} {std[far].mean():>8.4f}"
    )

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    x = grid[:, 0]
    for k, alpha in ((2, 0.2), (1, 0.35)):
        left.fill_between(
            x,
            mean - k * std,
            mean + k * std,
            alpha=alpha,
            color="C0",
            lw=0,
            label=f"mean ± {k} std",
        )
    left.plot(x, mean, color="C0", lw=2, label="predictive mean")
    left.set_title(f"MultiSWAG, {n_models} particle(s)")
    # One function drawn from each particle's SWAG posterior, in the
    # convention of GaussianProcessRegressor.sample_y: (n_points, n_samples).
    for curve in reg.sample_y(grid, n_samples=n_models).T:
        right.plot(x, curve, lw=1, alpha=0.7)
    right.set_title("one posterior draw per particle (sample_y)")
    for ax in (left, right):
        ax.scatter(X[:, 0], y, s=8, color="k", zorder=3, label="training data")
        ax.axvspan(0.0, 0.5, color="0.9", zorder=0)
        ax.set_xlim(x[0], x[-1])
        ax.set_ylim(-3, 3)
        ax.set_xlabel("x")
    left.set_ylabel("y")
    left.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    if AS_SCRIPT:
        fig.savefig(f"toy_regression_{n_models}.png", dpi=100)
        plt.close(fig)
plt.show()
