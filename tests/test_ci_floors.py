"""``.ci/floors.py``: the oldest-dependencies job pins exactly the floors."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _floors_module():
    spec = importlib.util.spec_from_file_location("floors", ROOT / ".ci" / "floors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(tmp_path, dependencies, test):
    path = tmp_path / "pyproject.toml"
    path.write_text(
        f"[project]\ndependencies = {json.dumps(dependencies)}\n"
        f"[project.optional-dependencies]\ntest = {json.dumps(test)}\n"
    )
    return path


def test_every_floor_becomes_a_pin(tmp_path):
    path = _write(
        tmp_path, ["torch>=2.4", "numpy >= 1.24.1"], ["pytest>=7", "dask[x]>=2023.1"]
    )
    pins = _floors_module().floors(path, ["test"])
    assert pins == ["torch==2.4", "numpy==1.24.1", "pytest==7", "dask[x]==2023.1"]


@pytest.mark.parametrize(
    "requirement",
    ["torch", "torch>=2.4,<3", "torch~=2.4", "torch>=2.4; python_version>'3'"],
)
def test_a_requirement_without_a_plain_floor_is_an_error(tmp_path, requirement):
    path = _write(tmp_path, [requirement], [])
    with pytest.raises(SystemExit, match="not of the form"):
        _floors_module().floors(path, ["test"])


def test_two_different_floors_for_one_package_are_an_error(tmp_path):
    path = _write(tmp_path, ["scikit-learn>=1.6"], ["scikit_learn>=1.7"])
    with pytest.raises(SystemExit, match="two floors"):
        _floors_module().floors(path, ["test"])


def test_the_project_pins_its_dependencies_and_the_test_extra():
    pins = _floors_module().floors(ROOT / "pyproject.toml", ["test"])
    names = {pin.split("==")[0] for pin in pins}
    assert {"torch", "scikit-learn", "skorch", "numpy", "scipy", "pytest"} <= names
    assert all("==" in pin for pin in pins)
