"""scikit-learn's own estimator checks, nothing excused: each estimator with its
defaults and as a small fast instance (the regressor also with heteroscedastic
noise)."""

from conftest import FAST
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_swag import MultiSWAGClassifier, MultiSWAGRegressor


@parametrize_with_checks(
    [
        MultiSWAGRegressor(),
        MultiSWAGRegressor(**FAST),
        MultiSWAGRegressor(**FAST, noise="heteroscedastic"),
        MultiSWAGClassifier(),
        MultiSWAGClassifier(**FAST),
    ]
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
