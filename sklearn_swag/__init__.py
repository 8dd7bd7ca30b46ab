"""MultiSWAG for scikit-learn: calibrated neural-network uncertainty on skorch."""

from ._datasets import make_toy_regression
from ._mixture import NormalMixture
from ._mlp import MLP
from ._regressor import MultiSWAGRegressor
from ._scoring import (
    dist_scorers,
    interval_coverage,
    make_dist_scorer,
    mean_crps,
    mean_interval_width,
    mean_negative_log_likelihood,
    neg_crps_scorer,
    neg_nll_scorer,
)
from ._stacking import ParticleStack

__version__ = "0.1.0.dev0"

__all__ = [
    "MLP",
    "MultiSWAGRegressor",
    "NormalMixture",
    "ParticleStack",
    "__version__",
    "dist_scorers",
    "interval_coverage",
    "make_dist_scorer",
    "make_toy_regression",
    "mean_crps",
    "mean_interval_width",
    "mean_negative_log_likelihood",
    "neg_crps_scorer",
    "neg_nll_scorer",
]
