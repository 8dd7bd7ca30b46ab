"""Does the SWAG posterior earn its place? MultiSWAG on real regression data.

Data sets (``--data``, names separated by commas; ``uci`` for the eight UCI
sets, ``all``, the default, for everything):

- ``wine``: the red wines of the UCI Wine Quality data (1,599 rows, 11 inputs,
  target ``quality``), read from ``../shared/data/winequalityN.csv`` relative to
  the repository root; random 90/10 splits, split ``i`` made by
  ``train_test_split(test_size=0.1, random_state=i)``, 20 of them;
- ``diabetes``: scikit-learn's diabetes data (442 rows, 10 inputs, raw target),
  split as ``wine``;
- the UCI regression benchmark of Hernandez-Lobato & Adams (2015), read from
  ``../shared/data/uci/<folder>`` with the STANDARD splits of the published
  tables (``index_train_K.txt`` / ``index_test_K.txt``; 20 splits, protein 5):
  ``concrete``, ``energy``, ``kin8nm``, ``naval``, ``power``, ``protein``,
  ``wine-red``, ``yacht`` (the folder names are accepted as well). A missing
  file or folder skips its data set with a message.

``--splits N`` runs the first ``N`` splits of each data set (default: all).
``--max-rows N`` subsamples the training part of every split to ``N`` rows
(seeded by the split index; the test part is kept whole); the data sets it caps
are named in the output, since their figures are not the published protocol.
Fewer splits are the better way to a shorter run.

Every model is the pipeline ``SimpleImputer(strategy="median") ->
StandardScaler() -> model`` (only the wine CSV has missing values), so the
inputs are standardised on the training part; ``MultiSWAGRegressor``
standardises the targets itself (its default ``normalize_y``), the Gaussian
process with ``normalize_y=True``. Every model of split ``i`` gets
``random_state=i``.

Models (``--models``; default: all but the ``*_het`` ones). The MultiSWAG
budgets are read from ``MultiSWAGRegressor().get_params()`` at run time, so
they follow the package's defaults (printed at the top):

- ``multiswag``: ``MultiSWAGRegressor()`` with its defaults;
- ``scale0``: ``MultiSWAGRegressor(scale=0.0)``, the same fit predicting with
  each particle's SWA mean alone. Training does not depend on ``scale``: with
  the same ``random_state`` the particles are identical, which the script
  asserts on the first split of every data set (``swag_mean_`` equal to the
  ``multiswag`` fit's). The noise variance, fitted after training on the
  held-out rows, is fitted for the predictions at ``scale=0``;
- ``ensemble``: a deep ensemble of the same training budget:
  ``swag_epochs=0``, ``pretrain_epochs`` = the default pretrain + SWAG epochs
  (the default ``"auto"``, a budget in optimizer steps that early stopping
  ends, as it is), the default ``n_models``;
- ``ensemble_time``: the same deep ensemble given the wall time of
  ``multiswag``. The first split of each data set runs before the others; in
  its process (after a tiny warm-up fit) ``multiswag`` and ``ensemble`` are
  fitted with the other models and then once more each, and ``ratio`` is the
  shorter fit time of ``multiswag`` over the shorter one of ``ensemble``.
  ``ensemble_time`` has ``max(n_models, round(n_models * ratio))`` particles
  on every split of that data set (never fewer than ``ensemble``); its fit
  seconds in the table show how close the match came;
- ``swag``: one SWAG particle (``n_models=1``);
- ``gp``: an exact Gaussian process, constant * ARD RBF kernel plus white
  noise (``normalize_y=True``, one L-BFGS run from unit length scales), fitted
  on at most ``--gp-max-rows`` training rows (default 2,000): where the
  training part is larger, on a random subsample of that size drawn by
  ``np.random.default_rng(split)``, and the table says so ("gp: fitted on
  2000 of N training rows"). With the default the GP is exact on concrete,
  energy, wine-red, yacht, wine and diabetes, subsampled on kin8nm, naval and
  power, and not run on protein (about 41,000 training rows); a
  ``--gp-max-rows`` given explicitly applies to every set, protein included.
  One fit on 2,000 rows of power takes about a minute on one core (the cost
  grows as the cube of the rows);
- ``ngboost``: NGBoost (Duan et al. 2020) with a Normal distribution, as in
  its UCI experiments: learning rate 0.01, depth-3 regression trees,
  ``minibatch_frac=1.0``, at most 2,000 boosting stages; the stage count is
  chosen on a held-out 20% of the training part (seeded by the split), where
  boosting stops once 100 stages bring no lower validation NLL, and that many
  stages are then refitted on the whole training part (the paper chose the
  stage count by validation MSE after 2,000 stages; the validation NLL and
  the early stop are cheaper). About two minutes a split on power on one core,
  where all 2,000 stages are kept; the table gives the stages kept. It needs
  the optional ``ngboost`` package (``pip install .[benchmarks]``); without it
  the model is skipped with a message;
- ``bayesian_ridge``: scikit-learn's ``BayesianRidge``;
- ``multiswag_het``, ``ensemble_het``: ``multiswag`` and ``ensemble`` with
  ``noise="heteroscedastic"`` (only when named).

Metrics, on each test part in the target's original units: mean negative
log-likelihood per point (``NLL``, :func:`sklearn_swag.mean_negative_log_likelihood`
of the predictive distribution; for the GP, NGBoost and BayesianRidge a one-component
:class:`sklearn_swag.NormalMixture` of their mean and std), the mean CRPS, the
RMSE of the predictive mean, the coverage of the central 95% interval
(``cov95``) and its mean width (``width95``), and the fit seconds. Tables give
mean +- standard error (sample std / sqrt(n_splits)) over the splits.

Output: one markdown table per data set, then a summary: per data set the NLL of
``multiswag``, ``scale0``, ``ensemble``, ``ensemble_time``, ``gp`` and
``ngboost`` in this run; the published NLL of deep ensembles
(Lakshminarayanan et al. 2017, Table 1; 5 networks, adversarial training) and
of NGBoost (Duan et al. 2020, Table 1); the best published NLL we know of with
its source (the table and its references are in ``_baselines.py``); and three
verdicts from paired differences over the splits, ``d = NLL(multiswag) -
NLL(other)`` per split: against ``ensemble`` and ``scale0``, "yes" where
``mean(d) < -s.e.(d)``, i.e. multiswag is better by more than one standard
error; against ``gp`` ("multiswag <= gp", where the GP ran), "yes" where
``mean(d) < s.e.(d)``, i.e. multiswag is better or worse by less than one
standard error (tie or better). For red wine (``wine`` and ``wine-red``) the
goal check of ``multiswag`` follows its table.

``--jobs N`` fits the splits in ``N`` joblib (loky) processes, torch limited to
one thread in each; the estimator keeps its default ``n_jobs``.

Run from the repository root::

    python benchmarks/bench_uci.py --data all --jobs 2          # the full study
    python benchmarks/bench_uci.py --data wine --splits 5 --jobs 2
    python benchmarks/bench_uci.py --data yacht,energy --splits 2 \\
        --models multiswag,scale0,ensemble,swag,bayesian_ridge
    python benchmarks/bench_uci.py --data power --splits 1 --models gp,ngboost
"""

import argparse
import time
import warnings

import numpy as np
import torch
from _baselines import (
    BEST_PUBLISHED,
    DEEP_ENSEMBLES,
    NGBOOST_PUBLISHED,
    REFERENCES,
    NGBoostRegressor,
    gaussian_process,
    gp_rows,
    ngboost_missing,
)
from _common import (
    add_overrides,
    argument_parser,
    cell,
    command_line,
    defaults_line,
    mean_se,
    number,
    overrides,
    positive,
    print_head,
    row,
    timed,
    versions,
)
from _data import ALL_DATA, UCI_FOLDERS, load_data, preprocessing
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import BayesianRidge

from sklearn_swag import (
    MultiSWAGRegressor,
    NormalMixture,
    interval_coverage,
    mean_crps,
    mean_interval_width,
    mean_negative_log_likelihood,
)

CONFIDENCE = 0.95
WINE_REFERENCES = {  # published (RMSE, NLL) on red wine, from the data README
    "deep ensembles (Lakshminarayanan et al. 2017)": ("0.64 +- 0.04", "0.94 +- 0.12"),
    "MC dropout (same paper)": ("0.62 +- 0.04", "0.93 +- 0.06"),
    "NGBoost (Duan et al. 2020)": ("0.63 +- 0.04", "0.91 +- 0.06"),
}
WINE_GOAL = dict(nll=0.94, rmse=0.64, coverage=(0.93, 0.97))
COLUMNS = {  # metric key -> table column title
    "nll": "NLL",
    "crps": "CRPS",
    "rmse": "RMSE",
    "coverage": "cov95",
    "width": "width95",
    "fit": "fit s",
}


# -- models ----------------------------------------------------------------------------
def default_budget(overrides=None):
    """The defaults that the MultiSWAG comparisons are built from."""
    params = {**MultiSWAGRegressor().get_params(), **(overrides or {})}
    return {k: params[k] for k in ("n_models", "pretrain_epochs", "swag_epochs")}


def nn_models(overrides=None):
    """MultiSWAG configurations: name -> ``MultiSWAGRegressor`` keyword arguments.

    ``overrides`` (``--set``) change the defaults of every configuration;
    ``ensemble_time`` gets its ``n_models`` per data set (see ``run_data_set``).
    """
    overrides = dict(overrides or {})
    budget = default_budget(overrides)
    pretrain = budget["pretrain_epochs"]
    if pretrain != "auto":  # "auto" is a budget in steps, stopped early anyway
        pretrain = pretrain + budget["swag_epochs"]
    ensemble = dict(swag_epochs=0, pretrain_epochs=pretrain)
    models = {
        "multiswag": {},
        "scale0": dict(scale=0.0),
        "ensemble": ensemble,
        "ensemble_time": ensemble,
        "swag": dict(n_models=1),
        "multiswag_het": dict(noise="heteroscedastic"),
        "ensemble_het": dict(ensemble, noise="heteroscedastic"),
    }
    return {name: {**overrides, **kwargs} for name, kwargs in models.items()}


NN_MODELS = nn_models()


SKLEARN_MODELS = {
    "gp": gaussian_process,
    "ngboost": lambda n_features, seed: NGBoostRegressor(random_state=seed),
    "bayesian_ridge": lambda n_features, seed: BayesianRidge(),
}
ALL_MODELS = [*NN_MODELS, *SKLEARN_MODELS]
DEFAULT_MODELS = [m for m in ALL_MODELS if not m.endswith("_het")]
SUMMARY_MODELS = ["multiswag", "scale0", "ensemble", "ensemble_time", "gp", "ngboost"]
GP_MAX_ROWS = 2000  # the default of --gp-max-rows
GP_SKIPPED = ("protein",)  # no GP unless --gp-max-rows is given


def make_model(name, n_features, seed, n_models=None, overrides=None):
    if name in NN_MODELS:
        kwargs = dict(nn_models(overrides)[name])
        if n_models is not None:
            kwargs["n_models"] = n_models
        model = MultiSWAGRegressor(**kwargs, random_state=seed)
    else:
        model = SKLEARN_MODELS[name](n_features, seed)
    return preprocessing(model)


def predictive(pipe, X):
    """The predictive distribution at ``X`` as a ``NormalMixture``."""
    model = pipe[-1]
    if isinstance(model, MultiSWAGRegressor):
        return model.predict_dist(pipe[:-1].transform(X))
    mean, std = pipe.predict(X, return_std=True)
    return NormalMixture(mean[None, :, None], (std**2)[None, :, None])


def score(dist, y):
    return dict(
        nll=mean_negative_log_likelihood(y, dist),
        crps=mean_crps(y, dist),
        rmse=float(np.sqrt(np.mean((dist.mean() - y) ** 2))),
        coverage=interval_coverage(y, dist, CONFIDENCE),
        width=mean_interval_width(y, dist, CONFIDENCE),
    )


# -- data ------------------------------------------------------------------------------
def load_or_skip(name):
    """The data set ``name``, or None with a message when its files are absent."""
    try:
        return load_data(name)
    except OSError as exc:
        print(f"bench_uci: skipping {name}, {exc}", flush=True)
        return None


def limit(data, n_splits, max_rows):
    """Keep the first ``n_splits`` splits; cap training parts at ``max_rows``."""
    if n_splits is not None:
        data.splits = data.splits[:n_splits]
    if max_rows is None:
        return data
    for split, (train, test) in enumerate(data.splits):
        if len(train) > max_rows:
            rng = np.random.default_rng(split)
            data.capped.append((split, len(train)))
            data.splits[split] = (np.sort(rng.choice(train, max_rows, False)), test)
    return data


# -- protocol --------------------------------------------------------------------------
_WARM = []  # non-empty once this process has run its warm-up fit


def warm_up(X, y):
    """One tiny fit per process, so that no timed fit pays the first-call costs."""
    if not _WARM:
        rows = slice(0, 64)
        small = dict(n_models=2, pretrain_epochs=1, swag_epochs=1, rank=1)
        MultiSWAGRegressor(**small, random_state=0).fit(X[rows], y[rows])
        _WARM.append(True)


def fit_and_score(
    name, X_train, y_train, X_test, y_test, split, n_models=None, overrides=None
):
    """The fitted pipeline of ``name`` and its metrics (fit seconds included).

    The metrics also hold ``rows``, the training rows fitted on, and for
    NGBoost ``stages``, the boosting stages kept.
    """
    pipe = make_model(name, X_train.shape[1], split, n_models, overrides)
    seconds, _ = timed(lambda: pipe.fit(X_train, y_train))
    metrics = dict(score(predictive(pipe, X_test), y_test), fit=seconds)
    metrics["rows"] = len(y_train)
    if isinstance(pipe[-1], NGBoostRegressor):
        metrics["stages"] = pipe[-1].n_iter_
    return pipe, metrics


def run_split(X, y, train, test, split, models, options):
    """Fit and score ``models`` on one split: ``{model: metrics, or None if skipped}``.

    ``options``: ``single_thread``, ``gp_max_rows`` (None: no GP), ``n_time``
    (particles of ``ensemble_time``) and ``timing`` (also return
    ``"_timing"``: the shorter of two fit times of ``multiswag`` and of
    ``ensemble``, the second fit made after all models). The GP is fitted on
    :func:`gp_rows` of the training part.
    """
    overrides = options.get("overrides")
    if options["single_thread"]:
        torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    X_train, y_train, X_test, y_test = X[train], y[train], X[test], y[test]
    if any(name in NN_MODELS for name in models):
        warm_up(preprocessing().fit_transform(X_train), y_train)
    results, swag_means = {}, {}
    for name in models:
        fit_rows = slice(None)
        if name == "gp":
            if options["gp_max_rows"] is None:
                results[name] = None
                continue
            fit_rows = gp_rows(len(train), split, options["gp_max_rows"])
        n_models = options["n_time"] if name == "ensemble_time" else None
        pipe, results[name] = fit_and_score(
            name,
            X_train[fit_rows],
            y_train[fit_rows],
            X_test,
            y_test,
            split,
            n_models,
            overrides,
        )
        if name in ("multiswag", "scale0"):
            swag_means[name] = pipe[-1].swag_mean_
    if split == 0 and len(swag_means) == 2:
        assert np.array_equal(swag_means["multiswag"], swag_means["scale0"]), (
            "scale0 and multiswag trained different particles on split 0"
        )
    if options.get("timing"):
        results["_timing"] = {
            name: min(
                results[name]["fit"],
                fit_and_score(
                    name, X_train, y_train, X_test, y_test, split, None, overrides
                )[1]["fit"],
            )
            for name in ("multiswag", "ensemble")
        }
    return results


def run_data_set(data, models, args):
    """Metrics of every split: ``{model: {metric: ndarray (n_splits,)} or None}``.

    With ``ensemble_time``, split 0 is run first to time ``multiswag`` against
    ``ensemble``; the particle count of ``ensemble_time`` follows from the ratio.
    Returns the metrics and ``(particle count, time ratio)``, both None without
    ``ensemble_time``.
    """
    gp_off = data.name in GP_SKIPPED and not args.gp_max_rows_given
    options = dict(
        single_thread=args.jobs != 1,
        gp_max_rows=None if gp_off else args.gp_max_rows,
        n_time=None,
        overrides=args.overrides,
    )
    parallel = Parallel(n_jobs=args.jobs, backend="loky")
    X, y, splits = data.X, data.y, data.splits
    jobs = [(split, models) for split in range(len(splits))]
    first = None
    if "ensemble_time" in models:
        # multiswag and ensemble are fitted for their time even if not asked for.
        timed = [m for m in models if m != "ensemble_time"]
        timed += [m for m in ("multiswag", "ensemble") if m not in models]
        (first,) = parallel(
            delayed(run_split)(X, y, *splits[0], 0, timed, dict(options, timing=True))
            for _ in [0]
        )
        timing = first.pop("_timing")
        ratio = timing["multiswag"] / timing["ensemble"]
        first = {k: v for k, v in first.items() if k in models}
        n_models = default_budget(args.overrides)["n_models"]
        options["n_time"] = max(n_models, round(n_models * ratio))
        options["ratio"] = ratio
        jobs[0] = (0, ["ensemble_time"])
    per_split = parallel(
        delayed(run_split)(X, y, *splits[split], split, names, options)
        for split, names in jobs
    )
    if first is not None:
        per_split[0] = {**first, **per_split[0]}
    results = {}
    for name in models:
        rows = [r[name] for r in per_split]
        if any(r is None for r in rows):
            results[name] = None
            continue
        results[name] = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    return results, (options["n_time"], options.get("ratio"))


# -- report ----------------------------------------------------------------------------
def print_table(data, results, args, timing):
    n_train = max(len(train) for train, _ in data.splits)
    print(f"\n### {data.name}\n", flush=True)
    print_head(["model", *COLUMNS.values()])
    for model, metrics in results.items():
        if metrics is None:
            cells = ["skipped (--gp-max-rows N runs it)"] + ["-"] * (len(COLUMNS) - 1)
        else:
            cells = [cell(metrics[key]) for key in COLUMNS]
        print(row([model, *cells]))
    print(f"\n{len(data.splits)} of {data.available} splits, {n_train} training rows")
    gp = results.get("gp")
    if gp is not None and gp["rows"].max() < n_train:
        print(
            f"gp: fitted on {gp['rows'].max()} of {n_train} training rows "
            "(a random subsample seeded by the split; --gp-max-rows)"
        )
    if results.get("ngboost") is not None:
        stages = results["ngboost"]["stages"]
        print(f"ngboost: {stages.min()} to {stages.max()} boosting stages kept")
    n_time, ratio = timing
    if n_time is not None:
        print(
            f"ensemble_time: n_models={n_time}; fit seconds multiswag / ensemble "
            f"on split 0: {ratio:.2f}"
        )
    if data.capped:
        print(
            f"CAPPED: training parts subsampled to {args.max_rows} rows "
            f"(from {data.capped[0][1]}) on {len(data.capped)} split(s); "
            "not the published protocol"
        )
    print(flush=True)


def print_wine_goal(results):
    print("Published on red wine (20 splits; RMSE, NLL as reported):")
    for method, (rmse, nll) in WINE_REFERENCES.items():
        print(f"- {method}: RMSE {rmse}, NLL {nll}")
    lo, hi = WINE_GOAL["coverage"]
    goal = (
        f"NLL <= {WINE_GOAL['nll']} and RMSE <= {WINE_GOAL['rmse']} "
        f"and coverage in [{lo}, {hi}]"
    )
    if results.get("multiswag") is None:
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
        f"(NLL {m['nll']:.3f}, RMSE {m['rmse']:.3f}, coverage {m['coverage']:.3f})",
        flush=True,
    )


def verdict(results, other, tie=False):
    """Paired verdict on ``d = NLL(multiswag) - NLL(other)`` over the splits.

    "yes" where ``mean(d) < -s.e.(d)`` (multiswag better by more than one
    standard error), or with ``tie`` where ``mean(d) < s.e.(d)`` (multiswag
    better, or worse by less than one standard error: tie or better).
    """
    a, b = results.get("multiswag"), results.get(other)
    if a is None or b is None:
        return "-"
    d = a["nll"] - b["nll"]
    mean, se = mean_se(d)
    if not np.isfinite(se):
        return f"n/a (d = {number(mean)}, 1 split)"
    better = mean < se if tie else mean < -se
    return f"{'yes' if better else 'no'} (d = {number(mean)} +- {number(se)})"


def print_summary(summary):
    titles = [
        "data",
        *(f"NLL {m}" for m in SUMMARY_MODELS),
        "published deep ensemble",
        "published NGBoost",
        "best published",
        "multiswag < ensemble by > 1 s.e.",
        "multiswag < scale0 by > 1 s.e.",
        "multiswag <= gp",
    ]
    print("\n### Summary: NLL per point (mean +- s.e. over splits)\n")
    print_head(titles)
    for name, (data, results) in summary.items():
        label = f"{name} (capped)" if data.capped else name
        gp = results.get("gp")
        if gp is not None and gp["rows"].max() < max(len(t) for t, _ in data.splits):
            label += " (gp subsampled)"
        cells = [label]
        for model in SUMMARY_MODELS:
            metrics = results.get(model)
            cells.append("-" if metrics is None else cell(metrics["nll"]))
        deep = DEEP_ENSEMBLES.get(name)
        cells.append("-" if deep is None else "{:.2f} +- {:.2f}".format(*deep["nll"]))
        ngboost = NGBOOST_PUBLISHED.get(name)
        cells.append("-" if ngboost is None else f"{ngboost:.2f}")
        best = BEST_PUBLISHED.get(name)
        cells.append("-" if best is None else f"{best[0]:.2f} ({best[1]})")
        cells += [
            verdict(results, "ensemble"),
            verdict(results, "scale0"),
            verdict(results, "gp", tie=True),
        ]
        print(row(cells))
    print(
        "\nd: per-split NLL(multiswag) - NLL(other), mean +- s.e.; '> 1 s.e.': "
        "'yes' where mean(d) < -s.e.(d); 'multiswag <= gp' (tie or better): 'yes' "
        "where mean(d) < s.e.(d), on the sets where the GP ran. " + REFERENCES,
        flush=True,
    )


def print_header(args):
    budget = default_budget(args.overrides)
    threads = 1 if args.jobs != 1 else torch.get_num_threads()
    libraries = ["sklearn_swag", "torch", "scikit-learn"]
    libraries += ["ngboost"] if "ngboost" in args.models else []
    print(command_line())
    print(f"{versions(*libraries)}; {threads} torch thread(s) x {args.jobs} job(s)")
    print(defaults_line(MultiSWAGRegressor, args.overrides))
    print(
        f"ensemble: n_models={budget['n_models']}, pretrain_epochs="
        f"{nn_models(args.overrides)['ensemble']['pretrain_epochs']}, swag_epochs=0; "
        f"swag: n_models=1; models: {','.join(args.models)}"
    )
    if args.max_rows is not None:
        print(f"--max-rows {args.max_rows}: training parts above it are subsampled")
    if "gp" in args.models:
        where = "every set" if args.gp_max_rows_given else "every set but protein"
        print(f"gp: on {where}, on at most {args.gp_max_rows} training rows")
    print(flush=True)


def parse_data(value):
    aliases = {folder: name for name, folder in UCI_FOLDERS.items()}
    names = []
    for item in (v.strip() for v in value.split(",")):
        if item == "all":
            names += ALL_DATA
        elif item == "uci":
            names += list(UCI_FOLDERS)
        elif item in ALL_DATA or item in aliases:
            names.append(aliases.get(item, item))
        elif item:
            raise argparse.ArgumentTypeError(
                f"unknown data set {item!r}; choose from {ALL_DATA}, 'uci', 'all'"
            )
    return list(dict.fromkeys(names))


def parse_args():
    parser = argument_parser(
        __doc__, f"Data sets: {', '.join(ALL_DATA)}; models: {', '.join(ALL_MODELS)}"
    )
    parser.add_argument(
        "--data", type=parse_data, default="all", help="names, 'uci' or 'all' (default)"
    )
    parser.add_argument("--splits", type=positive, default=None, help="default: all")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--gp-max-rows",
        type=positive,
        default=None,
        help=f"fit the GP on at most this many training rows (default: "
        f"{GP_MAX_ROWS}; protein only when given)",
    )
    parser.add_argument("--max-rows", type=positive, default=None)
    add_overrides(parser, "MultiSWAGRegressor", "swa_lr=0.01")
    args = parser.parse_args()
    args.overrides = overrides(args.set)
    args.gp_max_rows_given = args.gp_max_rows is not None
    if args.gp_max_rows is None:
        args.gp_max_rows = GP_MAX_ROWS
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(ALL_MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {ALL_MODELS}")
    missing = ngboost_missing()
    if "ngboost" in args.models and missing is not None:
        print(f"bench_uci: skipping ngboost, {missing}", flush=True)
        args.models.remove("ngboost")
    return args


def main():
    args = parse_args()
    print_header(args)
    summary = {}
    for name in args.data:
        data = load_or_skip(name)
        if data is None:
            continue
        data = limit(data, args.splits, args.max_rows)
        n_train = max(len(train) for train, _ in data.splits)
        print(
            f"{name}: {data.X.shape[0]} rows x {data.X.shape[1]} inputs, "
            f"{len(data.splits)} split(s), {n_train} train / "
            f"{len(data.splits[0][1])} test ...",
            flush=True,
        )
        start = time.perf_counter()
        results, timing = run_data_set(data, args.models, args)
        print_table(data, results, args, timing)
        print(f"({time.perf_counter() - start:.0f} s for {name})", flush=True)
        if name in ("wine", "wine-red"):
            print_wine_goal(results)
        summary[name] = (data, results)
    if summary:
        print_summary(summary)


if __name__ == "__main__":
    main()
