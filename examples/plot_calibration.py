"""
Calibration: MultiSWAG, SWAG, a deep ensemble and a Gaussian process
=====================================================================

A predictive distribution is calibrated when its central intervals cover the
observed targets as often as they claim: 90% intervals cover 90% of held-out
targets, 50% intervals half of them. A reliability diagram plots the observed
coverage against this nominal level, for levels from 0.1 to 0.95; a calibrated
model lies on the diagonal, an over-confident one below it.

We compare four models on the same held-out half of scikit-learn's diabetes
data:

- MultiSWAG with 5 particles (the estimator's defaults);
- SWAG, a single particle (``n_models=1``);
- a deep ensemble of 5 networks (``swag_epochs=0``: each particle is its
  final network, here after 50 epochs of training);
- an exact Gaussian process (``GaussianProcessRegressor``).

The diabetes data (442 patients, 10 inputs) is small enough for the exact
Gaussian process, whose cost grows with the cube of the number of rows, to fit
in well under a second. Its target, a measure of disease progression, takes
integer values from 25 to 346, so it behaves as a continuous quantity; the
wine quality scores of the red-wine example take only six values, which would
make the coverage of narrow intervals depend on whether they happen to contain
a whole number. Set ``SKLEARN_SWAG_QUICK=1`` for a short smoke run.
"""

# %%
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import norm  # noqa: E402
from sklearn.datasets import load_diabetes  # noqa: E402
from sklearn.gaussian_process import GaussianProcessRegressor  # noqa: E402
from sklearn.gaussian_process.kernels import (  # noqa: E402
    RBF,
    ConstantKernel,
    WhiteKernel,
)
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from sklearn_swag import (  # noqa: E402
    MultiSWAGRegressor,
    NormalMixture,
    mean_crps,
    mean_negative_log_likelihood,
)

QUICK = os.environ.get("SKLEARN_SWAG_QUICK") == "1"

X, y = load_diabetes(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, random_state=0)
levels = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])

# %%
# The four models
# ---------------
# Each model is a pipeline that standardises the inputs; the networks
# standardise the target themselves, and the Gaussian process does with
# ``normalize_y=True``. Its kernel is a scaled RBF kernel, with one length
# scale for the standardised inputs, plus a white noise term; their
# parameters are fitted by maximising the marginal likelihood. The quick smoke
# run trains the networks for a few epochs only.
epochs = dict(pretrain_epochs=3, swag_epochs=4) if QUICK else {}
ensemble_epochs = 3 if QUICK else 50
models = {
    "MultiSWAG, 5 particles": MultiSWAGRegressor(n_models=5, random_state=0, **epochs),
    "SWAG, 1 particle": MultiSWAGRegressor(n_models=1, random_state=0, **epochs),
    "deep ensemble, 5 networks": MultiSWAGRegressor(
        n_models=5, pretrain_epochs=ensemble_epochs, swag_epochs=0, random_state=0
    ),
    "Gaussian process": GaussianProcessRegressor(
        kernel=ConstantKernel() * RBF(length_scale=3.0) + WhiteKernel(),
        normalize_y=True,
        random_state=0,
    ),
}

# %%
# Predictive distributions on the held-out half
# ---------------------------------------------
# For the networks, ``predict_dist`` returns the Gaussian mixture and
# ``dist.interval(level)`` its equal-tailed central interval. The Gaussian
# process predicts a normal distribution: its ``return_std`` includes the
# fitted white noise, and ``scipy.stats.norm.interval`` gives the interval. To
# score it with the same functions, we wrap it in a one-component
# :class:`~sklearn_swag.NormalMixture` whose component variance is zero and
# whose noise variance is the predictive variance.
coverage, width, scores = {}, {}, {}
for name, estimator in models.items():
    pipe = make_pipeline(StandardScaler(), estimator).fit(X_train, y_train)
    X_test_scaled = pipe[:-1].transform(X_test)
    if isinstance(estimator, GaussianProcessRegressor):
        mean, std = estimator.predict(X_test_scaled, return_std=True)
        intervals = [norm.interval(level, loc=mean, scale=std) for level in levels]
        dist = NormalMixture(
            mean[None, :, None], np.zeros((1, len(mean), 1)), noise_variance=std**2
        )
    else:
        dist = estimator.predict_dist(X_test_scaled)
        intervals = [dist.interval(level) for level in levels]
    coverage[name] = [np.mean((lo <= y_test) & (y_test <= hi)) for lo, hi in intervals]
    width[name] = [np.mean(hi - lo) for lo, hi in intervals]
    scores[name] = (
        mean_negative_log_likelihood(y_test, dist),
        mean_crps(y_test, dist),
    )

print(f"{'model':<26} {'NLL':>6} {'CRPS':>6} {'cov 50%':>8} {'cov 95%':>8}")
for name, (nll, crps) in scores.items():
    print(
        f"{name:<26} {nll:>6.3f} {crps:>6.2f} "
        f"{coverage[name][4]:>8.3f} {coverage[name][-1]:>8.3f}"
    )

# %%
# Reliability diagram
# -------------------
# Left: observed coverage against nominal level. Right: the price of the
# coverage, the mean width of the intervals. A model can sit on the diagonal
# with wide intervals; among calibrated models, the narrower intervals are
# the better ones, which is what the NLL and the CRPS above weigh together
# (both lower is better). With 221 held-out patients, the observed coverage
# of a calibrated model scatters around the diagonal by about 3 percentage
# points (one binomial standard error at a level of 0.5).
#
# In this comparison a single SWAG particle is over-confident: its intervals
# are the narrowest and cover too few patients at every level. Mixing five
# particles (MultiSWAG) or five networks (the deep ensemble) widens them to
# about the right coverage. The Gaussian process, a strong model for a small
# and smooth problem such as this one, is about as well calibrated with
# narrower intervals, and has the best NLL and CRPS.
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
for k, name in enumerate(models):
    left.plot(levels, coverage[name], "o-", color=f"C{k}", label=name)
    right.plot(levels, width[name], "o-", color=f"C{k}", label=name)
left.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
left.set(
    xlim=(0, 1),
    ylim=(0, 1),
    xlabel="nominal level of the central interval",
    ylabel="observed coverage on held-out data",
    title="Reliability diagram (diabetes, held-out half)",
)
left.legend(fontsize=8)
right.set(
    xlim=(0, 1),
    xlabel="nominal level of the central interval",
    ylabel="mean interval width (disease progression units)",
    title="Interval width",
)
fig.tight_layout()
plt.show()
