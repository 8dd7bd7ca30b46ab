"""scikit-learn's own estimator checks: the defaults, a small fast instance, and
that instance with heteroscedastic noise."""

from conftest import FAST
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_swag import MultiSWAGRegressor


@parametrize_with_checks(
    [
        MultiSWAGRegressor(),
        MultiSWAGRegressor(**FAST),
        MultiSWAGRegressor(**FAST, noise="heteroscedastic"),
    ]
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
