"""What the benchmarks share: arguments, headers, mean +- s.e., timing, threads.

A benchmark runs as a script from the repository root
(``python benchmarks/<name>.py``), which puts ``benchmarks/`` first on the
import path: it imports this module as ``_common``.
"""

import argparse
import ast
import contextlib
import importlib
import shlex
import sys
import time
import warnings
from collections import Counter

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning


# -- arguments -------------------------------------------------------------------------
def argument_parser(doc, epilog=None):
    """A parser described by the first line of ``doc``; ``epilog`` kept as written."""
    if epilog is None:
        return argparse.ArgumentParser(description=doc.splitlines()[0])
    return argparse.ArgumentParser(
        description=doc.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=epilog,
    )


def positive(value):
    """An ``argparse`` type: an integer of at least 1."""
    number_ = int(value)
    if number_ < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return number_


def name_list(known, message, *, unique=False):
    """An ``argparse`` type: names separated by commas, each one of ``known``.

    Parameters
    ----------
    known : iterable of str
        The names allowed.
    message : str
        The error for an empty list or an unknown name; ``{unknown}`` in it
        stands for the sorted list of the unknown names.
    unique : bool, default=False
        Drop repeated names, keeping the first of each.

    Returns
    -------
    parse : callable
        Text to the list of names, in the order given.
    """
    known = set(known)

    def parse(text):
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = sorted(set(names) - known)
        if unknown or not names:
            raise argparse.ArgumentTypeError(message.format(unknown=unknown))
        return list(dict.fromkeys(names)) if unique else names

    return parse


def add_epochs_scale(parser, default=1.0, what="both epoch counts, for quick trials"):
    """The ``--epochs-scale`` option: a factor on the epoch counts."""
    parser.add_argument(
        "--epochs-scale",
        type=float,
        default=default,
        help=f"multiply {what} (default: {default})",
    )


def scaled(epochs, scale):
    """``epochs`` times ``scale``, rounded, at least 1."""
    return max(1, round(epochs * scale))


def add_overrides(parser, estimator, example):
    """The repeatable ``--set NAME=VALUE`` option; read it with :func:`overrides`."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"override a {estimator} default for every MultiSWAG model "
        f"(repeatable; VALUE read as a Python literal), e.g. --set {example}",
    )


def overrides(items):
    """``NAME=VALUE`` strings as a dict; a VALUE that is no literal stays text."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


# -- header ----------------------------------------------------------------------------
#: Distribution names whose module has another name.
_MODULES = {"scikit-learn": "sklearn"}


def command_line():
    """The command that started this run, as the header's first line."""
    return "$ python " + shlex.join(sys.argv)


def versions(*names):
    """``"name version, ..."`` of the libraries named (distribution names)."""
    return ", ".join(
        f"{name} {importlib.import_module(_MODULES.get(name, name)).__version__}"
        for name in names
    )


def torch_threads_line():
    """``"torch <version>, <n> thread(s)"``: torch and its thread count now."""
    return f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)"


def blas_threads():
    """The thread pools threadpoolctl sees, ``"<api> <threads>, ..."``."""
    from threadpoolctl import threadpool_info

    return ", ".join(
        f"{info['internal_api']} {info['num_threads']}" for info in threadpool_info()
    )


def defaults_line(estimator, overrides):
    """``"<Estimator> defaults: name=value, ..."``, with ``--set`` applied.

    ``random_state``, ``verbose`` and ``device`` are left out; a class value
    is given by its name.
    """
    params = {**estimator().get_params(), **overrides}
    defaults = ", ".join(
        f"{k}={getattr(v, '__name__', v)!s}"
        for k, v in params.items()
        if k not in ("random_state", "verbose", "device")
    )
    label = "defaults" if not overrides else f"with --set {overrides}"
    return f"{estimator.__name__} {label}: {defaults}"


# -- mean +- standard error and markdown tables ----------------------------------------
def mean_se(values):
    """Mean and standard error, std (ddof=1) / sqrt(n); NaN for one value."""
    values = np.asarray(values)
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.nan
    return values.mean(), se


def number(value):
    """``value`` with 3 decimals, or in scientific notation when far from 1."""
    if value == 0 or not np.isfinite(value) or 1e-2 <= abs(value) < 1e5:
        return f"{value:.3f}"
    return f"{value:.2e}"


def cell(values):
    """``"mean +- s.e."`` of ``values``, each by :func:`number`."""
    mean, se = mean_se(values)
    return f"{number(mean)} +- {number(se)}"


def optional_cell(values):
    """:func:`cell`, or "-" where every value is NaN (a metric a model lacks)."""
    return "-" if np.all(np.isnan(values)) else cell(values)


def collect(per_split, models):
    """``{model: {metric: ndarray (n_splits,)}}`` from a list of split results."""
    return {
        name: {k: np.array([r[name][k] for r in per_split]) for k in per_split[0][name]}
        for name in models
    }


def row(cells):
    """One markdown table row."""
    return "| " + " | ".join(cells) + " |"


def print_head(titles):
    """A markdown table's title row and rule."""
    print(row(titles))
    print("|---" * len(titles) + "|")


# -- warnings the models raise ---------------------------------------------------------
#: (model, category, message) -> count, for the report of :func:`print_warnings`.
WARNINGS = Counter()


@contextlib.contextmanager
def noting_warnings(name):
    """Count the warnings raised inside the block, for model ``name``.

    ``ConvergenceWarning`` is left out (scikit-learn's MLPs raise it on
    purpose-short budgets); :func:`print_warnings` reports the rest.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            WARNINGS[(name, w.category.__name__, str(w.message)[:200])] += 1


def fit_timed(model, X, y, name):
    """Fit ``model``; its fit seconds (:func:`timed`), warnings counted."""
    with noting_warnings(name):
        seconds, _ = timed(lambda: model.fit(X, y))
    return seconds


def print_warnings():
    """The warnings counted by :func:`noting_warnings`, one line each."""
    print("\n### Warnings raised by fit / predict (ConvergenceWarning ignored)\n")
    if not WARNINGS:
        print("none", flush=True)
        return
    for (model, category, message), count in sorted(WARNINGS.items()):
        print(f"- {model}: {category} x{count}: {message}")
    print(flush=True)


# -- timing ----------------------------------------------------------------------------
@contextlib.contextmanager
def particles_folded(fold):
    """Inside the block the stacked kernels fold the particles into the channels
    (one grouped convolution, one BatchNorm) or not, on any device; ``None``
    leaves the package's choice (``kernels.folds_particles``)."""
    from sklearn_swag._network.lowering import kernels

    original = kernels.folds_particles
    if fold is not None:
        kernels.folds_particles = lambda _: fold
    try:
        yield
    finally:
        kernels.folds_particles = original


def synchronize(device):
    """Wait for the work queued on a CUDA ``device``; nothing on the CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device="cpu"):
    """``(seconds, fn())``, the device synchronised before the clock stops."""
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, out


def best_time(fn, repeats):
    """Min seconds of ``repeats`` runs at torch's thread count and at one thread.

    Returns the seconds, the thread count that gave them and the last run's
    ``fn()``.
    """
    runs = []
    for n in thread_counts():
        with torch_threads(n):
            for _ in range(repeats):
                seconds, result = timed(fn)
                runs.append((seconds, n))
    seconds, n = min(runs, key=lambda run: run[0])
    return seconds, n, result


class PlainMoments:
    """The SWAG moments a plain training loop keeps, as the package does.

    Each :meth:`collect` adds the flat weight vector ``theta`` of ``params``
    to a float64 running mean and mean of squares and writes ``theta - mean``
    (the mean after the update), as float32, into a ring buffer of the last
    ``rank`` rows.
    """

    def __init__(self, params, rank, device="cpu"):
        self.params = list(params)
        self.rank = rank
        self.n = 0
        n_params = sum(p.numel() for p in self.params)
        self.mean = torch.zeros(n_params, dtype=torch.float64, device=device)
        self.sq_mean = torch.zeros_like(self.mean)
        self.ring = torch.zeros(
            max(rank, 1), n_params, dtype=torch.float32, device=device
        )

    @torch.no_grad()
    def collect(self):
        theta = torch.nn.utils.parameters_to_vector(self.params).to(torch.float64)
        self.n += 1
        self.mean += (theta - self.mean) / self.n
        self.sq_mean += (theta * theta - self.sq_mean) / self.n
        if self.rank > 0:
            self.ring[(self.n - 1) % self.rank] = theta - self.mean


# -- threads ---------------------------------------------------------------------------
def thread_counts():
    """Torch's thread count, then one thread (one entry if they are the same)."""
    return sorted({torch.get_num_threads(), 1}, reverse=True)


@contextlib.contextmanager
def torch_threads(n):
    """Torch at ``n`` threads inside the block, its count before restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pin_threads(n):
    """Torch and the BLAS / OpenMP pools (threadpoolctl) at ``n`` threads from now."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n)
