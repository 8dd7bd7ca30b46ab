"""MultiSWAG for scikit-learn: calibrated neural-network uncertainty on skorch."""

from ._datasets import make_toy_regression
from ._mixture import NormalMixture
from ._mlp import MLP
from ._regressor import MultiSWAGRegressor
from ._stacking import ParticleStack

__version__ = "0.1.0.dev0"

__all__ = [
    "MLP",
    "MultiSWAGRegressor",
    "NormalMixture",
    "ParticleStack",
    "__version__",
    "make_toy_regression",
]
