"""MultiSWAG for scikit-learn: calibrated neural-network uncertainty on skorch."""

from ._classifier import MultiSWAGClassifier
from ._datasets import make_toy_regression
from ._moved import register_moved_modules
from ._network.mlp import MLP
from ._network.stack import ParticleStack
from ._posterior.categorical_mixture import CategoricalMixture
from ._posterior.normal_mixture import NormalMixture
from ._regressor import MultiSWAGRegressor
from .metrics import (
    classification_scorers,
    dist_scorers,
    expected_calibration_error,
    interval_coverage,
    make_dist_scorer,
    mean_crps,
    mean_expected_entropy,
    mean_interval_width,
    mean_log_loss,
    mean_mutual_information,
    mean_negative_log_likelihood,
    mean_predictive_entropy,
    multiclass_brier_score,
    neg_crps_scorer,
    neg_ece_scorer,
    neg_nll_scorer,
)

register_moved_modules()

__version__ = "0.1.0.dev0"

__all__ = [
    "MLP",
    "CategoricalMixture",
    "MultiSWAGClassifier",
    "MultiSWAGRegressor",
    "NormalMixture",
    "ParticleStack",
    "__version__",
    "classification_scorers",
    "dist_scorers",
    "expected_calibration_error",
    "interval_coverage",
    "make_dist_scorer",
    "make_toy_regression",
    "mean_crps",
    "mean_expected_entropy",
    "mean_interval_width",
    "mean_log_loss",
    "mean_mutual_information",
    "mean_negative_log_likelihood",
    "mean_predictive_entropy",
    "multiclass_brier_score",
    "neg_crps_scorer",
    "neg_ece_scorer",
    "neg_nll_scorer",
]
