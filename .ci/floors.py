"""Print the oldest supported versions as pip pins, read from pyproject.toml.

Every ``name>=X`` of ``[project] dependencies`` and of the extras named on the
command line (default: ``test``) becomes ``name==X``, so that the oldest-
dependencies job installs exactly the floors that ``pyproject.toml`` promises
and the two cannot drift apart. A requirement without a ``>=`` floor, or with
any other specifier, is an error: the job could not say what "oldest" means.

Usage: ``python .ci/floors.py [EXTRA ...] > pins.txt``.
"""

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

#: ``name[extras]>=X`` with nothing else: the only form the job understands.
_FLOOR = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)\s*$")


def floors(pyproject: Path, extras: list[str]) -> list[str]:
    """The ``name[extras]==X`` pins of the dependencies and ``extras``."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    pins = {}
    for requirement in requirements:
        match = _FLOOR.match(requirement)
        if match is None:
            raise SystemExit(
                f"{pyproject}: {requirement!r} is not of the form 'name>=X'; "
                "the oldest-dependencies job needs a plain floor for each."
            )
        name, bracket, version = match.groups()
        pin = f"{name}{bracket or ''}=={version}"
        key = name.lower().replace("_", "-")
        if pins.setdefault(key, pin) != pin:
            raise SystemExit(f"{pyproject}: two floors for {name}: {pins[key]}, {pin}")
    return list(pins.values())


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    print("\n".join(floors(root / "pyproject.toml", sys.argv[1:] or ["test"])))
