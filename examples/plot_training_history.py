"""
The training run of every particle: losses, learning rate, early stopping
=========================================================================

``history_`` records, for every particle and epoch, the mean training loss,
the learning rate, the phase (pretraining or SWAG) and, with
``early_stopping=True``, the loss on the held-out rows. This example trains
five particles on scikit-learn's diabetes data with early stopping of the
pretraining (each particle stops on its own, at the epoch after which its
held-out loss stopped falling, and goes back to that epoch's weights) and a
higher learning rate in the SWAG phase (``swa_lr``, reached along a cosine
over ``anneal_epochs`` epochs), so that the iterates explore the mode SWAG
describes.

It then grows the ensemble with ``warm_start=True``: raising ``n_models``
trains only the new particles. Set ``SKLEARN_SWAG_QUICK=1`` for a short smoke
run.
"""

# %%
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.datasets import load_diabetes  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from sklearn_swag import MultiSWAGRegressor, mean_negative_log_likelihood  # noqa: E402

QUICK = os.environ.get("SKLEARN_SWAG_QUICK") == "1"

X, y = load_diabetes(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, random_state=0
)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

# %%
# Early stopping and a SWAG learning rate
# ---------------------------------------
reg = MultiSWAGRegressor(
    n_models=5,
    pretrain_epochs=20 if QUICK else 300,  # the most pretraining may run
    swag_epochs=5 if QUICK else 30,
    early_stopping=True,
    n_iter_no_change=3 if QUICK else 10,
    validation_fraction=0.2,
    swa_lr=0.01,
    anneal_epochs=5,
    warm_start=True,
    random_state=0,
).fit(X_train, y_train)
print("pretraining epochs kept per particle:", reg.pretrain_epochs_)

history = reg.history_
fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
for p in range(reg.n_models):
    (line,) = ax_loss.plot(history["epoch"], history["train_loss"][p], lw=1)
    ax_loss.plot(
        history["epoch"],
        history["valid_loss"][p],
        ls="--",
        lw=1,
        color=line.get_color(),
    )
    ax_loss.axvline(reg.pretrain_epochs_[p], color=line.get_color(), lw=0.5, ls=":")
    ax_lr.plot(history["epoch"], history["lr"][p], color=line.get_color(), lw=1)
ax_loss.set_yscale("log")
ax_loss.set_ylabel("loss (standardised targets)")
ax_loss.set_title("training (solid) and held-out (dashed) loss; dotted: best epoch")
ax_lr.set_ylabel("learning rate")
ax_lr.set_xlabel("epoch (pretraining, then the SWAG epochs)")
fig.tight_layout()

# %%
# Growing the ensemble with ``warm_start``
# ----------------------------------------
# Particle ``i`` is the one a fresh fit with more particles would train, so the
# ensemble can grow one step at a time while a held-out score improves.
sizes = [5, 6] if QUICK else [5, 8, 12]
scores = [mean_negative_log_likelihood(y_test, reg.predict_dist(X_test))]
for n_models in sizes[1:]:
    reg.set_params(n_models=n_models).fit(X_train, y_train)  # trains the new ones
    scores.append(mean_negative_log_likelihood(y_test, reg.predict_dist(X_test)))
for n_models, score in zip(sizes, scores, strict=True):
    print(f"{n_models:>2} particles: test NLL {score:.3f}")

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(sizes, scores, marker="o")
ax.set_xlabel("particles")
ax.set_ylabel("test NLL")
ax.set_title("warm_start: the same particles, plus new ones")
fig.tight_layout()
plt.show()
