"""Does MultiSWAG on images earn its place against the same CNN alone? Digits as 8x8.

Data: scikit-learn's ``digits`` as images of shape ``(N, 1, 8, 8)``, float32
pixels / 16 (no download). ``--splits N`` (default 3) random stratified 80/20
splits, split ``i`` made by ``train_test_split(test_size=0.2, stratify=y,
random_state=i)``; every model of split ``i`` is seeded by ``i``.

The network (``SmallCNN``, defined here): Conv2d(1, 16, 3, padding=1) - ReLU -
Conv2d(16, 32, 3, padding=1) - ReLU - MaxPool2d(2) - Flatten - Linear(32 * 4 *
4, 64) - ReLU - Linear(64, n_classes), returning logits; ``--batch-norm`` adds
a BatchNorm2d after each convolution.

Models (``--models``; default all), all on the same training rows (no rows
held out: ``validation_fraction=0``, so no early stopping), Adam at the
package's default ``lr`` (0.003) and mini-batches of the package's default
``batch_size`` (128), the same total epochs ``E = --epochs + --swag-epochs``
(default 70 + 10, the package's default ``swag_epochs``) for every network.
80 epochs train the CNN to convergence, as the SWAG papers train theirs: its
training loss is about 2e-4 at the end (0.002-0.005 at 30 epochs, still
falling). Over the first 5 splits its test NLL is 0.062 after 80 epochs and
0.058 after 30; MultiSWAG's 0.040 after 80 and 0.055 after 30.

- ``multiswag``: ``MultiSWAGClassifier(module=SmallCNN,
  n_models=--particles, pretrain_epochs=--epochs, swag_epochs=--swag-epochs)``,
  the other parameters the package defaults (rank 20, two snapshots per SWAG
  epoch, the SWAG epochs at ``lr``, 20 posterior draws per particle);
- ``cnn``: the same CNN alone, trained by skorch's ``NeuralNetClassifier``
  (``criterion=CrossEntropyLoss``, ``optimizer=Adam``, the same ``lr`` and
  ``batch_size``, shuffled mini-batches, ``train_split=None``,
  ``max_epochs=E``), seeded by ``torch.manual_seed(i)`` just before each of
  its fits; it predicts with its last weights. The time baseline;
- ``ensemble``: a deep ensemble of the same particles,
  ``MultiSWAGClassifier(module=SmallCNN, n_models=--particles,
  pretrain_epochs=E, swag_epochs=0)``: every network trains ``E`` epochs and
  predicts with its last weights;
- ``mlp``: ``StandardScaler() -> MLPClassifier((64, 64), random_state=i)`` on
  the 64 pixels as flat rows, other parameters default.

Metrics on each test part: the log loss (``NLL``), accuracy (argmax of
``predict_proba``), the top-label expected calibration error with 15 bins
(``ECE``, :func:`sklearn_swag.expected_calibration_error`), ``fit s``: the
shortest of ``1 + --repeats`` fits (default 3), and ``x cnn``: that over the
shortest ``cnn`` fit of the same split. The metrics are of the first fits;
``--repeats`` more rounds then refit every model, ``cnn`` first in each round
(alternated, in this process, the same seeds), only for their time. Torch and
the BLAS / OpenMP pools run at ``--threads`` threads (default 1), which keeps
timings of a shared machine steady. Before the first split the process makes
one tiny fit of each kind, so that no timed fit pays first-call costs. Tables
give mean +- standard error (sample std / sqrt(n_splits)) over the splits.

Out of distribution (``--no-ood`` skips it): on the same splits every model
trains on the training rows of digits 0-4; the test rows of 0-4 are in
distribution, those of 5-9 out of distribution (the positive class).
Reported: the AUROC of the entropy of ``predict_proba`` for every model, of
the mutual information (epistemic) and expected entropy (aleatoric) of
``predict_dist`` for the models that have one (``multiswag``, ``ensemble``),
and the accuracy on the in-distribution test rows.

Done when (PASS / FAIL lines): fit(multiswag) / fit(cnn) <= 2, the shortest
fits of each split, median over the splits; NLL(multiswag) <= 0.85 x
NLL(cnn), means over the splits. Under them the paired NLL differences to
``cnn`` (per split, mean +- s.e.) of ``multiswag`` and ``ensemble``.

Run from the repository root::

    python benchmarks/bench_images.py                        # the full study
    python benchmarks/bench_images.py --splits 1 --repeats 0 # a quick trial
    python benchmarks/bench_images.py --batch-norm --no-ood --models multiswag,cnn
"""

import argparse
import time
import warnings

import numpy as np
import torch
from _common import (
    argument_parser,
    blas_threads,
    collect,
    command_line,
    fit_timed,
    mean_se,
    name_list,
    noting_warnings,
    number,
    optional_cell,
    pin_threads,
    positive,
    print_head,
    print_warnings,
    row,
    versions,
)
from scipy.special import xlogy
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from skorch import NeuralNetClassifier
from torch import nn

from sklearn_swag import MultiSWAGClassifier, expected_calibration_error

ALL_MODELS = ["cnn", "multiswag", "ensemble", "mlp"]  # the order of every round
TEST_SIZE = 0.2
N_BINS = 15
OOD_KNOWN = 5  # train on classes 0-4, 5-9 are OOD
LR, BATCH_SIZE = 0.003, 128  # the package defaults, for every network
GOAL = dict(time=2.0, nll_factor=0.85)
COLUMNS = {
    "nll": "NLL",
    "accuracy": "accuracy",
    "ece": f"ECE ({N_BINS} bins)",
    "fit": "fit s",
    "ratio": "x cnn",
}
OOD_COLUMNS = {
    "auroc_entropy": "AUROC entropy",
    "auroc_mi": "AUROC MI",
    "auroc_expected_entropy": "AUROC exp. entropy",
    "accuracy_in": "accuracy 0-4",
}


# -- models ----------------------------------------------------------------------------
class SmallCNN(nn.Module):
    """Two 3x3 convolutions, a 2x2 max pool and two linear layers on (N, 1, 8, 8).

    Parameters
    ----------
    n_classes : int, default=10
        Logits returned per image.
    batch_norm : bool, default=False
        A BatchNorm2d after each convolution.
    """

    def __init__(self, n_classes=10, batch_norm=False):
        super().__init__()

        def norm(channels):
            return [nn.BatchNorm2d(channels)] if batch_norm else []

        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            *norm(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            *norm(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, n_classes),
        )

    def forward(self, x):
        return self.body(x)


class SeededNet(NeuralNetClassifier):
    """skorch's ``NeuralNetClassifier`` seeded by ``torch.manual_seed`` at fit."""

    def __init__(self, *args, seed=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed = seed

    def fit(self, X, y, **fit_params):
        torch.manual_seed(self.seed)
        return super().fit(X, y, **fit_params)


def cnn_alone(module, epochs, seed=0, **module_params):
    """``module`` trained alone by skorch, the time baseline of the image benchmarks.

    Adam at ``LR``, shuffled mini-batches of ``BATCH_SIZE`` (as the particles'),
    every training row (``train_split=None``), ``epochs`` epochs, seeded by
    ``seed`` at fit; it predicts with its last weights.
    """
    return SeededNet(
        module,
        **module_params,
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=LR,
        batch_size=BATCH_SIZE,
        max_epochs=epochs,
        train_split=None,
        iterator_train__shuffle=True,
        verbose=0,
        seed=seed,
    )


def flat(X):
    """Images to rows of pixels."""
    return X.reshape(len(X), -1)


def make_model(name, seed, n_classes, args):
    """Model ``name`` of split ``seed``, unfitted."""
    module_params = dict(
        module__n_classes=n_classes, module__batch_norm=args.batch_norm
    )
    epochs = args.epochs + args.swag_epochs
    if name == "cnn":
        return cnn_alone(SmallCNN, epochs, seed, **module_params)
    if name == "mlp":
        return make_pipeline(
            FunctionTransformer(flat),
            StandardScaler(),
            MLPClassifier(hidden_layer_sizes=(64, 64), random_state=seed),
        )
    if name == "multiswag":
        own = dict(pretrain_epochs=args.epochs, swag_epochs=args.swag_epochs)
    else:  # ensemble
        own = dict(pretrain_epochs=epochs, swag_epochs=0)
    return MultiSWAGClassifier(
        SmallCNN,
        **module_params,
        **own,
        n_models=args.particles,
        lr=LR,
        batch_size=BATCH_SIZE,
        validation_fraction=0.0,
        random_state=seed,
    )


def entropy(proba):
    """The entropy of the class probabilities on the last axis."""
    return -xlogy(proba, proba).sum(axis=-1)


def predictions(model, X, name):
    """``predict_proba`` (float64, rows summing to 1) and ``predict_dist`` or None."""
    with noting_warnings(name):
        proba = np.asarray(model.predict_proba(X), dtype=np.float64)
        dist = model.predict_dist(X) if hasattr(model, "predict_dist") else None
    return proba / proba.sum(axis=1, keepdims=True), dist


def warm_up(X, y, args):
    """One tiny fit of each kind, so that no timed fit pays first-call costs."""
    small = argparse.Namespace(**{**vars(args), "epochs": 1, "swag_epochs": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in args.models:
            model = make_model(name, 0, 10, small)
            model.fit(X[:200], y[:200]).predict_proba(X[:50])


# -- protocol --------------------------------------------------------------------------
def splits_of(y, n_splits):
    rows = np.arange(len(y))
    return [
        tuple(train_test_split(rows, test_size=TEST_SIZE, stratify=y, random_state=i))
        for i in range(n_splits)
    ]


def fit_models(X, y, split, args, repeats):
    """Every model of ``args.models`` fitted, then refitted ``repeats`` times.

    Each round fits the models in the order of ``ALL_MODELS`` (``cnn`` first).
    Returns ``{model: first fit}`` and ``{model: [seconds of each round]}``.
    """
    order = [m for m in ALL_MODELS if m in args.models]
    n_classes = len(np.unique(y))
    fitted, times = {}, {name: [] for name in order}
    for round_ in range(1 + repeats):
        for name in order:
            model = make_model(name, split, n_classes, args)
            times[name].append(fit_timed(model, X, y, name))
            if round_ == 0:
                fitted[name] = model
    return fitted, times


def score(y_test, proba, classes):
    return dict(
        nll=log_loss(y_test, proba, labels=classes),
        accuracy=float(np.mean(classes[proba.argmax(axis=1)] == y_test)),
        ece=expected_calibration_error(y_test, proba, n_bins=N_BINS, labels=classes),
    )


def run_split(X, y, train, test, split, args):
    """Metrics of every model on one split, and its fit seconds per round."""
    classes = np.unique(y)
    fitted, times = fit_models(X[train], y[train], split, args, args.repeats)
    baseline = min(times["cnn"]) if "cnn" in times else np.nan
    results = {}
    for name in args.models:
        proba, _ = predictions(fitted[name], X[test], name)
        seconds = min(times[name])
        results[name] = dict(
            score(y[test], proba, classes), fit=seconds, ratio=seconds / baseline
        )
    return results, times


def run_ood_split(X, y, train, test, split, args):
    """AUROCs of OOD detection on one split (classes >= 5 are OOD)."""
    train = train[y[train] < OOD_KNOWN]
    ood = y[test] >= OOD_KNOWN
    fitted, times = fit_models(X[train], y[train], split, args, repeats=0)
    results = {}
    for name in args.models:
        proba, dist = predictions(fitted[name], X[test], name)
        result = dict(
            auroc_entropy=roc_auc_score(ood, entropy(proba)),
            auroc_mi=np.nan,
            auroc_expected_entropy=np.nan,
            accuracy_in=float(np.mean(proba[~ood].argmax(axis=1) == y[test][~ood])),
        )
        if dist is not None:
            result["auroc_mi"] = roc_auc_score(ood, dist.mutual_information())
            result["auroc_expected_entropy"] = roc_auc_score(
                ood, dist.expected_entropy()
            )
        results[name] = result
    return results, times


def run_splits(run, X, y, splits, args):
    """``run`` on every split: ``{model: {metric: ndarray}}`` and the times."""
    per_split, times = [], []
    for split, (train, test) in enumerate(splits):
        result, seconds = run(X, y, train, test, split, args)
        per_split.append(result)
        times.append(seconds)
        print(f"  split {split} done", flush=True)
    return collect(per_split, args.models), times


# -- report ----------------------------------------------------------------------------
def print_table(title, results, columns, n_splits, n_train, n_test):
    print(f"\n### {title}\n", flush=True)
    print_head(["model", *columns.values()])
    for model, metrics in results.items():
        print(row([model, *(optional_cell(metrics[key]) for key in columns)]))
    print(f"\n{n_splits} split(s), {n_train} training rows, {n_test} test rows")


def print_rounds(times):
    """The fit seconds of every round, per model and split."""
    for name in times[0]:
        rounds = "; ".join("/".join(f"{t:.2f}" for t in t_[name]) for t_ in times)
        print(f"{name} fit seconds of each round, per split: {rounds}")


def print_done_when(results, times):
    print("\n### Done when\n")
    if not {"multiswag", "cnn"} <= set(results):
        print("not evaluated: needs the models multiswag and cnn")
        return
    ratio = results["multiswag"]["ratio"]
    pairs = [
        a / b for t in times for a, b in zip(t["multiswag"], t["cnn"], strict=True)
    ]
    nll = {name: results[name]["nll"].mean() for name in ("multiswag", "cnn")}
    lines = [
        (
            np.median(ratio) <= GOAL["time"],
            f"fit time multiswag / cnn, median over splits {np.median(ratio):.3f} "
            f"<= {GOAL['time']} (per split {', '.join(f'{v:.2f}' for v in ratio)}; "
            f"shortest fits, multiswag {results['multiswag']['fit'].mean():.2f} s, "
            f"cnn {results['cnn']['fit'].mean():.2f} s on average; median of the "
            f"{len(pairs)} same-round ratios {np.median(pairs):.3f})",
        ),
        (
            nll["multiswag"] <= GOAL["nll_factor"] * nll["cnn"],
            f"NLL multiswag {nll['multiswag']:.4f} <= {GOAL['nll_factor']} x cnn "
            f"{nll['cnn']:.4f} = {GOAL['nll_factor'] * nll['cnn']:.4f}",
        ),
    ]
    for ok, text in lines:
        print(f"- {'PASS' if ok else 'FAIL'} {text}")
    for name in ("multiswag", "ensemble"):
        if name in results:
            mean, se = mean_se(results[name]["nll"] - results["cnn"]["nll"])
            print(
                f"- paired NLL {name} - cnn per split: {number(mean)} +- "
                f"{number(se)} (< 0: {name} better)"
            )
    print(flush=True)


def print_header(args):
    print(command_line())
    print(
        f"{versions('sklearn_swag', 'torch', 'skorch', 'scikit-learn')}; "
        f"{torch.get_num_threads()} torch thread(s), thread pools {blas_threads()}; "
        "splits one after another in this process"
    )
    epochs = args.epochs + args.swag_epochs
    print(
        f"SmallCNN{' with BatchNorm2d' if args.batch_norm else ''}; Adam lr={LR}, "
        f"batch_size={BATCH_SIZE}, {epochs} epochs per network "
        f"(multiswag: {args.epochs} pretrain + {args.swag_epochs} SWAG, "
        f"{args.particles} particles; ensemble: {args.particles} x {epochs}; "
        f"cnn: 1 x {epochs}); models: {','.join(args.models)}",
        flush=True,
    )


# -- command line ----------------------------------------------------------------------
def parse_args():
    parser = argument_parser(__doc__, f"Models: {', '.join(ALL_MODELS)}")
    parser.add_argument("--splits", type=positive, default=3)
    parser.add_argument(
        "--models",
        type=name_list(
            ALL_MODELS,
            f"unknown model(s) {{unknown}}; choose from {ALL_MODELS}",
            unique=True,
        ),
        default=list(ALL_MODELS),
        help="names separated by commas (default: all)",
    )
    parser.add_argument(
        "--particles", type=positive, default=3, help="n_models (default 3)"
    )
    parser.add_argument(
        "--epochs",
        type=positive,
        default=70,
        help="multiswag's pretrain_epochs (default 70)",
    )
    parser.add_argument(
        "--swag-epochs",
        type=positive,
        default=10,
        help="multiswag's swag_epochs (default 10, the package default)",
    )
    parser.add_argument(
        "--batch-norm", action="store_true", help="a BatchNorm2d after each conv"
    )
    parser.add_argument(
        "--ood",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the out-of-distribution test (default: on)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="timing rounds after the first fits (default 2): fit s is the "
        "shortest of 1 + REPEATS fits",
    )
    parser.add_argument(
        "--threads",
        type=positive,
        default=1,
        help="torch threads and BLAS / OpenMP threads (threadpoolctl) (default 1)",
    )
    return parser.parse_args()


def main():
    args = parse_args()
    pin_threads(args.threads)
    print_header(args)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    digits = load_digits()
    X = (digits.images / 16).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    y = digits.target
    warm_up(X, y, args)
    start = time.perf_counter()
    splits = splits_of(y, args.splits)
    print(f"digits: {X.shape} images, {len(splits)} split(s) ...", flush=True)
    results, times = run_splits(run_split, X, y, splits, args)
    print_table(
        "digits as 1x8x8 images",
        results,
        {k: v for k, v in COLUMNS.items() if k != "ratio" or "cnn" in args.models},
        len(splits),
        len(splits[0][0]),
        len(splits[0][1]),
    )
    print_rounds(times)
    print(f"({time.perf_counter() - start:.0f} s)", flush=True)
    if args.ood:
        ood_start = time.perf_counter()
        print(f"\nOOD: train on 0-{OOD_KNOWN - 1}, test rows of {OOD_KNOWN}-9 out")
        ood, _ = run_splits(run_ood_split, X, y, splits, args)
        n_train = int(np.sum(y[splits[0][0]] < OOD_KNOWN))
        n_ood = int(np.sum(y[splits[0][1]] >= OOD_KNOWN))
        print_table(
            f"OOD: digits 0-{OOD_KNOWN - 1} (in) vs {OOD_KNOWN}-9 (out)",
            ood,
            OOD_COLUMNS,
            len(splits),
            n_train,
            f"{len(splits[0][1])} ({n_ood} OOD)",
        )
        print(
            "AUROC: OOD rows positive, score = the uncertainty; entropy of "
            "predict_proba; MI and expected entropy of predict_dist."
        )
        print(f"({time.perf_counter() - ood_start:.0f} s for OOD)", flush=True)
    print_done_when(results, times)
    print_warnings()
    print(f"(total {time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
