"""The examples run end to end (in their short mode)."""

import os
import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    "script", sorted(EXAMPLES.glob("plot_*.py")), ids=lambda p: p.name
)
def test_example_runs(script, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(os.environ, "SKLEARN_SWAG_QUICK", "1")
    runpy.run_path(str(script), run_name="__main__")
    assert list(tmp_path.glob("*.png")), "the example wrote no figure"
    assert capsys.readouterr().out.strip()
