"""The GPU check script stays runnable: its dry mode on the CPU, as CI runs it.

``benchmarks/gpu_check.py`` is meant for a machine with a CUDA GPU, which CI
does not have; its ``--device cpu`` dry run goes through the same fits,
placement checks, prediction and CPU reload of a saved model, on a tiny scale.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_dry_run_passes():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
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
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
