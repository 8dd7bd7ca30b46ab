"""Fit time of CNN particles on 28x28 images against the same CNN alone.

Where the digits of ``bench_images.py`` are 8x8, this is the size of the
10-class image sets of 28x28 pixels: ``--rows`` (default 4,000) random
1x28x28 images (standard normal pixels, seeded) with the labels 0-9 in turn,
and a CNN of two blocks Conv2d(3x3, padding 1) - BatchNorm2d - ReLU -
MaxPool2d(2) with 32 and 64 channels, then Linear(64 * 7 * 7, 10). Only the
time is measured (the labels carry nothing to learn):

- ``cnn``: the CNN alone, trained by skorch's ``NeuralNetClassifier`` (Adam at
  lr 0.003, shuffled mini-batches of 128 as the particles', ``train_split=None``)
  for ``--epochs`` epochs (default 3; ``bench_images.cnn_alone``);
- ``multiswag``: ``MultiSWAGClassifier(module=CNN28, n_models=--particles)``
  (default 3) with the same optimizer, lr and batches, ``--epochs`` epochs in
  all (the last third SWAG epochs), ``validation_fraction=0``.

Each is fitted ``--repeats`` times (default 2), alternated in this process,
after one warm-up fit each; ``x cnn`` is the shortest ``multiswag`` fit over the
shortest ``cnn`` fit, and ``x copies`` the same over ``--particles`` times
``cnn``'s: 1.0 is the cost of training the particles one after another.
Torch at ``--threads`` threads (default 1).

The activations of several particles, stacked, can pass glibc's 32 MB limit
above which every allocation is fresh memory from the system; to see that
cost, run it once more with ``MALLOC_MMAP_THRESHOLD_=4294967296
MALLOC_TRIM_THRESHOLD_=17179869184`` in the environment.

Run from the repository root::

    python benchmarks/bench_large_images.py
    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=17179869184 \\
        python benchmarks/bench_large_images.py
"""

import os
import time
import warnings

import numpy as np
import torch
from _common import argument_parser, command_line, pin_threads, positive
from bench_images import BATCH_SIZE, LR, cnn_alone
from torch import nn

from sklearn_swag import MultiSWAGClassifier


class CNN28(nn.Module):
    """Two Conv-BatchNorm-ReLU-pool blocks (32, 64 channels) and a linear layer."""

    def __init__(self, n_classes=10):
        super().__init__()

        def block(c_in, c_out):
            return [
                nn.Conv2d(c_in, c_out, 3, padding=1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]

        self.body = nn.Sequential(
            *block(1, 32),
            *block(32, 64),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, n_classes),
        )

    def forward(self, x):
        return self.body(x)


def make_models(args):
    swag = args.epochs // 3
    return {
        "cnn": lambda: cnn_alone(CNN28, args.epochs),
        "multiswag": lambda: MultiSWAGClassifier(
            CNN28,
            n_models=args.particles,
            pretrain_epochs=args.epochs - swag,
            swag_epochs=swag,
            lr=LR,
            batch_size=BATCH_SIZE,
            validation_fraction=0.0,
            random_state=0,
        ),
    }


def main():
    parser = argument_parser(__doc__)
    parser.add_argument("--rows", type=positive, default=4000)
    parser.add_argument("--epochs", type=positive, default=3)
    parser.add_argument("--particles", type=positive, default=3)
    parser.add_argument("--repeats", type=positive, default=2)
    parser.add_argument("--threads", type=positive, default=1)
    args = parser.parse_args()
    if args.epochs < 3:
        parser.error("--epochs must be at least 3 (a third are SWAG epochs)")
    pin_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning, module="skorch")
    print(command_line())
    malloc = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
        f"{args.rows} images 1x28x28, {args.epochs} epochs, batch {BATCH_SIZE}, "
        f"{args.particles} particles; glibc settings: {malloc or 'defaults'}"
    )
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, 1, 28, 28), dtype=np.float32)
    y = np.arange(args.rows) % 10
    models = make_models(args)
    for make in models.values():  # warm-up: first-call costs
        make().fit(X[:256], y[:256])
    seconds = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, make in models.items():
            start = time.perf_counter()
            make().fit(X, y)
            seconds[name].append(time.perf_counter() - start)
    cnn, ours = min(seconds["cnn"]), min(seconds["multiswag"])
    for name, values in seconds.items():
        print(f"{name:>9} fit s: " + " / ".join(f"{v:.2f}" for v in values))
    print(
        f"multiswag x cnn {ours / cnn:.2f}; x copies "
        f"{ours / (args.particles * cnn):.2f} (1.0: the particles one after another)"
    )


if __name__ == "__main__":
    main()
