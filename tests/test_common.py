"""scikit-learn's own estimator checks, on the defaults and a small, fast instance."""

from conftest import FAST
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_swag import MultiSWAGRegressor


@parametrize_with_checks([MultiSWAGRegressor(), MultiSWAGRegressor(**FAST)])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
