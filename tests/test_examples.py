"""The examples run end to end, in their quick mode (``SKLEARN_SWAG_QUICK=1``).

Each example runs as a script would (``__name__ == "__main__"``, ``__file__``
set) in a temporary working directory, so that what it writes there can be
checked. Torch gets one thread, here and in any worker process an example
starts: the quick runs train tiny networks, for which more threads only
contend with each other on a busy machine.
"""

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("plot_*.py"))

#: What each example writes into its working directory when run as a script.
WRITES = {
    "plot_toy_regression.py": {"toy_regression_1.png", "toy_regression_4.png"},
}


@pytest.fixture
def quick(tmp_path, monkeypatch):
    """Quick mode, a temporary working directory, one torch thread."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SKLEARN_SWAG_QUICK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # inherited by worker processes
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield tmp_path
    finally:
        torch.set_num_threads(threads)
        plt.close("all")


def test_the_gallery_is_complete():
    assert {p.name for p in SCRIPTS} >= {
        "plot_toy_regression.py",
        "plot_wine_pipeline.py",
        "plot_calibration.py",
        "plot_rank_and_particles.py",
        "plot_dask_and_gpus.py",
    }
    assert (EXAMPLES / "README.rst").is_file()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_runs(script, quick, capsys):
    text = script.read_text()
    assert text.startswith('"""\n'), "a gallery example opens with its docstring"
    assert "# %%" in text

    runpy.run_path(str(script), run_name="__main__")

    written = {p.name for p in quick.iterdir()}
    assert written == WRITES.get(script.name, set())
    assert capsys.readouterr().out.strip(), "the example printed nothing"
