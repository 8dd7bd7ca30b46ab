"""Does MultiSWAG classify with calibrated probabilities? Real data, OOD digits.

Data sets (``--data``, names separated by commas; default all three), the ones
scikit-learn ships (no download): ``digits`` (1,797 rows, 64 inputs, 10
classes), ``breast_cancer`` (569 rows, 30 inputs, 2 classes) and ``wine``
(178 rows, 13 inputs, 3 classes). ``--splits N`` (default 5) random stratified
80/20 splits, split ``i`` made by ``train_test_split(test_size=0.2,
stratify=y, random_state=i)``. Every model is the pipeline ``StandardScaler()
-> model``, and every model of split ``i`` is seeded by ``i``.

Models (``--models``; default all):

- ``multiswag``: ``MultiSWAGClassifier()`` with its defaults (printed at the
  top; ``--set NAME=VALUE`` overrides them for every MultiSWAG model);
- ``multiswag_ts``: the same with ``temperature_scaling=True``. Training does
  not depend on the temperature, so with the same seed the particles are those
  of ``multiswag`` (checked on every split: ``swag_mean_`` equal); the fitted
  temperatures are printed under the table, and a paired comparison with
  ``multiswag`` closes the run;
- ``swag1``: one SWAG particle (``n_models=1``);
- ``ensemble``: a deep ensemble of the same particle count,
  ``MultiSWAGClassifier(swag_epochs=0)``: each network pretrains with early
  stopping, as long as it needs, and predicts with its best-epoch weights;
- ``ensemble_time``: a deep ensemble that trains at least as long as
  ``multiswag``: ``swag_epochs=0``, ``early_stopping=False`` and
  ``pretrain_epochs`` = the pretraining epochs that the ``multiswag`` fit of
  the same split actually ran (the most over its particles, read from
  ``history_["phase"]``: best epoch + ``n_iter_no_change`` of the particle
  that stopped last) + its ``swag_epochs``. Every ensemble network thus runs
  at least as many epochs as any MultiSWAG particle, on the same training
  rows (``validation_fraction`` still holds out its share, unused), and ends
  at its last epoch's weights. If ``multiswag`` is not selected it is still
  fitted for this, but not reported;
- ``mlp``: scikit-learn's ``MLPClassifier(hidden_layer_sizes=(64, 64),
  random_state=i)``, other parameters default (the architecture of
  MultiSWAG's default ``MLP``); the time baseline;
- ``mlp5``: the average of ``predict_proba`` of five such ``MLPClassifier``,
  seeded ``5 * i + k`` (k = 0..4); its ``predict_dist`` splits the
  uncertainty like MultiSWAG's, the members as particles;
- ``logreg``: ``LogisticRegression(max_iter=1000)``.

Metrics on each test part: the log loss (``NLL``, :func:`sklearn.metrics.log_loss`
with the labels), accuracy (argmax of ``predict_proba``), the top-label
expected calibration error with 15 bins (``ECE``,
:func:`sklearn_swag.expected_calibration_error`), the Brier score summed over
classes (:func:`sklearn_swag.multiclass_brier_score`), ``fit s``: the
shortest of ``1 + --repeats`` fits of the whole pipeline (default 3), and
``x mlp``: that over the shortest ``mlp`` fit of the same split in the same
process. The metrics are of the first fits; ``--repeats`` more rounds then
refit every model, ``mlp`` first in each round, only for their time (the same
seeds, so the same fits). The minimum is what a busy machine distorts least:
on the two shared cores this was written on, one and the same ``MLPClassifier``
fit took 0.4 s or, while another process held a core, up to 36 s (its two BLAS
threads wait on each other); ``--threads 1`` (torch, and BLAS / OpenMP through
threadpoolctl) avoids that. The fit seconds of every round are printed under
the tables and kept in ``--json``. Before the first split the process makes
one tiny fit of each kind, so that no timed fit pays first-call costs. Tables
give mean +- standard error (sample std / sqrt(n_splits)) over the splits.

Out of distribution (``--ood``, on by default; ``--no-ood`` skips it): on the
same splits of ``digits``, every model trains on the training rows of classes
0-4; the test rows of 0-4 are in distribution, those of 5-9 out of
distribution (the positive class). Reported: the AUROC
(:func:`sklearn.metrics.roc_auc_score`) of the entropy of ``predict_proba``
for every model, and for the models with a ``predict_dist`` (the MultiSWAG
models and ``mlp5``) of its mutual information (epistemic) and expected
entropy (aleatoric), which ``CategoricalMixture`` computes at temperature 1;
and the accuracy on the in-distribution test rows.

Last, the comparison of ``multiswag_ts`` with ``multiswag`` (paired
differences per split) and the done-when block for ``digits``, PASS or FAIL
per line with its numbers:

- NLL(multiswag) <= 0.8 x min(NLL(logreg), NLL(mlp));
- accuracy(multiswag) >= accuracy(mlp) - 0.005;
- ECE(multiswag) <= 0.025;
- OOD: the better of the AUROCs of multiswag's entropy and mutual
  information >= AUROC of mlp's entropy + 0.02 (both given, the better named);
- fit time: fit(multiswag) / fit(mlp) <= 1.5, the shortest fits of each
  split, median over the splits (a split on which every ``mlp`` fit was slowed
  by other processes would pull a mean down; the mean and the median of the
  same-round ratios are printed beside it).

The checks are of the package defaults; with ``--set`` the block says so.
``--json PATH`` writes every per-split result. Splits run one after another
in this process (no parallel jobs: the fit times must not compete).

Run from the repository root::

    python benchmarks/bench_classification.py                    # the full study
    python benchmarks/bench_classification.py --splits 1         # a quick trial
    python benchmarks/bench_classification.py --data digits --no-ood \\
        --models multiswag,mlp --set swag_epochs=50 --json /tmp/cls.json
    python benchmarks/bench_classification.py --data digits --no-ood \
        --threads 1 --models multiswag,mlp           # fit time on a busy machine
"""

import argparse
import json
import sys
import time
import warnings

import numpy as np
import torch
from _common import (
    WARNINGS,
    add_overrides,
    argument_parser,
    blas_threads,
    collect,
    command_line,
    defaults_line,
    fit_timed,
    mean_se,
    name_list,
    noting_warnings,
    number,
    optional_cell,
    overrides,
    pin_threads,
    positive,
    print_head,
    print_warnings,
    row,
    versions,
)
from scipy.special import xlogy
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_swag import (
    CategoricalMixture,
    MultiSWAGClassifier,
    expected_calibration_error,
    multiclass_brier_score,
)

LOADERS = {
    "digits": load_digits,
    "breast_cancer": load_breast_cancer,
    "wine": load_wine,
}
TEST_SIZE = 0.2
N_BINS = 15
OOD_DATA, OOD_KNOWN = "digits", 5  # train on classes 0-4, 5-9 are OOD
SWAG_MODELS = ["multiswag", "multiswag_ts", "swag1", "ensemble", "ensemble_time"]
OTHER_MODELS = ["mlp", "mlp5", "logreg"]
ALL_MODELS = [*SWAG_MODELS, *OTHER_MODELS]
HIDDEN = (64, 64)
COLUMNS = {  # metric key -> table column title
    "nll": "NLL",
    "accuracy": "accuracy",
    "ece": f"ECE ({N_BINS} bins)",
    "brier": "Brier",
    "fit": "fit s",
    "ratio": "x mlp",
}
OOD_COLUMNS = {
    "auroc_entropy": "AUROC entropy",
    "auroc_mi": "AUROC MI",
    "auroc_expected_entropy": "AUROC exp. entropy",
    "accuracy_in": "accuracy 0-4",
}
GOAL = dict(nll_factor=0.8, accuracy_slack=0.005, ece=0.025, auroc_gain=0.02, time=1.5)


# -- models ----------------------------------------------------------------------------
class AveragedMLP(ClassifierMixin, BaseEstimator):
    """Five ``MLPClassifier`` whose ``predict_proba`` are averaged (``mlp5``)."""

    def __init__(self, n_members=5, random_state=0):
        self.n_members = n_members
        self.random_state = random_state

    def fit(self, X, y):
        seed = self.n_members * self.random_state
        self.members_ = [
            MLPClassifier(hidden_layer_sizes=HIDDEN, random_state=seed + k).fit(X, y)
            for k in range(self.n_members)
        ]
        self.classes_ = self.members_[0].classes_
        return self

    def predict_dist(self, X):
        proba = np.stack([m.predict_proba(X) for m in self.members_])
        with np.errstate(divide="ignore"):
            log_p = np.log(proba)
        return CategoricalMixture(
            np.maximum(log_p, -1e300),
            entropy(proba),
            classes=self.classes_,
        )

    def predict_proba(self, X):
        return np.mean([m.predict_proba(X) for m in self.members_], axis=0)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def swag_params(name, overrides, ensemble_epochs=None):
    """``MultiSWAGClassifier`` keyword arguments of model ``name``."""
    own = {
        "multiswag": {},
        "multiswag_ts": dict(temperature_scaling=True),
        "swag1": dict(n_models=1),
        "ensemble": dict(swag_epochs=0),
        "ensemble_time": dict(
            swag_epochs=0, early_stopping=False, pretrain_epochs=ensemble_epochs
        ),
    }[name]
    return {**overrides, **own}


def make_model(name, seed, overrides, ensemble_epochs=None):
    if name in SWAG_MODELS:
        params = swag_params(name, overrides, ensemble_epochs)
        model = MultiSWAGClassifier(**params, random_state=seed)
    elif name == "mlp":
        model = MLPClassifier(hidden_layer_sizes=HIDDEN, random_state=seed)
    elif name == "mlp5":
        model = AveragedMLP(random_state=seed)
    else:
        model = LogisticRegression(max_iter=1000)
    return make_pipeline(StandardScaler(), model)


def epochs_run(model):
    """Pretraining epochs the group ran (most over particles) + SWAG epochs."""
    phase = np.asarray(model.history_["phase"])
    return int((phase == "pretrain").sum(axis=1).max() + model.swag_epochs)


def predictions(pipe, X, name):
    """``predict_proba`` and, for models with one, ``predict_dist`` at ``X``."""
    with noting_warnings(name):
        proba = pipe.predict_proba(X)
        model = pipe[-1]
        dist = None
        if hasattr(model, "predict_dist"):
            dist = model.predict_dist(pipe[:-1].transform(X))
    return proba, dist


def entropy(proba):
    """The entropy of the class probabilities on the last axis."""
    return -xlogy(proba, proba).sum(axis=-1)


_WARM = []


def warm_up():
    """One tiny fit of each kind per process, so no timed fit pays first calls."""
    if _WARM:
        return
    X, y = load_digits(return_X_y=True)
    X, y = StandardScaler().fit_transform(X[:200]), y[:200]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = dict(n_models=2, pretrain_epochs=2, swag_epochs=2, rank=2)
        MultiSWAGClassifier(**small, random_state=0).fit(X, y).predict_proba(X)
        MLPClassifier(hidden_layer_sizes=HIDDEN, max_iter=5).fit(X, y)
        LogisticRegression(max_iter=50).fit(X, y)
    _WARM.append(True)


# -- protocol --------------------------------------------------------------------------
def splits_of(y, n_splits):
    rows = np.arange(len(y))
    return [
        tuple(train_test_split(rows, test_size=TEST_SIZE, stratify=y, random_state=i))
        for i in range(n_splits)
    ]


def fit_models(models, X_train, y_train, split, overrides, repeats=0):
    """Fit every model of ``models`` on one training part, then time them again.

    The models are fitted in the order of ``ALL_MODELS`` (``mlp`` first, and
    ``multiswag`` also when only ``ensemble_time`` needs its epochs); then
    ``repeats`` more rounds in that order refit every model of ``models`` for
    its time alone (the same seed, so the same fit). Returns ``{model:
    pipeline}`` (the first fits), ``{model: [fit seconds of each round]}`` and
    extras (``ensemble_time``'s epochs, multiswag's ``pretrain_epochs_``,
    ``multiswag_ts``'s temperature, whether the two share their particles).
    """
    fitted, times, extra = {}, {}, {}
    order = [m for m in ALL_MODELS if m in models]
    if "ensemble_time" in models and "multiswag" not in models:
        order.insert(order.index("ensemble_time"), "multiswag")
    for name in order:
        pipe = make_model(name, split, overrides, extra.get("ensemble_time_epochs"))
        times[name] = [fit_timed(pipe, X_train, y_train, name)]
        fitted[name] = pipe
        if name == "multiswag":
            extra["ensemble_time_epochs"] = epochs_run(pipe[-1])
            extra["multiswag_pretrain_epochs"] = pipe[-1].pretrain_epochs_.tolist()
        if name == "multiswag_ts":
            extra["temperature"] = float(pipe[-1].temperature_)
    if "ensemble_time" not in models:
        extra.pop("ensemble_time_epochs", None)
    order = [m for m in order if m in models]
    for _ in range(repeats):
        for name in order:
            pipe = make_model(name, split, overrides, extra.get("ensemble_time_epochs"))
            times[name].append(fit_timed(pipe, X_train, y_train, name))
    if "multiswag" in fitted and "multiswag_ts" in fitted:
        same = np.array_equal(
            fitted["multiswag"][-1].swag_mean_, fitted["multiswag_ts"][-1].swag_mean_
        )
        extra["ts_same_particles"] = bool(same)
        if not same:
            print(
                f"CHECK FAILED: multiswag and multiswag_ts trained different "
                f"particles on split {split}",
                flush=True,
            )
    extra["fit_seconds"] = {name: times[name] for name in order}
    return fitted, times, extra


def score(y_test, proba, classes):
    return dict(
        nll=log_loss(y_test, proba, labels=classes),
        accuracy=float(np.mean(classes[proba.argmax(axis=1)] == y_test)),
        ece=expected_calibration_error(y_test, proba, n_bins=N_BINS, labels=classes),
        brier=multiclass_brier_score(y_test, proba, labels=classes),
    )


def run_split(X, y, train, test, split, models, overrides, repeats):
    """Metrics of every model on one split, and the split's extras.

    ``fit`` is the shortest of a model's ``1 + repeats`` fits, ``ratio`` that
    over the shortest ``mlp`` fit.
    """
    classes = np.unique(y)
    fitted, times, extra = fit_models(
        models, X[train], y[train], split, overrides, repeats
    )
    baseline = min(times["mlp"]) if "mlp" in times else np.nan
    results = {}
    for name in models:
        proba, _ = predictions(fitted[name], X[test], name)
        seconds = min(times[name])
        results[name] = dict(
            score(y[test], proba, classes), fit=seconds, ratio=seconds / baseline
        )
    return results, extra


def run_ood_split(X, y, train, test, split, models, overrides):
    """AUROCs of OOD detection on one digits split (classes >= 5 are OOD)."""
    train = train[y[train] < OOD_KNOWN]
    ood = y[test] >= OOD_KNOWN
    fitted, _, extra = fit_models(models, X[train], y[train], split, overrides)
    results = {}
    for name in models:
        pipe = fitted[name]
        proba, dist = predictions(pipe, X[test], name)
        row = dict(
            auroc_entropy=roc_auc_score(ood, entropy(proba)),
            auroc_mi=np.nan,
            auroc_expected_entropy=np.nan,
            accuracy_in=float(
                np.mean(pipe[-1].classes_[proba[~ood].argmax(axis=1)] == y[test][~ood])
            ),
        )
        if dist is not None:
            row["auroc_mi"] = roc_auc_score(ood, dist.mutual_information())
            row["auroc_expected_entropy"] = roc_auc_score(ood, dist.expected_entropy())
        results[name] = row
    return results, extra


# -- report ----------------------------------------------------------------------------
def print_table(name, results, columns, extras, n_train, n_test):
    print(f"\n### {name}\n", flush=True)
    print_head(["model", *columns.values()])
    for model, metrics in results.items():
        print(row([model, *(optional_cell(metrics[key]) for key in columns)]))
    print(f"\n{len(extras)} split(s), {n_train} training rows, {n_test} test rows")
    print_extras(extras)
    print(flush=True)


def print_extras(extras):
    if "multiswag_pretrain_epochs" in extras[0]:
        best = [float(np.median(e["multiswag_pretrain_epochs"])) for e in extras]
        print(
            f"median best pretraining epoch of multiswag's particles per split: {best}"
        )
    if "ensemble_time_epochs" in extras[0]:
        epochs = [e["ensemble_time_epochs"] for e in extras]
        print(f"ensemble_time pretrain_epochs per split: {epochs}")
    if "temperature" in extras[0]:
        temps = ", ".join(f"{e['temperature']:.3f}" for e in extras)
        print(f"multiswag_ts temperature_ per split: {temps}")
    if "ts_same_particles" in extras[0]:
        same = all(e["ts_same_particles"] for e in extras)
        print(
            f"multiswag_ts and multiswag share their particles on every split: {same}"
        )
    seconds = extras[0].get("fit_seconds", {})
    if len(seconds.get("mlp", [])) > 1:
        rounds = "; ".join(
            "/".join(f"{t:.2f}" for t in e["fit_seconds"]["mlp"]) for e in extras
        )
        print(f"mlp fit seconds of each round, per split: {rounds}")
    if len(seconds.get("multiswag", [])) > 1:
        rounds = "; ".join(
            "/".join(f"{t:.2f}" for t in e["fit_seconds"]["multiswag"]) for e in extras
        )
        print(f"multiswag fit seconds of each round, per split: {rounds}")


def paired(a, b):
    """``a - b`` per split as mean +- s.e."""
    return mean_se(np.asarray(a) - np.asarray(b))


def print_temperature_comparison(all_results, ood):
    keys = ["nll", "ece", "brier", "accuracy"]
    rows = []
    for data, (results, _) in all_results.items():
        if "multiswag" in results and "multiswag_ts" in results:
            rows.append((data, results))
    if not rows:
        return
    print("\n### Temperature scaling: multiswag_ts - multiswag (paired, per split)\n")
    print_head(["data", *(f"d {k}" for k in keys), "ts better NLL by > 1 s.e."])
    for data, results in rows:
        cells = [data]
        for key in keys:
            mean, se = paired(results["multiswag_ts"][key], results["multiswag"][key])
            cells.append(f"{number(mean)} +- {number(se)}")
        mean, se = paired(results["multiswag_ts"]["nll"], results["multiswag"]["nll"])
        if not np.isfinite(se):
            verdict = "n/a (1 split)"
        elif mean < -se:
            verdict = "yes"
        elif mean > se:
            verdict = "no, worse by > 1 s.e."
        else:
            verdict = "no (within 1 s.e.)"
        cells.append(verdict)
        print(row(cells))
    if ood is not None and "multiswag" in ood[0] and "multiswag_ts" in ood[0]:
        mean, se = paired(
            ood[0]["multiswag_ts"]["auroc_entropy"],
            ood[0]["multiswag"]["auroc_entropy"],
        )
        print(
            f"\nOOD ({OOD_DATA} 0-4 vs 5-9): d AUROC of the entropy of predict_proba "
            f"= {number(mean)} +- {number(se)}"
        )
    print(
        "\nd < 0 is better for NLL, ECE and Brier, d > 0 for accuracy; the "
        "temperatures are listed under each data set's table.",
        flush=True,
    )


def print_done_when(all_results, ood, overrides):
    label = (
        "package defaults" if not overrides else f"NOT the defaults: --set {overrides}"
    )
    print(f"\n### Done when ({OOD_DATA}, {label})\n")
    if OOD_DATA not in all_results:
        print(f"not evaluated: {OOD_DATA} was not run")
        return
    r = all_results[OOD_DATA][0]
    need = {"multiswag", "mlp", "logreg"}
    if not need <= set(r):
        print(f"not evaluated: needs the models {sorted(need)}")
        return
    m = {name: {k: v.mean() for k, v in r[name].items()} for name in need}
    lines = []
    ref = min(m["logreg"]["nll"], m["mlp"]["nll"])
    lines.append(
        (
            m["multiswag"]["nll"] <= GOAL["nll_factor"] * ref,
            f"NLL multiswag {m['multiswag']['nll']:.4f} <= {GOAL['nll_factor']} x "
            f"min(logreg {m['logreg']['nll']:.4f}, mlp {m['mlp']['nll']:.4f}) = "
            f"{GOAL['nll_factor'] * ref:.4f}",
        )
    )
    lines.append(
        (
            m["multiswag"]["accuracy"] >= m["mlp"]["accuracy"] - GOAL["accuracy_slack"],
            f"accuracy multiswag {m['multiswag']['accuracy']:.4f} >= mlp "
            f"{m['mlp']['accuracy']:.4f} - {GOAL['accuracy_slack']} = "
            f"{m['mlp']['accuracy'] - GOAL['accuracy_slack']:.4f}",
        )
    )
    lines.append(
        (
            m["multiswag"]["ece"] <= GOAL["ece"],
            f"ECE multiswag {m['multiswag']['ece']:.4f} <= {GOAL['ece']}",
        )
    )
    if ood is not None:
        o = {name: {k: v.mean() for k, v in ood[0][name].items()} for name in need}
        ent, mi = o["multiswag"]["auroc_entropy"], o["multiswag"]["auroc_mi"]
        best = "entropy" if ent >= mi else "mutual information"
        target = o["mlp"]["auroc_entropy"] + GOAL["auroc_gain"]
        lines.append(
            (
                max(ent, mi) >= target,
                f"OOD AUROC multiswag: entropy {ent:.4f}, mutual information "
                f"{mi:.4f}; the better ({best}) {max(ent, mi):.4f} >= mlp entropy "
                f"{o['mlp']['auroc_entropy']:.4f} + {GOAL['auroc_gain']} = "
                f"{target:.4f}",
            )
        )
    else:
        lines.append((None, "OOD AUROC: not evaluated (--no-ood)"))
    ratio = r["multiswag"]["ratio"]
    pairs = [
        a / b
        for e in all_results[OOD_DATA][1]
        for a, b in zip(
            e["fit_seconds"]["multiswag"], e["fit_seconds"]["mlp"], strict=True
        )
    ]
    lines.append(
        (
            np.median(ratio) <= GOAL["time"],
            f"fit time multiswag / mlp, median over splits {np.median(ratio):.3f} "
            f"<= {GOAL['time']} (per split {', '.join(f'{v:.2f}' for v in ratio)}; "
            f"mean {ratio.mean():.3f} +- {number(mean_se(ratio)[1])}; shortest "
            f"fits, multiswag {m['multiswag']['fit']:.2f} s, mlp "
            f"{m['mlp']['fit']:.2f} s on average; median of the {len(pairs)} "
            f"same-round ratios {np.median(pairs):.3f})",
        )
    )
    for ok, text in lines:
        status = "n/a " if ok is None else ("PASS" if ok else "FAIL")
        print(f"- {status} {text}")
    print(flush=True)


def print_header(args):
    print(command_line())
    print(
        f"{versions('sklearn_swag', 'torch', 'scikit-learn')}; "
        f"{torch.get_num_threads()} torch thread(s), thread pools {blas_threads()}; "
        "splits one after another in this process"
    )
    print(defaults_line(MultiSWAGClassifier, args.overrides))
    print(f"models: {','.join(args.models)}; data: {','.join(args.data)}", flush=True)


# -- command line ----------------------------------------------------------------------
def names(known, what):
    """An ``argparse`` type: names of ``known`` separated by commas."""
    message = f"unknown {what} {{unknown}}; choose from {list(known)}"
    return name_list(known, message, unique=True)


def parse_args():
    parser = argument_parser(
        __doc__, f"Data sets: {', '.join(LOADERS)}; models: {', '.join(ALL_MODELS)}"
    )
    parser.add_argument(
        "--data",
        type=names(LOADERS, "data set(s)"),
        default=list(LOADERS),
        help="names separated by commas (default: all)",
    )
    parser.add_argument("--splits", type=positive, default=5)
    parser.add_argument(
        "--models",
        type=names(ALL_MODELS, "model(s)"),
        default=list(ALL_MODELS),
        help="names separated by commas (default: all)",
    )
    parser.add_argument(
        "--ood",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"the out-of-distribution test on {OOD_DATA} (default: on)",
    )
    add_overrides(parser, "MultiSWAGClassifier", "swa_lr=0.003")
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
        default=None,
        help="torch threads and BLAS / OpenMP threads (threadpoolctl) of every "
        "model (default: the libraries' own)",
    )
    parser.add_argument("--json", metavar="PATH", help="write per-split results")
    args = parser.parse_args()
    args.overrides = overrides(args.set)
    return args


def plain(value):
    """JSON-ready copy of nested results (arrays to lists, NaN to None)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def run_splits(run, X, y, splits, args, *more):
    """``run(X, y, train, test, split, models, overrides, *more)`` on every split.

    Returns ``{model: {metric: ndarray (n_splits,)}}`` and the raw results,
    ``{"per_split": [...], "extras": [...]}``.
    """
    per_split, extras = [], []
    for split, (train, test) in enumerate(splits):
        result, extra = run(
            X, y, train, test, split, args.models, args.overrides, *more
        )
        per_split.append(result)
        extras.append(extra)
    return collect(per_split, args.models), dict(per_split=per_split, extras=extras)


def run_data_set(data, args, raw):
    """Every model on the splits of ``data``: its table; ``(results, extras)``."""
    X, y = LOADERS[data](return_X_y=True)
    splits = splits_of(y, args.splits)
    print(
        f"{data}: {X.shape[0]} rows x {X.shape[1]} inputs, "
        f"{len(np.unique(y))} classes, {len(splits)} split(s) ...",
        flush=True,
    )
    start = time.perf_counter()
    results, raw[data] = run_splits(run_split, X, y, splits, args, args.repeats)
    extras = raw[data]["extras"]
    print_table(data, results, COLUMNS, extras, len(splits[0][0]), len(splits[0][1]))
    print(f"({time.perf_counter() - start:.0f} s for {data})", flush=True)
    return results, extras


def run_ood(args, raw):
    """The OOD test on the splits of ``OOD_DATA``: its table; ``(results, extras)``."""
    X, y = LOADERS[OOD_DATA](return_X_y=True)
    splits = splits_of(y, args.splits)
    print(
        f"OOD: {OOD_DATA}, train on classes 0-{OOD_KNOWN - 1}, test rows of "
        f"{OOD_KNOWN}-9 out of distribution, {len(splits)} split(s) ...",
        flush=True,
    )
    start = time.perf_counter()
    results, raw["ood"] = run_splits(run_ood_split, X, y, splits, args)
    ood = (results, raw["ood"]["extras"])
    n_train = int(np.sum(y[splits[0][0]] < OOD_KNOWN))
    n_ood = int(np.sum(y[splits[0][1]] >= OOD_KNOWN))
    print_table(
        f"OOD: {OOD_DATA} 0-{OOD_KNOWN - 1} (in) vs {OOD_KNOWN}-9 (out)",
        ood[0],
        OOD_COLUMNS,
        ood[1],
        n_train,
        f"{len(splits[0][1])} ({n_ood} OOD)",
    )
    print(
        "AUROC: OOD rows positive, score = the uncertainty; entropy of "
        "predict_proba (tempered for multiswag_ts); MI and expected entropy "
        "of predict_dist (temperature 1; mlp5: its members as particles)."
    )
    print(f"({time.perf_counter() - start:.0f} s for OOD)", flush=True)
    return ood


def main():
    args = parse_args()
    if args.threads is not None:
        pin_threads(args.threads)
    print_header(args)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warm_up()
    start_all = time.perf_counter()
    raw = {"command": sys.argv, "overrides": args.overrides}
    all_results = {data: run_data_set(data, args, raw) for data in args.data}
    ood = run_ood(args, raw) if args.ood else None
    print_temperature_comparison(all_results, ood)
    print_done_when(all_results, ood, args.overrides)
    print_warnings()
    total = time.perf_counter() - start_all
    print(f"(total {total:.0f} s)", flush=True)
    if args.json:
        raw["warnings"] = [
            dict(model=m, category=c, message=msg, count=n)
            for (m, c, msg), n in WARNINGS.items()
        ]
        raw["seconds"] = total
        with open(args.json, "w") as f:
            json.dump(plain(raw), f, indent=1)
        print(f"per-split results written to {args.json}")


if __name__ == "__main__":
    main()
