"""GPU check: the seed workload on CUDA, CPU-resident fitted state, CPU reload.

One prepared script for a machine with a CUDA GPU. Without CUDA it prints a
message and exits with code 0. On a GPU it fits the seed workload (the toy data
of ``make_toy_regression(random_state=0)``, a 1-16-16-1 ELU network, full batch,
Adam at lr 0.03, 2000 + 1000 epochs, rank 20) with ``device="cuda"`` and
``n_jobs=1`` for 1, 64 and 1,024 particles, and for each

- times the fit, and a plain single-network PyTorch loop of the same epochs on
  the same GPU (the baseline, min of 2, re-measured before every row);
- checks that ``swag_mean_``, ``swag_sq_mean_`` and ``swag_deviations_`` are
  numpy arrays and that every parameter and buffer of ``reg.particles_`` is on
  the CPU;
- times ``reg.predict(X, return_std=True)`` on 1,000 query points;
- pickles the fitted model to bytes and loads it in a subprocess with
  ``CUDA_VISIBLE_DEVICES=""`` (CUDA hidden), which must warn, switch to
  ``device='cpu'`` and predict the same mean and std as the GPU did (1e-4).

It prints a table (particles, fit s, ratio to the plain GPU loop, predict s,
pickle-load OK) and exits with code 1 if any check failed. Fits that would start
after ``--budget-s`` seconds (default 240) are skipped, so that the whole run
stays under 5 minutes. It imports only torch, numpy, skorch and the package.

Run from the repository root::

    PYTHONPATH=. python benchmarks/gpu_check.py
    PYTHONPATH=. python benchmarks/gpu_check.py --epochs-scale 0.1   # quicker
    # dry run of the logic without a GPU:
    PYTHONPATH=. python benchmarks/gpu_check.py --device cpu --particles 4 8 \\
        --epochs-scale 0.02
"""

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

N_QUERY = 1000
REPO_ROOT = Path(__file__).resolve().parent.parent


def placement_problems(reg):
    """What is not where it should be: fitted moments in numpy, particles on CPU."""
    problems = [
        f"{name} is {type(getattr(reg, name)).__name__}, not a numpy array"
        for name in ("swag_mean_", "swag_sq_mean_", "swag_deviations_")
        if not isinstance(getattr(reg, name), np.ndarray)
    ]
    tensors = list(reg.particles_.named_parameters()) + list(
        reg.particles_.named_buffers()
    )
    problems += [
        f"particles_.{name} is on {t.device}"
        for name, t in tensors
        if t.device.type != "cpu"
    ]
    return problems


def load_check(blob, X_query, mean, std, trained_on_cuda):
    """Load the pickle in a subprocess without CUDA and compare its prediction."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "model.pkl").write_bytes(blob)
        np.save(tmp / "X.npy", X_query)
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        proc = subprocess.run(
            [sys.executable, __file__, "--load-check", str(tmp)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            return False, f"subprocess failed: {proc.stderr.strip()[-500:]}"
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        cpu_mean = np.load(tmp / "mean.npy")
        cpu_std = np.load(tmp / "std.npy")
    problems = []
    if info["cuda_available"]:
        problems.append("CUDA was visible in the subprocess")
    if info["device"] != "cpu":
        problems.append(f"loaded with device={info['device']!r}")
    if trained_on_cuda and not info["warned"]:
        problems.append("no warning about the switch to the CPU")
    err_mean = float(np.max(np.abs(cpu_mean - mean)))
    err_std = float(np.max(np.abs(cpu_std - std)))
    if not np.allclose(cpu_mean, mean, rtol=1e-4, atol=1e-4):
        problems.append(f"mean differs by up to {err_mean:.2e}")
    if not np.allclose(cpu_std, std, rtol=1e-4, atol=1e-4):
        problems.append(f"std differs by up to {err_std:.2e}")
    detail = f"max |diff| mean {err_mean:.1e} std {err_std:.1e}"
    return not problems, "; ".join(problems) or detail


def child_load_check(folder):
    """In the subprocess: load the pickle with CUDA hidden and predict."""
    folder = Path(folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = pickle.loads((folder / "model.pkl").read_bytes())
    mean, std = reg.predict(np.load(folder / "X.npy"), return_std=True)
    np.save(folder / "mean.npy", mean)
    np.save(folder / "std.npy", std)
    warned = any("CUDA is not available" in str(w.message) for w in caught)
    info = {
        "cuda_available": torch.cuda.is_available(),
        "device": str(reg.device),
        "warned": warned,
    }
    print(json.dumps(info))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--particles", nargs="+", type=int, default=[1, 64, 1024], metavar="P"
    )
    parser.add_argument(
        "--epochs-scale",
        type=float,
        default=1.0,
        help="multiply both epoch counts (default: 1.0)",
    )
    parser.add_argument(
        "--device", default="cuda", help="'cuda' (default) or 'cpu' for a dry run"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=240.0,
        help="skip fits that would start after this many seconds (default: 240)",
    )
    args = parser.parse_args(argv)
    on_cuda = torch.device(args.device).type == "cuda"
    if on_cuda and not torch.cuda.is_available():
        print(
            "gpu_check: torch.cuda.is_available() is False: no CUDA device here, "
            "nothing to check. Run it on a machine with a GPU."
        )
        return 0

    import skorch
    from seed_workload import PRETRAIN, SWAG, make_regressor, plain_loop, synchronize

    from sklearn_swag import make_toy_regression

    t0 = time.perf_counter()
    pretrain = max(1, round(PRETRAIN * args.epochs_scale))
    swag = max(1, round(SWAG * args.epochs_scale))
    epochs = pretrain + swag
    name = torch.cuda.get_device_name(args.device) if on_cuda else "CPU"
    print(
        f"device {args.device} ({name}); torch {torch.__version__}, "
        f"skorch {skorch.__version__}; {pretrain} + {swag} epochs, full batch, "
        "rank 20, n_jobs=1"
    )
    X, y = make_toy_regression(random_state=0)
    X_query = np.linspace(-0.5, 1.0, N_QUERY).reshape(-1, 1)

    # Warm up: CUDA context, kernels, skorch.
    plain_loop(X, y, 50, args.device)
    make_regressor(2, 20, 10, args.device).fit(X, y).predict(X_query)
    print(f"warm-up done after {time.perf_counter() - t0:.1f} s", flush=True)

    header = (
        f"{'particles':>9} {'fit s':>7} {'plain s':>7} {'x plain':>7} "
        f"{'x P plain':>9} {'predict s':>9} {'peak MB':>7} {'on CPU':>6} "
        f"{'pickle-load OK':>14}"
    )
    lines, failures = [header, "-" * len(header)], []
    for n_models in args.particles:
        elapsed = time.perf_counter() - t0
        if elapsed > args.budget_s:
            lines.append(f"{n_models:>9} skipped: {elapsed:.0f} s spent already")
            continue
        base = min(plain_loop(X, y, epochs, args.device) for _ in range(2))
        if on_cuda:
            torch.cuda.reset_peak_memory_stats(args.device)
        reg = make_regressor(n_models, pretrain, swag, args.device)
        start = time.perf_counter()
        reg.fit(X, y)
        synchronize(args.device)
        fit_s = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(args.device) / 1e6 if on_cuda else 0
        problems = placement_problems(reg)
        if reg.device != args.device:
            problems.append(f"reg.device became {reg.device!r}")
        start = time.perf_counter()
        mean, std = reg.predict(X_query, return_std=True)
        synchronize(args.device)
        predict_s = time.perf_counter() - start
        loaded_ok, detail = load_check(
            pickle.dumps(reg), X_query, mean, std, trained_on_cuda=on_cuda
        )
        if problems:
            failures.append(f"{n_models} particles: " + "; ".join(problems))
        if not loaded_ok:
            failures.append(f"{n_models} particles, pickle-load: {detail}")
        line = (
            f"{n_models:>9} {fit_s:>7.2f} {base:>7.2f} {fit_s / base:>7.2f} "
            f"{fit_s / (n_models * base):>9.4f} {predict_s:>9.3f} {peak:>7.0f} "
            f"{'yes' if not problems else 'NO':>6} {'yes' if loaded_ok else 'NO':>14}"
        )
        lines.append(line)
        print(f"{line}   ({detail})", flush=True)

    print()
    print("\n".join(lines))
    print(f"total {time.perf_counter() - t0:.0f} s")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--load-check":
        child_load_check(sys.argv[2])
    else:
        sys.exit(main())
