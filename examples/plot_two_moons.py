"""
MultiSWAG classification on two moons: where the uncertainty comes from
=======================================================================

The classification twin of the toy regression: 200 noisy points of
scikit-learn's two interleaving half circles (``make_moons``, noise 0.2), and a
:class:`~sklearn_swag.MultiSWAGClassifier` with 5 particles and otherwise its
default settings (a 64-64 ReLU network per particle, early-stopped pretraining,
then 30 SWAG epochs, 20 posterior draws per particle).

Over a grid of the plane we draw the predictive probability of class 1, its
entropy (the total uncertainty), and the two parts that entropy splits into:
the expected entropy of the posterior draws (aleatoric, the classes overlap)
and the mutual information between the label and the weights (epistemic, the
draws disagree). A second figure shows each particle's decision boundary.

It prints the fit time, the training accuracy and the mean of each uncertainty
in bands of distance from the nearest training point. Set
``SKLEARN_SWAG_QUICK=1`` for a short smoke run.
"""

# %%
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402
from sklearn.datasets import make_moons  # noqa: E402

from sklearn_swag import MultiSWAGClassifier  # noqa: E402

QUICK = os.environ.get("SKLEARN_SWAG_QUICK") == "1"
epochs = dict(pretrain_epochs=5, swag_epochs=5, rank=4) if QUICK else {}

X, y = make_moons(n_samples=200, noise=0.2, random_state=0)
xx, yy = np.meshgrid(np.linspace(-2.5, 3.5, 121), np.linspace(-2.0, 2.5, 91))
grid = np.c_[xx.ravel(), yy.ravel()]

# %%
# Fit
# ---
# The defaults hold out 10% of the rows to stop each particle's pretraining
# early; the particles train on the other 180 points.
clf = MultiSWAGClassifier(n_models=5, random_state=0, **epochs)
start = time.perf_counter()
clf.fit(X, y)
print(
    f"fit: {time.perf_counter() - start:.1f} s, pretraining epochs per particle "
    f"{clf.pretrain_epochs_.tolist()}, training accuracy {clf.score(X, y):.3f}"
)

# %%
# The predictive distribution over the plane
# ------------------------------------------
# :meth:`~sklearn_swag.MultiSWAGClassifier.predict_dist` returns a
# :class:`~sklearn_swag.CategoricalMixture`: every particle's class
# probabilities, each the average of its posterior draws' softmax outputs.
# ``proba()`` is their average over all particles and draws (what
# ``predict_proba`` returns), and its entropy splits in two:
#
# - ``entropy()``: the total uncertainty, :math:`H[\bar p]`, the entropy of
#   the averaged probabilities;
# - ``expected_entropy()``: the aleatoric part, the mean entropy of the
#   individual draws. A draw is unsure where the two classes overlap, so this
#   part sits on the class boundary, inside the data;
# - ``mutual_information()``: the epistemic part, the rest,
#   :math:`H[\bar p]` minus the expected entropy. It is zero where every draw
#   predicts the same probabilities and grows where they disagree: away from
#   the data, where nothing pins the networks down and the particles draw their
#   boundaries in different places.
#
# The table below averages each part over grid points grouped by their
# distance to the nearest training point.
dist = clf.predict_dist(grid)
proba = dist.proba()[:, 1]
entropy = dist.entropy()
aleatoric = dist.expected_entropy()
epistemic = dist.mutual_information()

distance = cKDTree(X).query(grid)[0]
bands = [(0.0, 0.25), (0.25, 0.75), (0.75, 1.5), (1.5, np.inf)]
print(
    f"{'distance to data':>17} {'points':>7} {'total':>7} {'aleatoric':>10} "
    f"{'epistemic':>10}"
)
for low, high in bands:
    band = (distance >= low) & (distance < high)
    print(
        f"{f'[{low:g}, {high:g})':>17} {band.sum():>7} {entropy[band].mean():>7.3f} "
        f"{aleatoric[band].mean():>10.3f} {epistemic[band].mean():>10.3f}"
    )

# %%
# The three entropies share one colour scale, from 0 to :math:`\log 2`, the
# entropy of a coin flip, so that the two parts visibly add up to the total.
# Read the printed table with the maps: near the data the aleatoric part
# should dominate, far from it the epistemic part.
#
# Away from the data the epistemic part is high where the particles'
# boundaries fan out, along the continuation of the class boundary. Far from
# the data *and* from that boundary, every particle is confident of the same
# class, and the mutual information is small there too: networks of ReLU
# units extrapolate linearly and grow confident far from their data (Hein et
# al., CVPR 2019), and a handful of particles trained on the same points need
# not disagree in every direction. MultiSWAG widens the uncertainty where the
# networks' solutions differ; it is no detector of every unusual input.
fig, axes = plt.subplots(2, 2, figsize=(11, 8.5), sharex=True, sharey=True)
shape = xx.shape
panels = [
    (proba, "predictive probability of class 1", "RdBu_r", (0.0, 1.0)),
    (entropy, "total uncertainty: entropy", "viridis", (0.0, np.log(2))),
    (aleatoric, "aleatoric: expected entropy", "viridis", (0.0, np.log(2))),
    (epistemic, "epistemic: mutual information", "viridis", (0.0, np.log(2))),
]
for ax, (values, title, cmap, (vmin, vmax)) in zip(axes.flat, panels, strict=True):
    image = ax.pcolormesh(
        xx,
        yy,
        values.reshape(shape),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        shading="auto",
    )
    fig.colorbar(image, ax=ax)
    ax.contour(xx, yy, proba.reshape(shape), levels=[0.5], colors="k", linewidths=1)
    ax.set_title(title)
for ax in axes.flat:
    ax.scatter(
        X[:, 0], X[:, 1], c=y, cmap="RdBu_r", edgecolors="k", s=14, linewidths=0.5
    )
for ax in axes[1]:
    ax.set_xlabel("$x_1$")
for ax in axes[:, 0]:
    ax.set_ylabel("$x_2$")
fig.suptitle("MultiSWAG, 5 particles, on two moons (black line: p = 0.5)")
fig.tight_layout()

# %%
# One decision boundary per particle
# ----------------------------------
# As the toy regression draws one function per particle, this figure draws the
# particles' decision boundaries. Left: the 0.5 contour of each particle's own
# probabilities (``dist.particle_proba``, the average over its posterior
# draws). Right: the boundary of one network drawn from each particle's SWAG
# posterior (``sample_proba`` with one draw per particle). Inside the data the
# boundaries agree; outside it they fan out, and where they fan out the
# mutual information above is high.
draws = clf.sample_proba(grid, n_samples=clf.n_models)  # (n_points, 2, n_models)
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
for m in range(clf.n_models):
    left.contour(
        xx,
        yy,
        dist.particle_proba[m, :, 1].reshape(shape),
        levels=[0.5],
        colors=f"C{m}",
        linewidths=1.5,
    )
    right.contour(
        xx,
        yy,
        draws[:, 1, m].reshape(shape),
        levels=[0.5],
        colors=f"C{m}",
        linewidths=1.5,
    )
left.set_title("each particle's boundary (particle_proba)")
right.set_title("one posterior draw per particle (sample_proba)")
for ax in (left, right):
    ax.scatter(
        X[:, 0], X[:, 1], c=y, cmap="RdBu_r", edgecolors="k", s=14, linewidths=0.5
    )
    ax.set_xlabel("$x_1$")
left.set_ylabel("$x_2$")
fig.tight_layout()
plt.show()
