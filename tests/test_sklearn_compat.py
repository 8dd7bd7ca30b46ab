"""The private scikit-learn helpers we rely on still behave as we use them."""

from numbers import Real

import numpy as np
import pytest
from sklearn.base import BaseEstimator

from sklearn_swag._sklearn_compat import (
    Interval,
    InvalidParameterError,
    StrOptions,
    _fit_context,
    validate_data,
)


class _Probe(BaseEstimator):
    _parameter_constraints = {
        "alpha": [Interval(Real, 0, None, closed="left")],
        "kind": [StrOptions({"a", "b"})],
    }

    def __init__(self, alpha=1.0, kind="a"):
        self.alpha = alpha
        self.kind = kind

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        validate_data(self, X, y)
        return self


def test_fit_context_validates_parameters():
    X, y = np.zeros((3, 2)), np.zeros(3)
    assert _Probe().fit(X, y).n_features_in_ == 2
    with pytest.raises(InvalidParameterError, match="alpha"):
        _Probe(alpha=-1.0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="kind"):
        _Probe(kind="c").fit(X, y)


def test_validate_data_checks_features_on_reuse():
    est = _Probe().fit(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="features"):
        validate_data(est, np.zeros((3, 4)), reset=False)
