"""
Images: a small CNN per particle, and the digits it is least sure of
=====================================================================

Both estimators take arrays of any shape ``(n_samples, ...)`` when the network
does. Here scikit-learn's handwritten digits are ``(N, 1, 8, 8)`` images and
every particle of a :class:`~sklearn_swag.MultiSWAGClassifier` is a small
convolutional network (two convolutions, a pooling, two linear layers), which
the package rewrites into one batched computation for all particles. We
compare it with the same CNN trained alone (one particle, no SWAG epochs) on
the held-out images: accuracy, log loss and calibration error, and then show
the test images the model is least sure of, with the share of their
uncertainty that comes from the weights (the mutual information). Set
``SKLEARN_SWAG_QUICK=1`` for a short smoke run.
"""

# %%
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.metrics import log_loss  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from torch import nn  # noqa: E402

from sklearn_swag import MultiSWAGClassifier, expected_calibration_error  # noqa: E402

QUICK = os.environ.get("SKLEARN_SWAG_QUICK") == "1"
EPOCHS = dict(pretrain_epochs=2, swag_epochs=2, rank=2) if QUICK else {}


class SmallCNN(nn.Module):
    """Conv-ReLU-Conv-ReLU-MaxPool, then two linear layers, for 1x8x8 images."""

    def __init__(self, n_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, n_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


digits = load_digits()
X = (digits.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
y = digits.target
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
print("images:", X_train.shape, "->", X_test.shape)

# %%
# Fit: four CNN particles against one CNN
# ---------------------------------------
# The same network, optimizer and budget (the classifier's defaults: Adam,
# batches of 128, pretraining stopped early on held-out images, then SWAG
# epochs); ``swag_epochs=0`` with one particle is the CNN alone.
settings = {
    "MultiSWAG, 4 CNNs": dict(n_models=4),
    "one CNN": dict(n_models=1, swag_epochs=0),
}
models, rows = {}, []
for name, params in settings.items():
    clf = MultiSWAGClassifier(SmallCNN, random_state=0, **{**params, **EPOCHS})
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    proba = clf.predict_proba(X_test)
    rows.append(
        (
            name,
            clf.score(X_test, y_test),
            log_loss(y_test, proba, labels=clf.classes_),
            expected_calibration_error(y_test, proba, labels=clf.classes_),
            seconds,
        )
    )
    models[name] = clf

print(f"{'model':>18} {'accuracy':>9} {'log loss':>9} {'ECE':>7} {'fit s':>6}")
for name, accuracy, loss, ece, seconds in rows:
    print(f"{name:>18} {accuracy:>9.4f} {loss:>9.4f} {ece:>7.4f} {seconds:>6.1f}")
clf = models["MultiSWAG, 4 CNNs"]
print("input_shape_:", clf.input_shape_, " evaluation:", clf.particles_.mode)

# %%
# The images the model is least sure of
# -------------------------------------
# The predictive entropy of each test image, split into what the particles
# agree is ambiguous (the expected entropy) and what they disagree on (the
# mutual information, the weights' share). The twelve most uncertain images,
# with the two most likely classes and the true one:
dist = clf.predict_dist(X_test)
total = dist.entropy()
weights_share = dist.mutual_information()
proba = dist.proba()
order = np.argsort(total)[::-1][:12]

fig, axes = plt.subplots(2, 6, figsize=(12, 4.8))
for ax, i in zip(axes.ravel(), order, strict=True):
    first, second = np.argsort(proba[i])[::-1][:2]
    ax.imshow(X_test[i, 0], cmap="gray_r")
    ax.set_title(
        f"true {y_test[i]}: {first} {proba[i, first]:.2f}, {second} "
        f"{proba[i, second]:.2f}\nentropy {total[i]:.2f}, MI {weights_share[i]:.2f}",
        fontsize=8,
    )
    ax.axis("off")
fig.suptitle("Test digits with the highest predictive entropy (MultiSWAG, 4 CNNs)")
fig.tight_layout()
plt.show()

print(
    "mean entropy, all test images: "
    f"{total.mean():.3f}; misclassified: "
    f"{total[proba.argmax(axis=1) != y_test].mean():.3f}"
)
