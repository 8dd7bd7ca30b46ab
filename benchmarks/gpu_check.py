"""GPU check: the seed workload on CUDA, several GPUs, prediction, classifiers.

One prepared script for a machine with one or more CUDA GPUs. Without CUDA it
prints a message and exits with code 0. It prints one table per section, then
``all checks passed`` or the failed checks, and exits with code 1 if any check
failed.

1. **Seed workload.** The toy data of ``make_toy_regression(random_state=0)``,
   a 1-16-16-1 ELU network, full batch, Adam at lr 0.03, 2000 + 1000 epochs,
   rank 20, fitted with ``device="cuda"`` and ``n_jobs=1`` for 1, 64 and 1,024
   particles (``--particles``). For each it

   - times the fit, and a plain single-network PyTorch loop of the same epochs
     on the same GPU (the baseline, min of 2, re-measured before every row);
   - checks that ``swag_mean_``, ``swag_sq_mean_`` and ``swag_deviations_`` are
     numpy arrays and that every parameter and buffer of ``reg.particles_`` is
     on the CPU;
   - times ``reg.predict(X, return_std=True)`` on 1,000 query points;
   - pickles the fitted model to bytes and loads it in a subprocess with
     ``CUDA_VISIBLE_DEVICES=""`` (CUDA hidden), which must warn, switch to
     ``device='cpu'`` and predict the same mean and std as the GPU did (1e-4).

2. **Several GPUs** (skipped, with a message, when only one is visible). The
   seed workload with 64 particles (or, if 64 was not fitted in section 1, the
   largest count that was) on ``device=["cuda:0", ..., "cuda:<n-1>"]`` with
   ``n_jobs=n`` (one group of particles per GPU, in joblib workers). The same
   ``random_state`` gives every particle the same seeds however the particles
   are grouped, but a group's size can change the rounding of its batched
   kernels, and the seed's lr-0.03 training amplifies rounding over 3000
   epochs (on a CPU, where the optimizer's flat tensor keeps the fused Adam
   update of every particle the same in any group, 8 particles as 1 x 8 and
   2 x 4 predict bit-identically after the full fit; the GPU's kernels may
   not). So two comparisons with the
   single-GPU model on the 1,000 query points:

   - a short fit (50 + 25 epochs, fewer if the seed's are fewer) on one GPU
     and on all of them, which must agree to 1e-4 (it also starts the joblib
     workers, so the timed fit below does not pay for that);
   - the full fit, timed against the section-1 fit of the same particles
     (``x 1 dev``), whose predictions are compared with it: the largest
     difference and whether they are bit-identical are reported, and a
     difference beyond 1e-4 is a note, not a failure, when the short fit
     agrees.

   The full fit's placement and its pickle reloaded with CUDA hidden are
   checked as in section 1.

3. **Prediction throughput.** The default ``MultiSWAGRegressor`` (5 particles,
   20 draws each, the built-in MLP) fitted for 5 + 5 epochs on 2,000 random
   rows of 20 features predicts ``predict(X, return_std=True)`` on 1,000,000
   random rows (``--predict-rows``) on the device, then on the CPU
   (``set_params(device="cpu")``) for the first 100,000 of them
   (``--cpu-rows``): seconds, rows per second and the peak GPU memory
   (``torch.cuda.max_memory_allocated``, reset before). Device and CPU must
   agree on the common rows to 1e-4, relative to each value or to the largest.

4. **Classifier.** ``MultiSWAGClassifier(pretrain_epochs=20, swag_epochs=5)``,
   otherwise the defaults, on the digits (``load_digits``, a stratified 75/25
   split, standardised on the training part) on the device: fit seconds, test
   accuracy (at least 0.8, a sanity bound), ``predict_proba`` seconds on the
   test rows, placement, and the pickle reloaded with CUDA hidden, which must
   warn, switch to ``device='cpu'`` and give the same probabilities (1e-5).

5. **ResNet-18 particles** (``_gpu_resnet.py`` says how): ResNet-18 on random
   CIFAR-shaped images, 1, 8 and 32 particles (``--resnet-particles``), fit
   seconds against one network trained by a plain loop, and on CUDA the
   grouped convolutions against the convolutions one by one.

Any fit or timing that would start after ``--budget-s`` seconds (default 240)
is skipped and its row says so (not a failure; the last line counts them), so
that the whole run stays under about 6 minutes. It imports only torch, numpy,
skorch, scikit-learn and the package.

Run from the repository root::

    PYTHONPATH=. python benchmarks/gpu_check.py
    PYTHONPATH=. python benchmarks/gpu_check.py --epochs-scale 0.1   # quicker
    # dry run of the logic without a GPU (several devices are
    # device=["cpu", "cpu"] with n_jobs=2; 20,000 rows predicted, 5,000 on
    # the "CPU"):
    PYTHONPATH=. python benchmarks/gpu_check.py --device cpu --particles 4 8 \\
        --epochs-scale 0.02 --resnet-particles 1 2 --resnet-width 8
"""

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
from _common import add_epochs_scale, argument_parser, timed, versions
from _gpu_resnet import resnet_section

N_QUERY = 1000
#: Most epochs of the short fit that several devices must reproduce to 1e-4.
SHORT_PRETRAIN, SHORT_SWAG = 50, 25
#: The particle count section 2 prefers.
MULTI_PARTICLES = 64
#: Sections 3 and 4: fit epochs, rows.
THROUGHPUT_EPOCHS = 5
THROUGHPUT_TRAIN_ROWS, N_FEATURES = 2000, 20
CLASSIFIER_PRETRAIN, CLASSIFIER_SWAG = 20, 5
MIN_ACCURACY = 0.8
REPO_ROOT = Path(__file__).resolve().parent.parent


class Run:
    """The clock, the budget and the failures of one run."""

    def __init__(self, budget_s):
        self.t0 = time.perf_counter()
        self.budget_s = budget_s
        self.failures = []
        self.skipped = 0

    def elapsed(self):
        return time.perf_counter() - self.t0

    def over_budget(self):
        """Why a step may not start now (counted as skipped), or None."""
        elapsed = self.elapsed()
        if elapsed <= self.budget_s:
            return None
        self.skipped += 1
        return f"skipped: {elapsed:.0f} s spent already (--budget-s)"

    def table(self, title, header):
        """A section's first lines (title, header, rule) and whether it may run.

        Where the time budget is spent, the lines end with the reason.
        """
        lines = [title, header, "-" * len(header)]
        skip = self.over_budget()
        if skip:
            lines.append(skip)
        return lines, skip is None


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


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def load_check(model, X_query, expected, trained_on_cuda, tol=1e-4):
    """Load the pickle in a subprocess without CUDA and compare its predictions.

    ``expected`` maps ``mean`` and ``std`` (a regressor) or ``proba`` (a
    classifier) to what the model predicted on ``X_query`` before it was saved.
    """
    blob, saved_device = pickle.dumps(model), model.device
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
        with np.load(tmp / "out.npz") as saved:
            got = {name: saved[name] for name in saved.files}
    problems = []
    if info["cuda_available"]:
        problems.append("CUDA was visible in the subprocess")
    # Trained on a GPU, it must switch to the CPU; else it keeps its devices.
    want_device = "cpu" if trained_on_cuda else str(saved_device)
    if info["device"] != want_device:
        problems.append(f"loaded with device={info['device']!r}, not {want_device!r}")
    if trained_on_cuda and not info["warned"]:
        problems.append("no warning about the switch to the CPU")
    if set(got) != set(expected):
        problems.append(f"the subprocess predicted {sorted(got)}")
        return False, "; ".join(problems)
    errors = {name: max_diff(got[name], want) for name, want in expected.items()}
    problems += [
        f"{name} differs by up to {errors[name]:.2e}"
        for name, want in expected.items()
        if not np.allclose(got[name], want, rtol=tol, atol=tol)
    ]
    detail = "max |diff| " + " ".join(f"{k} {v:.1e}" for k, v in errors.items())
    return not problems, "; ".join(problems) or detail


def child_load_check(folder):
    """In the subprocess: load the pickle with CUDA hidden and predict."""
    from sklearn.base import is_classifier

    folder = Path(folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = pickle.loads((folder / "model.pkl").read_bytes())
    X = np.load(folder / "X.npy")
    if is_classifier(model):
        out = {"proba": model.predict_proba(X)}
    else:
        mean, std = model.predict(X, return_std=True)
        out = {"mean": mean, "std": std}
    np.savez(folder / "out.npz", **out)
    warned = any("CUDA is not available" in str(w.message) for w in caught)
    info = {
        "cuda_available": torch.cuda.is_available(),
        "device": str(model.device),
        "warned": warned,
    }
    print(json.dumps(info))


def seed_section(run, args, X, y, X_query, pretrain, swag):
    """Section 1; returns its table and, per fitted count, fit s, mean and std."""
    from _seed_workload import make_regressor, plain_loop

    on_cuda = torch.device(args.device).type == "cuda"
    header = (
        f"{'particles':>9} {'fit s':>7} {'plain s':>7} {'x plain':>7} "
        f"{'x P plain':>9} {'predict s':>9} {'peak MB':>7} {'on CPU':>6} "
        f"{'pickle-load OK':>14}"
    )
    lines, fitted = [header, "-" * len(header)], {}
    for n_models in args.particles:
        skip = run.over_budget()
        if skip:
            lines.append(f"{n_models:>9} {skip}")
            print(lines[-1], flush=True)
            continue
        base = min(plain_loop(X, y, pretrain + swag, args.device) for _ in range(2))
        if on_cuda:
            torch.cuda.reset_peak_memory_stats(args.device)
        reg = make_regressor(n_models, pretrain, swag, args.device)
        fit_s, _ = timed(lambda reg=reg: reg.fit(X, y), args.device)
        peak = torch.cuda.max_memory_allocated(args.device) / 1e6 if on_cuda else 0
        problems = placement_problems(reg)
        if reg.device != args.device:
            problems.append(f"reg.device became {reg.device!r}")
        predict_s, (mean, std) = timed(
            lambda reg=reg: reg.predict(X_query, return_std=True), args.device
        )
        loaded_ok, detail = load_check(
            reg, X_query, {"mean": mean, "std": std}, on_cuda
        )
        if problems:
            run.failures.append(f"{n_models} particles: " + "; ".join(problems))
        if not loaded_ok:
            run.failures.append(f"{n_models} particles, pickle-load: {detail}")
        fitted[n_models] = {"fit_s": fit_s, "mean": mean, "std": std}
        lines.append(
            f"{n_models:>9} {fit_s:>7.2f} {base:>7.2f} {fit_s / base:>7.2f} "
            f"{fit_s / (n_models * base):>9.4f} {predict_s:>9.3f} {peak:>7.0f} "
            f"{'yes' if not problems else 'NO':>6} {'yes' if loaded_ok else 'NO':>14}"
        )
        print(f"{lines[-1]}   ({detail})", flush=True)
    return lines, fitted


def predicted(reg, X_query):
    """A regressor's mean and std at ``X_query``, as a dict."""
    mean, std = reg.predict(X_query, return_std=True)
    return {"mean": mean, "std": std}


def compare(one, many):
    """Largest difference, bit equality and agreement to 1e-4 of two predictions."""
    diff = max(max_diff(one[k], many[k]) for k in ("mean", "std"))
    same = all(np.array_equal(one[k], many[k]) for k in ("mean", "std"))
    agree = all(
        np.allclose(many[k], one[k], rtol=1e-4, atol=1e-4) for k in ("mean", "std")
    )
    return diff, same, agree


def several_devices_section(run, args, X, y, X_query, pretrain, swag, fitted):
    """Section 2: the particles split over several devices, one group each."""
    from _seed_workload import make_regressor

    on_cuda = torch.device(args.device).type == "cuda"
    if on_cuda:
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:  # the dry run: two groups on the CPU
        devices = ["cpu", "cpu"]
    if len(devices) < 2:
        return [f"skipped: {len(devices)} CUDA device visible, this needs 2 or more"]
    if not fitted:
        return ["skipped: section 1 fitted no particle count to compare with"]
    n_models = MULTI_PARTICLES if MULTI_PARTICLES in fitted else max(fitted)
    n_jobs = len(devices)
    print(f"{n_models} particles on device={devices}, n_jobs={n_jobs}", flush=True)
    header = (
        f"{'fit':>5} {'epochs':>11} {'fit s':>7} {'1-dev s':>7} {'x 1 dev':>7} "
        f"{'max |diff|':>10} {'same bits':>9} {'agree 1e-4':>10} {'on CPU':>6} "
        f"{'pickle-load OK':>14}"
    )
    lines = [f"{n_models} particles, device={devices}, n_jobs={n_jobs}", header]
    lines.append("-" * len(header))

    # Short fit: must agree to 1e-4; starts the joblib workers, untimed for that.
    short = (min(pretrain, SHORT_PRETRAIN), min(swag, SHORT_SWAG))
    skip = run.over_budget()
    if skip:
        lines.append(f"{'short':>5} {skip}")
        return lines
    one_s, one = timed(
        lambda: make_regressor(n_models, *short, args.device).fit(X, y), args.device
    )
    many_s, many = timed(
        lambda: make_regressor(n_models, *short, devices, n_jobs).fit(X, y),
        devices[0],
    )
    diff, same, short_agree = compare(predicted(one, X_query), predicted(many, X_query))
    if not short_agree:
        run.failures.append(
            f"several devices, short fit: predictions differ by up to {diff:.2e} "
            "from one device's"
        )
    problems = placement_problems(many)
    lines.append(
        f"{'short':>5} {f'{short[0]} + {short[1]}':>11} {many_s:>7.2f} "
        f"{one_s:>7.2f} {many_s / one_s:>7.2f} {diff:>10.1e} "
        f"{'yes' if same else 'no':>9} {'yes' if short_agree else 'NO':>10} "
        f"{'yes' if not problems else 'NO':>6} {'-':>14}"
    )
    print(f"{lines[-1]}   (includes starting the workers)", flush=True)
    lines.append("short: its fit s on several devices includes starting the workers")

    # Full fit: timed against section 1's fit of the same particles.
    skip = run.over_budget()
    if skip:
        lines.append(f"{'full':>5} {skip}")
        return lines
    reg = make_regressor(n_models, pretrain, swag, devices, n_jobs)
    fit_s, _ = timed(lambda: reg.fit(X, y), devices[0])
    problems = placement_problems(reg)
    if problems:
        run.failures.append("several devices: " + "; ".join(problems))
    many = predicted(reg, X_query)
    diff, same, agree = compare(fitted[n_models], many)
    loaded_ok, detail = load_check(reg, X_query, many, on_cuda)
    if not loaded_ok:
        run.failures.append(f"several devices, pickle-load: {detail}")
    one_s = fitted[n_models]["fit_s"]
    lines.append(
        f"{'full':>5} {f'{pretrain} + {swag}':>11} {fit_s:>7.2f} {one_s:>7.2f} "
        f"{fit_s / one_s:>7.2f} {diff:>10.1e} {'yes' if same else 'no':>9} "
        f"{'yes' if agree else 'no (note)':>10} {'yes' if not problems else 'NO':>6} "
        f"{'yes' if loaded_ok else 'NO':>14}"
    )
    print(f"{lines[-1]}   ({detail})", flush=True)
    if not agree:
        note = (
            f"NOTE: after the full fit, several devices differ from one by up to "
            f"{diff:.1e}: rounding of differently sized groups, amplified by "
            "the training"
        )
        if not short_agree:
            note += " (but the short fit disagreed too: see the failure)"
        lines.append(note)
    return lines


def throughput_section(run, args):
    """Section 3: the default regressor predicting many rows, device vs CPU."""
    from sklearn_swag import MultiSWAGRegressor

    on_cuda = torch.device(args.device).type == "cuda"
    n_rows = args.predict_rows or (1_000_000 if on_cuda else 20_000)
    n_cpu = min(n_rows, args.cpu_rows or (100_000 if on_cuda else 5_000))
    header = (
        f"{'where':>6} {'rows':>9} {'predict s':>9} {'rows/s':>11} "
        f"{'peak GPU MB':>11} {'agree 1e-4':>10}"
    )
    lines, may_run = run.table(
        "default MultiSWAGRegressor (5 particles x 20 draws), 20 features, "
        "predict(X, return_std=True)",
        header,
    )
    if not may_run:
        return lines
    rng = np.random.default_rng(0)
    X_train = rng.standard_normal((THROUGHPUT_TRAIN_ROWS, N_FEATURES), np.float32)
    y_train = X_train[:, 0] - 2 * X_train[:, 1] + np.sin(3 * X_train[:, 2])
    y_train += 0.1 * rng.standard_normal(len(y_train))
    reg = MultiSWAGRegressor(
        pretrain_epochs=THROUGHPUT_EPOCHS,
        swag_epochs=THROUGHPUT_EPOCHS,
        early_stopping=False,
        noise="homoscedastic",
        device=args.device,
        random_state=0,
    ).fit(X_train, y_train)
    X = rng.standard_normal((n_rows, N_FEATURES), dtype=np.float32)
    reg.predict(X[:1000], return_std=True)  # warm-up
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(args.device)
    device_s, (mean, std) = timed(lambda: reg.predict(X, return_std=True), args.device)
    peak = (
        f"{torch.cuda.max_memory_allocated(args.device) / 1e6:.0f}"
        if on_cuda
        else "n/a"
    )
    lines.append(
        f"{args.device:>6} {n_rows:>9} {device_s:>9.3f} {n_rows / device_s:>11,.0f} "
        f"{peak:>11} {'-':>10}"
    )
    print(lines[-1], flush=True)
    reg.set_params(device="cpu")
    cpu_s, (cpu_mean, cpu_std) = timed(
        lambda: reg.predict(X[:n_cpu], return_std=True), "cpu"
    )
    problems, errors = [], []
    for name, got, want in (
        ("mean", mean[:n_cpu], cpu_mean),
        ("std", std[:n_cpu], cpu_std),
    ):
        largest = max(float(np.max(np.abs(want))), 1e-12)
        errors.append(f"{name} {max_diff(got, want) / largest:.1e}")
        if not np.allclose(got, want, rtol=1e-4, atol=1e-4 * largest):
            problems.append(
                f"{name} differs by up to {max_diff(got, want):.2e} "
                f"(largest |{name}| {largest:.2e})"
            )
    if problems:
        run.failures.append(
            f"prediction on {args.device} vs cpu: " + "; ".join(problems)
        )
    lines.append(
        f"{'cpu':>6} {n_cpu:>9} {cpu_s:>9.3f} {n_cpu / cpu_s:>11,.0f} "
        f"{'n/a':>11} {'yes' if not problems else 'NO':>10}"
    )
    print(f"{lines[-1]}   (max |diff| / largest: {', '.join(errors)})", flush=True)
    return lines


def classifier_section(run, args):
    """Section 4: MultiSWAGClassifier on the digits, and its CPU reload."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from sklearn_swag import MultiSWAGClassifier

    on_cuda = torch.device(args.device).type == "cuda"
    header = (
        f"{'train rows':>10} {'fit s':>7} {'accuracy':>8} {'proba s':>7} "
        f"{'on CPU':>6} {'pickle-load OK':>14}"
    )
    lines, may_run = run.table(
        f"MultiSWAGClassifier(pretrain_epochs={CLASSIFIER_PRETRAIN}, "
        f"swag_epochs={CLASSIFIER_SWAG}) on the digits",
        header,
    )
    if not may_run:
        return lines
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(X_train)
    X_train = scaler.transform(X_train).astype(np.float32)
    X_test = scaler.transform(X_test).astype(np.float32)
    clf = MultiSWAGClassifier(
        pretrain_epochs=CLASSIFIER_PRETRAIN,
        swag_epochs=CLASSIFIER_SWAG,
        device=args.device,
        random_state=0,
    )
    fit_s, _ = timed(lambda: clf.fit(X_train, y_train), args.device)
    problems = placement_problems(clf)
    if clf.device != args.device:
        problems.append(f"clf.device became {clf.device!r}")
    proba_s, proba = timed(lambda: clf.predict_proba(X_test), args.device)
    accuracy = float(np.mean(clf.classes_[proba.argmax(axis=1)] == y_test))
    if accuracy < MIN_ACCURACY:
        run.failures.append(
            f"classifier: test accuracy {accuracy:.3f} < {MIN_ACCURACY} (sanity)"
        )
    loaded_ok, detail = load_check(clf, X_test, {"proba": proba}, on_cuda, tol=1e-5)
    if problems:
        run.failures.append("classifier: " + "; ".join(problems))
    if not loaded_ok:
        run.failures.append(f"classifier, pickle-load: {detail}")
    lines.append(
        f"{len(X_train):>10} {fit_s:>7.2f} {accuracy:>8.3f} {proba_s:>7.3f} "
        f"{'yes' if not problems else 'NO':>6} {'yes' if loaded_ok else 'NO':>14}"
    )
    print(f"{lines[-1]}   ({detail})", flush=True)
    return lines


def parse_args(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--particles", nargs="+", type=int, default=[1, 64, 1024], metavar="P"
    )
    add_epochs_scale(parser, what="both epoch counts of the seed workload")
    parser.add_argument(
        "--device", default="cuda", help="'cuda' (default) or 'cpu' for a dry run"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=240.0,
        help="skip steps that would start after this many seconds (default: 240)",
    )
    parser.add_argument(
        "--predict-rows",
        type=int,
        default=None,
        help="rows predicted on the device (default: 1,000,000; 20,000 on cpu)",
    )
    parser.add_argument(
        "--cpu-rows",
        type=int,
        default=None,
        help="of those, rows predicted on the CPU (default: 100,000; 5,000 on cpu)",
    )
    parser.add_argument(
        "--resnet-particles", nargs="+", type=int, default=[1, 8, 32], metavar="P"
    )
    parser.add_argument(
        "--resnet-rows",
        type=int,
        default=None,
        help="random images of section 5 (default: 2,048; 64 on cpu)",
    )
    parser.add_argument(
        "--resnet-width",
        type=int,
        default=64,
        help="channels of ResNet-18's first stage (default 64; less for dry runs)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    on_cuda = torch.device(args.device).type == "cuda"
    if on_cuda and not torch.cuda.is_available():
        print(
            "gpu_check: torch.cuda.is_available() is False: no CUDA device here, "
            "nothing to check. Run it on a machine with a GPU."
        )
        return 0

    from _data import toy_data, toy_query
    from _seed_workload import make_regressor, plain_loop, seed_epochs

    run = Run(args.budget_s)
    pretrain, swag = seed_epochs(args.epochs_scale)
    name = torch.cuda.get_device_name(args.device) if on_cuda else "CPU"
    n_gpus = torch.cuda.device_count() if on_cuda else 0
    print(
        f"device {args.device} ({name}; {n_gpus} CUDA device(s) visible); "
        f"{versions('torch', 'skorch', 'scikit-learn')}"
    )
    X, y = toy_data()
    X_query = toy_query(N_QUERY)

    # Warm up: CUDA context, kernels, skorch.
    plain_loop(X, y, 50, args.device)
    make_regressor(2, 20, 10, args.device).fit(X, y).predict(X_query)
    print(f"warm-up done after {run.elapsed():.1f} s", flush=True)

    tables = []
    title = (
        f"1. seed workload, {pretrain} + {swag} epochs, full batch, rank 20, n_jobs=1"
    )
    print(f"\n{title}", flush=True)
    lines, fitted = seed_section(run, args, X, y, X_query, pretrain, swag)
    tables.append((title, lines))
    for title, section in (
        (
            "2. several devices, one group of particles each",
            lambda: several_devices_section(
                run, args, X, y, X_query, pretrain, swag, fitted
            ),
        ),
        ("3. prediction throughput", lambda: throughput_section(run, args)),
        ("4. classifier", lambda: classifier_section(run, args)),
        ("5. ResNet-18 particles", lambda: resnet_section(run, args)),
    ):
        print(f"\n{title}", flush=True)
        tables.append((title, section()))

    for title, lines in tables:
        print(f"\n{title}")
        print("\n".join(lines))
    print(f"\ntotal {run.elapsed():.0f} s")
    if run.failures:
        print("FAILED:\n  " + "\n  ".join(run.failures))
        return 1
    skipped = f" ({run.skipped} step(s) skipped for --budget-s)" if run.skipped else ""
    print(f"all checks passed{skipped}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--load-check":
        child_load_check(sys.argv[2])
    else:
        sys.exit(main())
