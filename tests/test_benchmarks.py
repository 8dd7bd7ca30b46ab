"""Benchmark scripts stay runnable: the GPU check's dry mode, the image study.

``benchmarks/gpu_check.py`` is meant for a machine with CUDA GPUs, which CI
does not have; its ``--device cpu`` dry run goes through the same fits,
placement checks, prediction and CPU reload of a saved model, on a tiny scale:
the seed workload, its particles split over ``device=["cpu", "cpu"]`` with
``n_jobs=2``, prediction on 20,000 rows against 5,000 "CPU" rows, and the
classifier on the digits. ``benchmarks/bench_images.py`` runs one split of
one-epoch fits with the BatchNorm CNN, every model and the OOD test.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_dry_run_passes():
    # One torch thread: on a busy runner, threads waiting for a descheduled
    # sibling make the dry run several times slower; its timings mean nothing.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu_check.py"),
            "--device",
            "cpu",
            "--particles",
            "1",
            "4",
            "--epochs-scale",
            "0.02",
            "--resnet-particles",
            "1",
            "2",
            "--resnet-width",
            "8",
            "--resnet-rows",
            "16",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "all checks passed" in result.stdout
    # Every section ran: none skipped for the time budget or the device count.
    assert "skipped" not in result.stdout, output
    for title in (
        "1. seed workload",
        "2. several devices",
        "3. prediction",
        "4. classifier",
        "5. ResNet-18 particles",
    ):
        assert title in result.stdout, output
    assert "device=['cpu', 'cpu'], n_jobs=2" in result.stdout, output


def test_bench_images_tiny_run():
    # The CNN baseline is skorch's own classifier, whose predict_proba needs
    # skorch >= 1.1 with scikit-learn >= 1.6 (scikit-learn's new tags).
    pytest.importorskip("skorch", minversion="1.1")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = ["--splits", "1", "--repeats", "0", "--epochs", "1", "--swag-epochs", "1"]
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_images.py"),
            *args,
            "--particles",
            "2",
            "--batch-norm",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for model in ("cnn", "multiswag", "ensemble", "mlp"):
        assert f"| {model} | " in result.stdout, output
    assert "### OOD: digits 0-4 (in) vs 5-9 (out)" in result.stdout, output
    assert "paired NLL multiswag - cnn" in result.stdout, output
