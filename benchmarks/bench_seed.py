"""Fit time of the seed workload, as a ratio to plain PyTorch loops.

The seed workload: the 100 points of ``make_toy_regression(random_state=0)``, a
1-16-16-1 ELU network, full batch, Adam at lr 0.03, 2000 + 1000 epochs, rank 20.
The network comes two ways (``--modules``):

- ``builtin``: the package's network, ``module__hidden_layer_sizes=(16, 16),
  module__activation="elu"``;
- ``user``: ``module=SeedNet``, the class of ``_seed_workload.py`` written as the
  seed notebook writes it (``self.net = nn.Sequential(...)``, ``forward``
  returning ``self.net(x)``).

Both train with ``normalize_y=False``, on the raw targets as the plain loops do
(with ``normalize_y="auto"`` the built-in network would standardise them and
the user module would not). Each is fitted at every ``--n-jobs`` value
(``none`` is the estimator's default, ``n_jobs=None``). Two baselines are
measured right before every row, so that drift of a noisy machine shows up
from row to row; each is the min of 2 runs at torch's thread count and 2 at one
thread (``thr``: the thread count that gave the moment-keeping baseline):

- ``plain s``: one plain single-network PyTorch loop of the same 3000 epochs;
- ``base s``: the same loop that also keeps the SWAG moments at the end of each
  of the last 1000 epochs, as the package does (a float64 running mean and mean
  of squares of the flat weights, a ring buffer of the last 20 deviations).

One more loop is measured right after every fit, the same way (min of 2 runs
at each thread count):

- ``stack s``: a hand-written loop over the package's stack of the row's P
  particles (``SeedNet`` rewritten into batched operations, fused Adam over
  the weights as one flat tensor, the package's SWAG moments) and nothing
  else, no skorch, callbacks or checks (:func:`_seed_workload.stack_loop`):
  the least a fit on these kernels can cost.

Columns:

- ``fit s``: the seconds ``MultiSWAGRegressor.fit`` takes;
- ``x plain``, ``x base``: fit seconds / each baseline;
- ``x P base``: fit seconds / (P * base s), the cost relative to training the
  same P particles one after another with the moment-keeping loop;
- ``x stack``: fit seconds / stack s, what the estimator adds to its kernels
  (skorch's loop, callbacks, checks);
- ``stk/base``: stack s / base s, the ratio no fit on these kernels can beat;
- ``user/bi``: on a ``user`` row, its ``x base`` over the ``x base`` of the
  built-in row with the same particles and ``n_jobs`` (a ratio of ratios, so
  that the drift of the machine between the two rows cancels);
- ``MSE``: training mean squared error of the predictive mean.

With ``--compile``, a last table compares the stack loop with its forward and
loss through ``torch.compile`` (inductor, which fuses the ELUs and the loss;
needs a C++ compiler): per particle count the seconds of the first compiled
step (compiling), ``stack s`` eager and compiled (min of 2 runs at each thread
count, the compiled function made anew for every run) and each over a fresh
``base s``.

Targets, checked at the end: with the default ``n_jobs``, the user module
within 10% of the built-in network (``user/bi <= 1.10``); 16 particles at most
1.3x and 64 particles at most 2.0x the moment-keeping baseline; beside each its
``stk/base``. They are for the full workload; a run with ``--epochs-scale``
below 1 only tries the script.

Run from the repository root::

    python benchmarks/bench_seed.py                         # 1 16 64, n_jobs None and 2
    python benchmarks/bench_seed.py 1 16 64 256             # 256 particles as well
    python benchmarks/bench_seed.py 16 --n-jobs none --modules user
    python benchmarks/bench_seed.py 1 16 --epochs-scale 0.02   # a quick trial run
    python benchmarks/bench_seed.py 16 64 --n-jobs none --compile
"""

import numpy as np
from _common import (
    add_epochs_scale,
    argument_parser,
    name_list,
    thread_counts,
    timed,
    torch_threads,
    torch_threads_line,
)
from _data import toy_data
from _seed_workload import (
    MODULES,
    make_regressor,
    plain_loop,
    plain_swag_loop,
    seed_epochs,
    stack_loop,
)

#: Particle count -> the most ``x base`` allowed (full workload, default n_jobs).
BASE_TARGETS = {16: 1.3, 64: 2.0}
#: The most ``user/bi`` allowed (default n_jobs).
USER_TARGET = 1.10


def baselines(X, y, pretrain, swag):
    """Both plain loops, min of 2 runs at torch's thread count and at one thread.

    A 321-weight network gains nothing from threads and, on a busy machine,
    often runs faster on one. Returns ``(plain seconds, base seconds, threads)``
    with ``threads`` the count that gave the moment-keeping baseline.
    """
    plain, base = [], []
    for n in thread_counts():
        with torch_threads(n):
            for _ in range(2):
                plain.append(plain_loop(X, y, pretrain + swag))
                base.append((plain_swag_loop(X, y, pretrain, swag), n))
    base_s, base_threads = min(base)
    return min(plain), base_s, base_threads


def stack_seconds(X, y, n_models, pretrain, swag, compiled=False):
    """The stack loop of ``n_models`` particles, min of 2 runs per thread count."""
    runs = []
    for n in thread_counts():
        with torch_threads(n):
            runs += [
                stack_loop(X, y, n_models, pretrain, swag, compiled=compiled)
                for _ in range(2)
            ]
    return min(runs)


def print_compiled(X, y, counts, pretrain, swag):
    """The stack loop eager and through ``torch.compile``, against the baseline."""
    print("\nstack loop, forward and loss through torch.compile (inductor):")
    print(
        f"{'particles':>9} {'compile s':>9} {'eager s':>8} {'compiled s':>10} "
        f"{'base s':>8} {'eager/base':>10} {'compiled/base':>13}"
    )
    for n_models in counts:
        compiling, _ = timed(lambda: stack_loop(X, y, n_models, 1, 0, compiled=True))  # noqa: B023
        _, base, _ = baselines(X, y, pretrain, swag)
        eager = stack_seconds(X, y, n_models, pretrain, swag)
        compiled = stack_seconds(X, y, n_models, pretrain, swag, compiled=True)
        print(
            f"{n_models:>9} {compiling:>9.1f} {eager:>8.3f} {compiled:>10.3f} "
            f"{base:>8.3f} {eager / base:>10.2f} {compiled / base:>13.2f}",
            flush=True,
        )


def fit_seconds(X, y, n_models, pretrain, swag, n_jobs, module):
    reg = make_regressor(
        n_models, pretrain, swag, n_jobs=n_jobs, module=module, normalize_y=False
    )
    seconds, _ = timed(lambda: reg.fit(X, y))
    mse = float(np.mean((reg.predict(X) - y) ** 2))
    return seconds, mse


def n_jobs_value(text):
    return None if text.lower() == "none" else int(text)


def check_targets(rows, epochs_scale):
    """Print which targets hold, on the rows at the default ``n_jobs``."""
    default = [r for r in rows if r["n_jobs"] is None]
    print()
    print("targets (default n_jobs):")
    if epochs_scale != 1.0:
        print(
            f"  (--epochs-scale {epochs_scale:g}: the targets are for the full "
            "workload; this run only tries the script)"
        )
    checks = []
    for r in default:
        if r["module"] == "user" and r["user_ratio"] is not None:
            checks.append(
                (
                    f"{r['n_models']} particles: user module within 10% of built-in",
                    f"user/bi {r['user_ratio']:.2f} (target <= {USER_TARGET:.2f})",
                    r["user_ratio"] <= USER_TARGET,
                )
            )
        limit = BASE_TARGETS.get(r["n_models"])
        if limit is not None:
            checks.append(
                (
                    f"{r['n_models']} particles, {r['module']}: against base",
                    f"x base {r['x_base']:.2f} (target <= {limit:.1f}; "
                    f"the kernels alone, stk/base, {r['stack_base']:.2f})",
                    r["x_base"] <= limit,
                )
            )
    if not checks:
        print("  none of the rows run has a target (use --n-jobs none)")
    for what, value, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {what}: {value}")


def parse_args(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument(
        "counts",
        nargs="*",
        type=int,
        default=[1, 16, 64],
        help="particle counts (default: 1 16 64; 256 is optional)",
    )
    parser.add_argument(
        "--n-jobs",
        nargs="+",
        type=n_jobs_value,
        default=[None, 2],
        help="n_jobs values of the estimator, 'none' for its default (default: none 2)",
    )
    parser.add_argument(
        "--modules",
        type=name_list(
            MODULES, f"--modules takes a comma-separated subset of {','.join(MODULES)}"
        ),
        default=list(MODULES),
        help="comma-separated networks: builtin, user (default: builtin,user)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also the stack loop through torch.compile (needs a C++ compiler)",
    )
    add_epochs_scale(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    pretrain, swag = seed_epochs(args.epochs_scale)

    X, y = toy_data()
    plain_loop(X, y, 200)  # warm up torch
    plain_swag_loop(X, y, 100, 100)
    stack_loop(X, y, 2, 100, 100)
    for n_jobs in args.n_jobs:  # warm up skorch, vmap and the joblib pool
        for module in args.modules:
            fit_seconds(X, y, 2, 20, 10, n_jobs, module)

    print(
        f"{torch_threads_line()}, {pretrain} + {swag} epochs, full batch, rank 20, "
        "normalize_y=False"
    )
    print(
        "baselines: one plain PyTorch network (plain) and the same keeping the "
        "SWAG moments (base), min of 2 runs at each thread count, re-measured "
        "before every row"
    )
    header = (
        f"{'particles':>9} {'module':>7} {'n_jobs':>6} {'fit s':>8} "
        f"{'plain s':>8} {'base s':>8} {'thr':>3} {'x plain':>8} {'x base':>7} "
        f"{'x P base':>9} {'stack s':>8} {'x stack':>7} {'stk/base':>8} "
        f"{'user/bi':>7} {'MSE':>9}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for n_models in args.counts:
        for n_jobs in args.n_jobs:
            builtin_x_base = None
            for module in args.modules:
                plain, base, threads = baselines(X, y, pretrain, swag)
                seconds, mse = fit_seconds(
                    X, y, n_models, pretrain, swag, n_jobs, module
                )
                stack = stack_seconds(X, y, n_models, pretrain, swag)
                x_base = seconds / base
                if module == "builtin":
                    builtin_x_base = x_base
                user_ratio = (
                    x_base / builtin_x_base
                    if module == "user" and builtin_x_base is not None
                    else None
                )
                rows.append(
                    dict(
                        n_models=n_models,
                        module=module,
                        n_jobs=n_jobs,
                        x_base=x_base,
                        stack_base=stack / base,
                        user_ratio=user_ratio,
                    )
                )
                ratio = "" if user_ratio is None else f"{user_ratio:.2f}"
                print(
                    f"{n_models:>9} {module:>7} {str(n_jobs):>6} {seconds:>8.3f} "
                    f"{plain:>8.3f} {base:>8.3f} {threads:>3} "
                    f"{seconds / plain:>8.2f} {x_base:>7.2f} "
                    f"{x_base / n_models:>9.3f} {stack:>8.3f} "
                    f"{seconds / stack:>7.2f} {stack / base:>8.2f} "
                    f"{ratio:>7} {mse:>9.5f}",
                    flush=True,
                )
    plain, base, threads = baselines(X, y, pretrain, swag)
    print(
        f"{'end':>9} {'':>7} {'':>6} {'':>8} {plain:>8.3f} {base:>8.3f} "
        f"{threads:>3}  (baselines re-measured)"
    )
    check_targets(rows, args.epochs_scale)
    if args.compile:
        print_compiled(X, y, args.counts, pretrain, swag)


if __name__ == "__main__":
    main()
