"""BatchNorm in a user network: fit time, and what the BatchNorm refresh does.

The network is :class:`BNNet` below, a user module routed as ``module=BNNet``
with ``module__batch_norm=True`` (Linear - BatchNorm1d - ReLU - Linear) or
``module__batch_norm=False`` (the same without the BatchNorm). 8 particles.
Three parts:

1. ``speed``: fit seconds with the BatchNorm over fit seconds without it, on
   the red wine data (every row, default epochs and batches), the two fits
   alternated ``--repeats`` times; the min and median of the per-pair ratios
   (target: <= 1.6), and whether a fit with the BatchNorm raised the
   UserWarning that the network "cannot be batched" and falls back to
   training the particles one after another.
2. ``refresh``: test RMSE and NLL (``-neg_nll_scorer``, per point, in the
   target's units) with ``bn_update_rows=0`` (no refresh: prediction uses the
   running statistics left by training) against the default refresh, mean +-
   standard error over ``--splits`` splits of red wine (from
   ``../shared/data/winequalityN.csv``: red wines, target ``quality``, split
   ``i`` by ``train_test_split(test_size=0.1, random_state=i)``) and of one UCI
   data set of ``../shared/data/uci/`` (``--uci``, its standard splits
   ``index_train_i.txt`` / ``index_test_i.txt``); each model is
   ``SimpleImputer(strategy="median") -> StandardScaler() -> model`` and each
   pair of fits has the same seed, so only the refresh differs.
3. ``scale0``: a fit with ``scale=0.0`` and ``validation_fraction=0`` on red
   wine split 0 (``--scale0-rows N``: the first N rows of a synthetic
   regression instead, ``make_regression`` with 11 inputs, a tenth more rows
   for testing) predicts the average over the particles of each SWA mean
   network; the reference is computed by hand: each particle's
   ``swag_mean_`` is loaded into a fresh ``BNNet``, its BatchNorm statistics
   recomputed on all training rows in one full batch
   (``torch.optim.swa_utils.update_bn``: ``reset_running_stats``, momentum
   None), the network evaluated in eval mode, the particles averaged and the
   target scaling undone. Reported for the default ``bn_update_rows`` (fit in
   batches of 128), ``bn_update_rows=1024``, ``bn_update_rows=None`` with
   ``batch_size=None`` and ``bn_update_rows=0`` (the stale statistics the
   refresh fixes): max |predict - reference| / std of the reference over the
   test rows (target: <= 0.01 for the default and for None), and the
   seconds of one ``predict`` of the test rows (8 weight vectors, each
   refreshed on its rows: the refresh's cost per draw).

Until the estimator has a ``bn_update_rows`` parameter, the refresh rows are
skipped (and said so), and ``scale0`` reports the estimator as it is.

Run from the repository root::

    python benchmarks/bench_batchnorm.py                        # all parts
    python benchmarks/bench_batchnorm.py --parts speed --repeats 5
    python benchmarks/bench_batchnorm.py --parts refresh --uci energy --splits 5
    python benchmarks/bench_batchnorm.py --epochs-scale 0.05 --splits 2   # a trial
"""

import warnings

import numpy as np
import torch
from _common import (
    add_epochs_scale,
    argument_parser,
    mean_se,
    name_list,
    print_head,
    row,
    scaled,
    timed,
    torch_threads_line,
)
from _data import UCI_DIR, load_data, load_uci, load_wine, preprocessing
from sklearn.datasets import make_regression
from torch import nn

from sklearn_swag import MultiSWAGRegressor, neg_nll_scorer

N_MODELS = 8
HIDDEN = 50
PRETRAIN, SWAG = 20, 30  # the estimator's defaults
SPEED_TARGET = 1.6
SCALE0_TARGET = 0.01
PARTS = ("speed", "refresh", "scale0")


class BNNet(nn.Module):
    """Linear - BatchNorm1d - ReLU - Linear, or without the BatchNorm."""

    def __init__(self, n_features=11, hidden=HIDDEN, batch_norm=True):
        super().__init__()
        norm = [nn.BatchNorm1d(hidden)] if batch_norm else []
        self.layers = nn.Sequential(
            nn.Linear(n_features, hidden), *norm, nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, x):
        return self.layers(x)


def has_refresh():
    return "bn_update_rows" in MultiSWAGRegressor().get_params()


def make_regressor(n_features, batch_norm, epochs_scale, seed, **params):
    return MultiSWAGRegressor(
        module=BNNet,
        module__n_features=n_features,
        module__batch_norm=batch_norm,
        n_models=N_MODELS,
        pretrain_epochs=scaled(PRETRAIN, epochs_scale),
        swag_epochs=scaled(SWAG, epochs_scale),
        normalize_y=True,
        random_state=seed,
        **params,
    )


def preprocess(X_train, X_test):
    prep = preprocessing()
    X_train = prep.fit_transform(X_train).astype(np.float32)
    return X_train, prep.transform(X_test).astype(np.float32)


# -- data ------------------------------------------------------------------------------
def wine_splits(n_splits):
    """``(X_train, X_test, y_train, y_test)`` of the first red wine splits."""
    return load_data("wine").parts(n_splits)


def uci_splits(name, n_splits):
    """The same for the UCI folder ``name``, on its standard splits."""
    folder = UCI_DIR / name
    if not folder.is_dir():
        raise SystemExit(f"bench_batchnorm: UCI data set not found at {folder}")
    X, y, splits = load_uci(folder)
    for train, test in splits[:n_splits]:
        yield X[train], X[test], y[train], y[test]


# -- 1. speed --------------------------------------------------------------------------
def timed_fit(X, y, batch_norm, epochs_scale):
    reg = make_regressor(X.shape[1], batch_norm, epochs_scale, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seconds, _ = timed(lambda: reg.fit(X, y))
    fallback = [
        str(w.message)
        for w in caught
        if issubclass(w.category, UserWarning) and "cannot be batched" in str(w.message)
    ]
    return seconds, fallback


def part_speed(epochs_scale, repeats):
    X, y = load_wine()
    X, _ = preprocess(X, X[:1])
    print(
        f"\n## speed: {N_MODELS} particles, red wine ({len(X)} rows), "
        f"{scaled(PRETRAIN, epochs_scale)} + {scaled(SWAG, epochs_scale)} epochs, "
        "batches of 128\n"
    )
    timed_fit(X[:300], y[:300], True, 0.05)  # warm up
    timed_fit(X[:300], y[:300], False, 0.05)
    print(f"{'repeat':>6} {'BN s':>8} {'no BN s':>8} {'ratio':>7}")
    ratios, fallback = [], []
    for repeat in range(repeats):
        with_bn, caught = timed_fit(X, y, True, epochs_scale)
        without, _ = timed_fit(X, y, False, epochs_scale)
        fallback += caught
        ratios.append(with_bn / without)
        print(f"{repeat:>6} {with_bn:>8.2f} {without:>8.2f} {ratios[-1]:>7.2f}")
    best, median = min(ratios), float(np.median(ratios))
    print(f"\nBN / no BN: min {best:.2f}, median {median:.2f}")
    print(
        f"{'PASS' if median <= SPEED_TARGET else 'FAIL'}  median ratio "
        f"{median:.2f} (target <= {SPEED_TARGET})"
    )
    if fallback:
        print(f"fallback warning raised during fit: yes ({fallback[0][:100]}...)")
    else:
        print("fallback warning raised during fit: no")


# -- 2. refresh ------------------------------------------------------------------------
def refresh_metrics(splits, epochs_scale):
    """RMSE and NLL per split, ``{setting: {metric: ndarray}}``."""
    settings = {"0": dict(bn_update_rows=0), "default": {}}
    results = {name: {"rmse": [], "nll": []} for name in settings}
    for seed, (X_train, X_test, y_train, y_test) in enumerate(splits):
        for name, params in settings.items():
            pipe = preprocessing(
                make_regressor(X_train.shape[1], True, epochs_scale, seed, **params)
            )
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*cannot be batched")
                pipe.fit(X_train, y_train)
            rmse = np.sqrt(np.mean((pipe.predict(X_test) - y_test) ** 2))
            results[name]["rmse"].append(rmse)
            results[name]["nll"].append(-neg_nll_scorer(pipe, X_test, y_test))
    return {
        name: {key: np.array(values) for key, values in metrics.items()}
        for name, metrics in results.items()
    }


def part_refresh(epochs_scale, n_splits, uci):
    print(f"\n## refresh: {N_MODELS} particles, BatchNorm, {n_splits} splits\n")
    if not has_refresh():
        print(
            "MultiSWAGRegressor has no bn_update_rows parameter yet: the refresh "
            "rows are skipped."
        )
        return
    data = {
        "red wine": wine_splits(n_splits),
        f"UCI {uci}": uci_splits(uci, n_splits),
    }
    print_head(["data", "bn_update_rows", "RMSE", "NLL"])
    for name, splits in data.items():
        results = refresh_metrics(splits, epochs_scale)
        for setting, metrics in results.items():
            cells = [
                "{:.3f} +- {:.3f}".format(*mean_se(metrics[key]))
                for key in ("rmse", "nll")
            ]
            print(row([name, setting, *cells]))
        diff = {
            key: results["default"][key] - results["0"][key] for key in ("rmse", "nll")
        }
        cells = [
            "{:+.3f} +- {:.3f}".format(*mean_se(diff[key])) for key in ("rmse", "nll")
        ]
        print(row([name, "default - 0 (paired)", *cells]))


# -- 3. scale=0 ------------------------------------------------------------------------
def reference_prediction(reg, X_train, X_test):
    """Average of the SWA mean networks, BatchNorm recomputed on every row."""
    kwargs = {
        key[len("module__") :]: value
        for key, value in reg.get_params().items()
        if key.startswith("module__")
    }
    X_train_t, X_test_t = torch.as_tensor(X_train), torch.as_tensor(X_test)
    outputs = []
    for mean in reg.swag_mean_:
        net = BNNet(**kwargs)
        params = list(net.parameters())
        assert sum(p.numel() for p in params) == mean.size, "not named_parameters()"
        torch.nn.utils.vector_to_parameters(
            torch.as_tensor(mean, dtype=torch.float32), params
        )
        with torch.no_grad():
            # one full batch; update_bn resets the statistics, momentum None
            torch.optim.swa_utils.update_bn([X_train_t], net)
            outputs.append(net.eval()(X_test_t).numpy().astype(np.float64))
    return np.mean(outputs, axis=0) * reg.y_scale_ + reg.y_mean_


def synthetic_split(n_rows):
    """``make_regression`` with 11 inputs: ``n_rows`` training rows, a tenth more
    for testing, the target scaled to a standard deviation of 1."""
    X, y = make_regression(
        n_samples=n_rows + n_rows // 10, n_features=11, noise=10.0, random_state=0
    )
    X = X.astype(np.float32)
    y = y / y.std()
    return X[:n_rows], X[n_rows:], y[:n_rows], y[n_rows:]


def part_scale0(epochs_scale, n_rows=None):
    if n_rows is None:
        X_train, X_test, y_train, _ = next(wine_splits(1))
        X_train, X_test = preprocess(X_train, X_test)
        data = "red wine split 0"
    else:
        X_train, X_test, y_train, _ = synthetic_split(n_rows)
        data = "synthetic regression"
    print(
        f"\n## scale0: {N_MODELS} particles, {data} ({len(X_train)} training "
        "rows), scale=0, validation_fraction=0\n"
    )
    fixed = dict(scale=0.0, validation_fraction=0)
    if has_refresh():
        settings = {
            "default": {},
            "bn_update_rows=1024": dict(bn_update_rows=1024),
            "None, batch_size=None": dict(bn_update_rows=None, batch_size=None),
            "bn_update_rows=0 (stale)": dict(bn_update_rows=0),
        }
    else:
        print(
            "MultiSWAGRegressor has no bn_update_rows parameter yet: the refresh "
            "rows are skipped; the estimator as it is (its statistics) is shown."
        )
        settings = {"no bn_update_rows": {}}
    print(f"{'setting':>26} {'max|diff|/std':>14} {'predict s':>10} {'target':>7}")
    for name, params in settings.items():
        reg = make_regressor(
            X_train.shape[1], True, epochs_scale, seed=0, **fixed, **params
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*cannot be batched")
            reg.fit(X_train, y_train)
        reference = reference_prediction(reg, X_train, X_test).ravel()
        reg.predict(X_test[:2])  # warm up
        seconds, predicted = timed(lambda reg=reg: reg.predict(X_test))
        error = np.max(np.abs(predicted - reference)) / reference.std()
        verdict = "PASS" if error <= SCALE0_TARGET else "FAIL"
        graded = name in ("default", "None, batch_size=None") and has_refresh()
        print(
            f"{name:>26} {error:>14.4f} {seconds:>10.3f} "
            f"{verdict if graded else '-':>7}"
        )
    print(f"(target for the default and for None: <= {SCALE0_TARGET})")


def main(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--parts",
        type=name_list(PARTS, f"--parts takes a subset of {','.join(PARTS)}"),
        default=list(PARTS),
        help="comma-separated: speed, refresh, scale0 (default: all)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="speed pairs (default: 3)"
    )
    parser.add_argument(
        "--splits", type=int, default=5, help="refresh splits (default: 5)"
    )
    parser.add_argument(
        "--scale0-rows",
        type=int,
        default=None,
        help="scale0 on this many synthetic training rows (default: red wine)",
    )
    parser.add_argument(
        "--uci",
        default="concrete",
        help="UCI folder of ../shared/data/uci for the refresh (default: concrete)",
    )
    add_epochs_scale(parser)
    args = parser.parse_args(argv)
    print(
        f"{torch_threads_line()}, "
        f"bn_update_rows {'present' if has_refresh() else 'absent'}"
    )
    if "speed" in args.parts:
        part_speed(args.epochs_scale, args.repeats)
    if "refresh" in args.parts:
        part_refresh(args.epochs_scale, args.splits, args.uci)
    if "scale0" in args.parts:
        part_scale0(args.epochs_scale, args.scale0_rows)


if __name__ == "__main__":
    main()
