"""
Rank, particles, scale and noise: what shapes the uncertainty
==============================================================

On the problem of the toy example (``plot_toy_regression.py``: 100 points
of a wiggly curve on ``[0, 0.5]``, a 1-16-16-1 ELU network, Adam at learning
rate 0.03 on the whole data set at once), we change one setting at a time and
look at the predictive standard deviation, inside the data and far from it:

- ``rank``: the rank of each particle's SWAG covariance (0 is SWAG-Diagonal);
- ``n_models``: the number of particles, independent SWAG runs;
- ``scale``: the factor on each particle's covariance;
- ``noise``: one noise variance for all inputs, or one per input learned by
  the network, on data whose noise grows with ``x``.

The runs are shorter than the toy example's (200 epochs of plain training and
100 SWAG epochs instead of 2000 and 1000) so that the whole example runs in
about a minute; the pictures are much the same. In each figure the first
panels show the predictive mean with a band of two predictive standard
deviations, the data interval shaded, and the last panel puts their standard
deviations side by side on a log scale. At the end a table lists the mean
predictive standard deviation inside ``[0, 0.5]`` and far from it
(``x <= -1`` or ``x >= 1.5``). Set ``SKLEARN_SWAG_QUICK=1`` for a short smoke
run.
"""

# %%
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sklearn_swag import MultiSWAGRegressor, make_toy_regression  # noqa: E402

QUICK = os.environ.get("SKLEARN_SWAG_QUICK") == "1"
PRETRAIN, SWAG = (20, 5) if QUICK else (200, 100)

X, y = make_toy_regression(n_samples=100, random_state=0)
grid = np.linspace(-2.0, 2.5, 451).reshape(-1, 1)
x = grid[:, 0]
inside = (x >= 0.0) & (x <= 0.5)
far = (x <= -1.0) | (x >= 1.5)

#: The toy network and training; each section changes one of these.
TOY = dict(
    module__hidden_layer_sizes=(16, 16),
    module__activation="elu",
    n_models=1,
    rank=20,
    pretrain_epochs=PRETRAIN,
    swag_epochs=SWAG,
    lr=0.03,
    batch_size=None,
    n_samples=20,
    early_stopping=False,  # the toy recipe: every epoch runs, ...
    swa_lr=None,  # ... at one constant learning rate
    noise="homoscedastic",  # ... and one noise variance
    random_state=0,
)
table = []


def fit(X, y, **changes):
    """A MultiSWAGRegressor with the toy settings and ``changes``, fitted."""
    return MultiSWAGRegressor(**{**TOY, **changes}).fit(X, y)


def figure(name, suptitle, settings, fitted, data=(X, y), xlim=None, ylim=(-3, 3)):
    """One band panel per setting, then their standard deviations together.

    ``fitted(setting)`` returns the fitted regressor of a setting; every
    setting's mean predictive std inside and far from the data goes into the
    table, under ``name``.
    """
    n = len(settings)
    fig, axes = plt.subplots(1, n + 1, figsize=(3.6 * (n + 1), 3.6))
    fig.suptitle(suptitle)
    data_X, data_y = data
    xlim = (x[0], x[-1]) if xlim is None else xlim
    for k, (ax, setting) in enumerate(zip(axes[:-1], settings, strict=True)):
        mean, std = fitted(setting).predict(grid, return_std=True)
        ax.fill_between(x, mean - 2 * std, mean + 2 * std, color="C0", alpha=0.3, lw=0)
        ax.plot(x, mean, color="C0", lw=2)
        ax.scatter(data_X[:, 0], data_y, s=4, color="k", zorder=3)
        ax.axvspan(0.0, 0.5, color="0.9", zorder=0)
        ax.set(xlim=xlim, ylim=ylim, xlabel="x", title=setting)
        if k > 0:
            ax.tick_params(labelleft=False)
        axes[-1].semilogy(x, std, color=f"C{k}", label=setting)
        table.append((name, setting, std[inside].mean(), std[far].mean()))
    axes[0].set_ylabel("y (mean ± 2 std)")
    last = axes[-1]
    last.axvspan(0.0, 0.5, color="0.9", zorder=0)
    last.set(xlim=xlim, xlabel="x", title="predictive std (log scale)")
    last.legend(fontsize=8)
    fig.tight_layout()


# %%
# Rank of the covariance
# ----------------------
# One particle, so that only SWAG's own posterior is at work. The three fits
# share ``random_state``, so the network follows the same training trajectory
# in each; only the number of deviation vectors kept (the rank ``K``) changes.
# ``rank=0`` keeps none: the posterior is the diagonal Gaussian of the
# per-weight variances along the trajectory, and the band hardly widens away
# from the data. The low-rank part adds the directions in which the weights
# moved together, and with it the band opens up to the left of the data. A
# few vectors do most of it: the low-rank term is divided by
# :math:`\sqrt{2(K-1)}`, so more vectors do not simply mean more spread. To
# the right of the data the band stays at the noise level whatever the rank:
# one SWAG run explores only the neighbourhood of its own solution, and there
# the functions near that solution agree.
ranks = {f"rank={rank}": fit(X, y, rank=rank) for rank in (0, 2, 20)}
figure("rank", "Rank of the SWAG covariance, one particle", list(ranks), ranks.get)
plt.show()

# %%
# Number of particles
# -------------------
# Rank 20, with 1, 4 and 16 particles. Each particle starts from its own
# initialisation, so it settles in its own region of weight space; the
# prediction mixes the particles with equal weights. Inside the data they
# agree; away from it they extrapolate differently, on both sides, and their
# disagreement adds to each particle's own SWAG spread. Inside
# the data the band is mostly the observation noise, estimated on the 10 rows
# held out of training (``validation_fraction=0.1``); from so few rows the
# estimate moves from fit to fit, and the held-out rows themselves change
# with ``n_models``.
particles = {"n_models=1": ranks["rank=20"]}
for n_models in (4, 16):
    particles[f"n_models={n_models}"] = fit(X, y, n_models=n_models)
figure("n_models", "Number of particles, rank 20", list(particles), particles.get)
plt.show()

# %%
# Scale of the covariance
# -----------------------
# The one-particle, rank-20 fit again, its covariance multiplied by ``scale``.
# ``scale`` acts only when predicting, on the posterior draws, so we change it
# on the fitted model with ``set_params`` (the noise variance that ``fit``
# estimated, with ``scale=1``, stays as it was). ``scale=0`` predicts with the
# particle's SWA mean alone (the average of its SWAG snapshots), so the band
# is the observation noise only; 0.5 shrinks the weight-space spread, and 1 is
# the Gaussian as fitted.
swag = ranks["rank=20"]


def scaled(setting):
    return swag.set_params(scale=float(setting.split("=")[1]))


figure(
    "scale",
    "Scale of the SWAG covariance, one particle, rank 20",
    ["scale=0", "scale=0.5", "scale=1"],
    scaled,
)
plt.show()

# %%
# Noise model
# -----------
# New data from the same curve, 200 points with noise whose standard deviation
# grows from 0.02 at ``x = 0`` to 0.22 at ``x = 0.5``; the panels zoom in on
# the data. ``noise="homoscedastic"`` (the toy recipe above) estimates one
# noise variance for all inputs, from the rows held out of training, so its
# band is too wide on the left of the data and too narrow on the right.
# ``noise="heteroscedastic"`` (what the default ``"auto"`` chooses for the
# built-in network) adds a variance network beside the mean network, trained
# by the Gaussian negative log-likelihood with the means held fixed; the
# held-out rows then calibrate the variances by one factor. Four particles
# each; the dashed lines are the true mean ± 2 noise standard deviations.
rng = np.random.RandomState(1)
X_het, clean = make_toy_regression(n_samples=200, noise=0.0, random_state=1)
noise_std = 0.02 + 0.4 * X_het[:, 0]
y_het = clean + noise_std * rng.standard_normal(len(clean))

noise_fits = {
    f'noise="{noise}"': fit(X_het, y_het, n_models=4, noise=noise)
    for noise in ("homoscedastic", "heteroscedastic")
}
figure(
    "noise",
    "Noise model, data with growing noise, 4 particles",
    list(noise_fits),
    noise_fits.get,
    data=(X_het, y_het),
    xlim=(-0.25, 0.75),
    ylim=(-1.0, 1.5),
)
for ax in plt.gcf().axes[:2]:
    for sign in (-2, 2):
        ax.plot(X_het[:, 0], clean + sign * noise_std, "k--", lw=1)
plt.show()

# %%
# Summary
# -------
# The mean predictive standard deviation inside the data and far from it for
# every setting above; then, for the noise models, the noise part of the
# predictive standard deviation (``sqrt(dist.aleatoric_var())``) at both ends
# of the data next to the true noise.
print(f"{'figure':<9} {'setting':<24} {'std in [0, 0.5]':>15} {'std far':>8}")
for name, setting, std_in, std_far in table:
    print(f"{name:<9} {setting:<24} {std_in:>15.3f} {std_far:>8.3f}")

ends = np.array([[0.05], [0.45]])
true_ends = 0.02 + 0.4 * ends[:, 0]
print(f"\n{'noise model':<24} {'noise std at x=0.05':>20} {'at x=0.45':>10}")
print(f"{'true':<24} {true_ends[0]:>20.3f} {true_ends[1]:>10.3f}")
for setting, reg in noise_fits.items():
    at_ends = np.sqrt(reg.predict_dist(ends).aleatoric_var())
    print(f"{setting:<24} {at_ends[0]:>20.3f} {at_ends[1]:>10.3f}")
