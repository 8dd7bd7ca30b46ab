"""Post-hoc calibration of the predictive variance on the held-out rows: does it pay?

The fitted regressor already calibrates its noise on the rows it held out:
one factor ``c`` on the noise variance (on the predicted noise variances with
heteroscedastic noise), fitted by the held-out likelihood with the epistemic
variance ``v`` kept as it is (``noise``). This benchmark fits two further
maps on the same held-out rows, by the same likelihood (each row's predictive
summarised by its mean and variance), and scores the test rows with the
exact mixture density:

``epistemic``
    a factor on the epistemic part too, ``a v + c b`` (both fitted; the
    component means move away from the mixture mean by ``sqrt(a)``, their
    variances by ``a``): the regression twin of temperature scaling;
``total``
    one factor on the whole predictive variance after ``c``: ``s (v + c b)``.

Prints the test NLL of each and its paired difference from ``noise``.

    python benchmarks/bench_variance_scaling.py --data yacht,energy,concrete --splits 5
"""

import warnings

import numpy as np
import torch
from _common import (
    argument_parser,
    cell,
    command_line,
    name_list,
    positive,
    print_head,
    row,
)
from _data import ALL_DATA, load_data, preprocessing
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from scipy.stats import norm

from sklearn_swag import MultiSWAGRegressor
from sklearn_swag._posterior.noise import _ml_factor
from sklearn_swag._rows import _validation_split
from sklearn_swag._training.seeds import SPLIT_STREAM, derived_rng, root_seed

MAPS = ("noise", "epistemic", "total")


def held_out_nll(r2, total, w):
    """Weighted mean Gaussian NLL of residuals with variances ``total``."""
    return float(np.average(0.5 * (np.log(2 * np.pi * total) + r2 / total), weights=w))


def fitted_maps(r2, v, b, w):
    """``{map: (a, c)}``: the predictive variance is ``a v + c b`` at every row."""
    c0 = _ml_factor(r2, v, b, w)

    def profile(log_a):  # the best c for this a
        a = np.exp(log_a)
        return held_out_nll(r2, a * v + _ml_factor(r2, a * v, b, w) * b, w)

    if np.any(v > 0):
        a = float(np.exp(minimize_scalar(profile, bounds=(-7, 7), method="bounded").x))
    else:
        a = 1.0
    s = _ml_factor(r2, np.zeros_like(v), v + c0 * b, w)
    return {
        "noise": (1.0, c0),
        "epistemic": (a, _ml_factor(r2, a * v, b, w)),
        "total": (s, s * c0),
    }


def mixture_nll(y, means, variances, noise):
    """Mean NLL of the equal-weight mixture of ``N(means, variances + noise)``."""
    log_p = norm.logpdf(y[None], means, np.sqrt(variances + noise))
    return float(-np.mean(logsumexp(log_p, axis=0) - np.log(len(means))))


def run_split(data, split, noise):
    train, test = data.splits[split]
    model = preprocessing(MultiSWAGRegressor(random_state=split, noise=noise))
    model.fit(data.X[train], data.y[train])
    reg = model[-1]
    X_train = model[:-1].transform(data.X[train])
    root = root_seed(reg.random_state)
    _, held_out = _validation_split(
        X_train,
        reg.validation_fraction,
        derived_rng(root, SPLIT_STREAM),
        np.ones(len(X_train)),
    )
    mean, scale = reg.y_mean_[0], reg.y_scale_[0]

    def moments(X):
        means, variances, noise_ = reg._component_moments(X)
        base = np.ones_like(means) if noise_ is None else noise_
        return means[..., 0], variances[..., 0], base[..., 0]

    M, V, B = moments(X_train[held_out])
    y_held = (data.y[train][held_out] - mean) / scale
    r2 = (y_held - M.mean(0)) ** 2
    maps = fitted_maps(r2, V.mean(0) + M.var(0), B.mean(0), np.ones(len(r2)))

    M, V, B = moments(model[:-1].transform(data.X[test]))
    y_test = (data.y[test] - mean) / scale
    centre = M.mean(0)
    scores = {}
    for name, (a, c) in maps.items():
        means = centre + np.sqrt(a) * (M - centre)
        scores[name] = mixture_nll(y_test, means, a * V, c * B) + np.log(scale)
    return scores, maps["epistemic"][0]


def main():
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--data",
        type=name_list(ALL_DATA, "unknown data set(s) {unknown}"),
        default=["yacht", "energy", "concrete"],
    )
    parser.add_argument("--splits", type=positive, default=5)
    parser.add_argument(
        "--noise", choices=["auto", "homoscedastic", "heteroscedastic"], default="auto"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    print(f"# {command_line()}\n")
    print_head(
        ["data", *(f"NLL {m}" for m in MAPS), "epistemic - noise", "total - noise"]
        + ["fitted a"]
    )
    for name in args.data:
        data = load_data(name)
        runs = [run_split(data, s, args.noise) for s in range(args.splits)]
        nll = {m: np.array([r[0][m] for r in runs]) for m in MAPS}
        cells = [cell(nll[m]) for m in MAPS]
        cells += [cell(nll[m] - nll["noise"]) for m in ("epistemic", "total")]
        cells.append(cell([r[1] for r in runs]))
        print(row([name, *cells]), flush=True)


if __name__ == "__main__":
    main()
