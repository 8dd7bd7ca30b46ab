"""The private scikit-learn helpers we rely on still behave as we use them."""

from numbers import Real

import numpy as np
import pytest
from sklearn.base import BaseEstimator

from sklearn_swag._sklearn_compat import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
    _check_sample_weight,
    _fit_context,
    validate_data,
)


class _Probe(BaseEstimator):
    _parameter_constraints = {
        "alpha": [Interval(Real, 0, None, closed="left")],
        "kind": [StrOptions({"a", "b"})],
        "part": [None, HasMethods(["fit"])],
    }

    def __init__(self, alpha=1.0, kind="a", part=None):
        self.alpha = alpha
        self.kind = kind
        self.part = part

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


def test_has_methods_accepts_objects_with_them():
    X, y = np.zeros((3, 2)), np.zeros(3)
    _Probe(part=_Probe()).fit(X, y)
    with pytest.raises(InvalidParameterError, match="part"):
        _Probe(part=object()).fit(X, y)


def test_check_sample_weight():
    X = np.zeros((3, 2))
    np.testing.assert_array_equal(_check_sample_weight(None, X), np.ones(3))
    with pytest.raises(ValueError, match="(?i)negative"):
        _check_sample_weight(np.array([1.0, -1.0, 1.0]), X, ensure_non_negative=True)
    with pytest.raises(ValueError):
        _check_sample_weight(np.ones(4), X)


def test_check_sample_weight_refuses_all_zero_weights():
    # scikit-learn refuses them only from 1.9 on; the shim does before too.
    X = np.zeros((3, 2))
    with pytest.raises(ValueError, match="non-zero"):
        _check_sample_weight(np.zeros(3), X, ensure_non_negative=True)
    weights = _check_sample_weight(np.array([0.0, 2.0, 0.0]), X, dtype=np.float64)
    np.testing.assert_array_equal(weights, [0.0, 2.0, 0.0])


def test_validate_data_on_nd_inputs_as_the_estimators_use_it():
    # fit: allow_nd keeps (N, C, H, W) and counts X.shape[1] (which the
    # estimators replace by the values of a sample).
    est = _Probe()
    X, _ = validate_data(est, np.zeros((3, 2, 4, 4)), np.zeros(3), allow_nd=True)
    assert X.shape == (3, 2, 4, 4) and est.n_features_in_ == 2
    # prediction: feature names only, no count of features, X unchanged.
    est.n_features_in_ = 32
    Z = np.zeros((3, 2, 4, 4))
    out = validate_data(est, Z, reset=False, skip_check_array=True, ensure_2d=False)
    assert out is Z
