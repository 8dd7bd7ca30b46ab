"""The one place that imports scikit-learn's private helpers.

Should scikit-learn move one of them, this file is the only one to change;
``tests/test_sklearn_compat.py`` fails first.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
)
from sklearn.utils.validation import _check_sample_weight, validate_data

__all__ = [
    "HasMethods",
    "Interval",
    "InvalidParameterError",
    "StrOptions",
    "_check_sample_weight",
    "_fit_context",
    "validate_data",
]
