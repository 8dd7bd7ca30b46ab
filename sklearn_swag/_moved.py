"""Module names of earlier releases, kept importable for saved models.

A pickle or skops file names each class by its module. Files saved before the
package was grouped into subpackages name modules such as
``sklearn_swag._stacking``; each such name is registered here as a module
whose attributes are looked up in the modules that now hold them, so those
files still load.
"""

from __future__ import annotations

import importlib
import sys
import types

#: Each former module and the modules that now hold its names, in search order.
MOVED: dict[str, tuple[str, ...]] = {
    "_lowering": ("_network.lowering.network", "_network.lowering.values"),
    "_stacking": (
        "_network.stack",
        "_network.evaluators",
        "_network.inference",
        "_network.build",
        "_network.losses",
        "_training.batches",
    ),
    "_mlp": ("_network.mlp",),
    "_particles": (
        "_training.seeds",
        "_training.devices",
        "_training.plan",
        "_training.routed",
        "_training.optimizers",
        "_training.net",
        "_training.group",
        "_training.history",
    ),
    "_callbacks": ("_training.callbacks",),
    "_threads": ("_training.threads",),
    "_swag": ("_posterior.swag",),
    "_predictive": ("_posterior.draws",),
    "_noise": ("_posterior.noise",),
    "_mixture": (
        "_posterior.normal_mixture",
        "_posterior.quantiles",
        "_posterior.crps",
    ),
    "_categorical": ("_posterior.categorical_mixture",),
    "_diagnostics": ("_posterior.diagnostics",),
    "_scoring": ("metrics._scorer", "metrics._regression", "metrics._classification"),
}


def _forwarding_module(old: str, new: tuple[str, ...]) -> types.ModuleType:
    module = types.ModuleType(
        f"{__package__}.{old}", f"Former module; its names now live in {new}."
    )

    def __getattr__(name: str):
        for target in new:
            holder = importlib.import_module(f"{__package__}.{target}")
            if hasattr(holder, name):
                return getattr(holder, name)
        raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")

    module.__getattr__ = __getattr__
    return module


def register_moved_modules() -> None:
    """Make every former module name importable (idempotent)."""
    for old, new in MOVED.items():
        sys.modules.setdefault(f"{__package__}.{old}", _forwarding_module(old, new))
