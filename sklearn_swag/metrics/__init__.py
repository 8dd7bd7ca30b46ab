"""Proper scores, calibration metrics and scorers for predictive distributions.

The regression metrics take the observed targets and a
:class:`~sklearn_swag.NormalMixture` (what ``MultiSWAGRegressor.predict_dist``
returns); the classification metrics take class labels and either a
:class:`~sklearn_swag.CategoricalMixture` or, as scikit-learn's metrics do, an
array of class probabilities. The scorers are for ``scoring`` in
``GridSearchCV``, ``cross_validate`` and ``cross_val_score``. Every name here
is also importable from ``sklearn_swag`` itself.
"""

from ._classification import (
    expected_calibration_error,
    mean_expected_entropy,
    mean_log_loss,
    mean_mutual_information,
    mean_predictive_entropy,
    multiclass_brier_score,
)
from ._regression import (
    interval_coverage,
    mean_crps,
    mean_interval_width,
    mean_negative_log_likelihood,
)
from ._scorer import (
    classification_scorers,
    dist_scorers,
    make_dist_scorer,
    neg_crps_scorer,
    neg_ece_scorer,
    neg_nll_scorer,
)

__all__ = [
    "classification_scorers",
    "dist_scorers",
    "expected_calibration_error",
    "interval_coverage",
    "make_dist_scorer",
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
