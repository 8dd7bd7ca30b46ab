"""Predictive quality of MultiSWAG on real regression data, next to common baselines.

Data sets: the red wines of the UCI Wine Quality data (1,599 rows, 11 inputs,
target ``quality``; read from ``../shared/data/winequalityN.csv`` relative to the
repository root) and scikit-learn's diabetes data (442 rows, 10 inputs, raw
target). Every model is the pipeline ``SimpleImputer(strategy="median") ->
StandardScaler() -> model``; the wine data has missing values.

Protocol (Hernandez-Lobato & Adams 2015): ``--splits`` random 90/10 train/test
splits, split ``i`` made by ``train_test_split(test_size=0.1, random_state=i)``
and every model seeded with ``i``. On each test part, in the target's original
units: RMSE of the predictive mean, mean Gaussian negative log-likelihood per
point (NLL), coverage of the central 95% interval (``cov95``), its mean width
(``width95``), and the fit seconds. The tables give mean +- standard error
(sample std / sqrt(n_splits)) over the splits. For the wine data the published
figures and whether the ``multiswag`` row meets the goal are printed below the
table.

The MultiSWAG configurations are the dict ``NN_MODELS`` below; the scikit-learn
baselines are ``gp`` (ARD Gaussian process) and ``bayesian_ridge``.

Run from the repository root::

    python benchmarks/bench_uci.py                                  # all, 20 splits
    python benchmarks/bench_uci.py --data wine --splits 5 --jobs 2
    python benchmarks/bench_uci.py --data all --splits 2 --models gp,multiswag
"""

import argparse
import csv
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from joblib import Parallel, delayed
from scipy.stats import norm
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.impute import SimpleImputer
from sklearn.linear_model import BayesianRidge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_swag import MultiSWAGRegressor

# ======================================================================================
# MultiSWAG configurations: name -> MultiSWAGRegressor keyword arguments.
# Add or edit entries here; ``random_state`` is set to the split index.
# ======================================================================================
NN_MODELS = {
    "multiswag": dict(n_models=5),
    "swag": dict(n_models=1),
    # Deep ensembles: no SWAG phase, the same 50 epochs of training in all.
    "ensemble": dict(n_models=5, pretrain_epochs=50, swag_epochs=0),
    "multiswag_het": dict(n_models=5, noise="heteroscedastic"),
    "ensemble_het": dict(
        n_models=5, pretrain_epochs=50, swag_epochs=0, noise="heteroscedastic"
    ),
}
# ======================================================================================

WINE_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "winequalityN.csv"
CONFIDENCE = 0.95
WINE_REFERENCES = {  # published (RMSE, NLL) on red wine, from the data README
    "deep ensembles (Lakshminarayanan et al. 2017)": ("0.64 +- 0.04", "0.94 +- 0.12"),
    "MC dropout (same paper)": ("0.62 +- 0.04", "0.93 +- 0.06"),
    "NGBoost (Duan et al. 2020)": ("0.63 +- 0.04", "0.91 +- 0.06"),
}
COLUMNS = {  # metric key -> table column title
    "rmse": "RMSE",
    "nll": "NLL",
    "coverage": "cov95",
    "width": "width95",
    "fit": "fit s",
}
WINE_GOAL = dict(nll=0.94, rmse=0.64, coverage=(0.93, 0.97))


def gaussian_process(n_features, seed):
    kernel = ConstantKernel() * RBF(length_scale=np.ones(n_features)) + WhiteKernel()
    return GaussianProcessRegressor(
        kernel=kernel, normalize_y=True, n_restarts_optimizer=0, random_state=seed
    )


SKLEARN_MODELS = {
    "gp": gaussian_process,
    "bayesian_ridge": lambda n_features, seed: BayesianRidge(),
}
ALL_MODELS = [*NN_MODELS, *SKLEARN_MODELS]


# -- data ------------------------------------------------------------------------------
def load_wine():
    if not WINE_CSV.is_file():
        sys.exit(f"bench_uci: red wine data not found at {WINE_CSV}")
    with WINE_CSV.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [row[1:] for row in reader if row[0] == "red"]
    values = np.array([[float(v) if v else np.nan for v in row] for row in rows])
    assert header[-1] == "quality" and values.shape[1] == 11 + 1, header
    return values[:, :-1], values[:, -1]


def load_data(name):
    if name == "wine":
        return load_wine()
    return load_diabetes(return_X_y=True)


# -- models ----------------------------------------------------------------------------
def make_model(name, n_features, seed):
    if name in NN_MODELS:
        model = MultiSWAGRegressor(**NN_MODELS[name], random_state=seed)
    else:
        model = SKLEARN_MODELS[name](n_features, seed)
    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), model)


def predictive(pipe, X):
    """The predictive distribution at ``X``: ``mean()``, ``logpdf``, ``interval``."""
    model = pipe[-1]
    if isinstance(model, MultiSWAGRegressor):
        return model.predict_dist(pipe[:-1].transform(X))
    mean, std = pipe.predict(X, return_std=True)
    return norm(loc=mean, scale=std)


def score(dist, y):
    lower, upper = dist.interval(CONFIDENCE)
    return dict(
        rmse=float(np.sqrt(np.mean((dist.mean() - y) ** 2))),
        nll=float(-np.mean(dist.logpdf(y))),
        coverage=float(np.mean((y >= lower) & (y <= upper))),
        width=float(np.mean(upper - lower)),
    )


# -- protocol --------------------------------------------------------------------------
def run_split(X, y, models, split, single_thread):
    """Fit and score every model on split ``split``; one dict of metrics per model."""
    if single_thread:
        torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.1, random_state=split
    )
    results = {}
    for name in models:
        pipe = make_model(name, X.shape[1], seed=split)
        start = time.perf_counter()
        pipe.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        results[name] = dict(score(predictive(pipe, X_test), y_test), fit=seconds)
    return results


def run_data_set(X, y, models, n_splits, n_jobs):
    """Metrics of every split: ``{model: {metric: ndarray of shape (n_splits,)}}``."""
    per_split = Parallel(n_jobs=n_jobs)(
        delayed(run_split)(X, y, models, split, n_jobs != 1)
        for split in range(n_splits)
    )
    metrics = per_split[0][models[0]].keys()
    return {
        name: {key: np.array([r[name][key] for r in per_split]) for key in metrics}
        for name in models
    }


# -- report ----------------------------------------------------------------------------
def mean_se(values):
    """Mean and standard error, std (ddof=1) / sqrt(n); NaN for one split."""
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.nan
    return values.mean(), se


def print_table(name, results):
    print(f"\n### {name}\n", flush=True)
    print("| model | " + " | ".join(COLUMNS.values()) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for model, metrics in results.items():
        cells = ["{:.3f} +- {:.3f}".format(*mean_se(metrics[key])) for key in COLUMNS]
        print(f"| {model} | " + " | ".join(cells) + " |")


def print_wine_goal(results):
    print("\nPublished on red wine (20 splits; RMSE, NLL as reported):")
    for method, (rmse, nll) in WINE_REFERENCES.items():
        print(f"- {method}: RMSE {rmse}, NLL {nll}")
    lo, hi = WINE_GOAL["coverage"]
    goal = (
        f"NLL <= {WINE_GOAL['nll']} and RMSE <= {WINE_GOAL['rmse']} "
        f"and coverage in [{lo}, {hi}]"
    )
    if "multiswag" not in results:
        print(f"Goal ({goal}): not evaluated, 'multiswag' was not run")
        return
    m = {key: values.mean() for key, values in results["multiswag"].items()}
    met = (
        m["nll"] <= WINE_GOAL["nll"]
        and m["rmse"] <= WINE_GOAL["rmse"]
        and lo <= m["coverage"] <= hi
    )
    print(
        f"Goal ({goal}) for multiswag: {'met' if met else 'NOT met'} "
        f"(NLL {m['nll']:.3f}, RMSE {m['rmse']:.3f}, coverage {m['coverage']:.3f})"
    )


def print_header(data, n_splits, n_jobs):
    threads = 1 if n_jobs != 1 else torch.get_num_threads()
    sizes = "; ".join(
        f"{name} {X.shape[0]} rows x {X.shape[1]} inputs "
        f"({X.shape[0] - int(np.ceil(0.1 * X.shape[0]))} train / "
        f"{int(np.ceil(0.1 * X.shape[0]))} test)"
        for name, (X, _) in data.items()
    )
    print(
        f"torch {torch.__version__}, scikit-learn {sklearn.__version__}, "
        f"{threads} torch thread(s) x {n_jobs} job(s); {n_splits} splits; {sizes}"
    )


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["wine", "diabetes", "all"], default="all")
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--models", default=",".join(ALL_MODELS))
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(ALL_MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {ALL_MODELS}")
    return args


def main():
    args = parse_args()
    names = ["wine", "diabetes"] if args.data == "all" else [args.data]
    data = {name: load_data(name) for name in names}
    print_header(data, args.splits, args.jobs)
    for name, (X, y) in data.items():
        results = run_data_set(X, y, args.models, args.splits, args.jobs)
        print_table(name, results)
        if name == "wine":
            print_wine_goal(results)


if __name__ == "__main__":
    main()
