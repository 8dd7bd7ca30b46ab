"""The GPU check script stays runnable: its dry mode on the CPU, as CI runs it.

``benchmarks/gpu_check.py`` is meant for a machine with CUDA GPUs, which CI
does not have; its ``--device cpu`` dry run goes through the same fits,
placement checks, prediction and CPU reload of a saved model, on a tiny scale:
the seed workload, its particles split over ``device=["cpu", "cpu"]`` with
``n_jobs=2``, prediction on 20,000 rows against 5,000 "CPU" rows, and the
classifier on the digits.
"""

import os
import subprocess
import sys
from pathlib import Path

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
    ):
        assert title in result.stdout, output
    assert "device=['cpu', 'cpu'], n_jobs=2" in result.stdout, output
