"""The one place that imports scikit-learn's private helpers.

Should scikit-learn move one of them, this file is the only one to change;
``tests/test_sklearn_compat.py`` fails first (and, for the scorer protocol,
``tests/metrics/test_scorer.py``).
"""

import inspect

import numpy as np
from sklearn import __version__ as _sklearn_version
from sklearn.base import _fit_context, is_classifier
from sklearn.metrics._scorer import _BaseScorer
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
    validate_params,
)
from sklearn.utils.fixes import parse_version
from sklearn.utils.validation import _check_sample_weight as _sklearn_check_weight
from sklearn.utils.validation import validate_data

__all__ = [
    "HasMethods",
    "Interval",
    "InvalidParameterError",
    "NumberInterval",
    "StrOptions",
    "_BaseScorer",
    "_check_sample_weight",
    "_fit_context",
    "call_response_method",
    "validate_data",
    "validate_params",
]

_SKLEARN_VERSION = parse_version(parse_version(_sklearn_version).base_version)

#: Whether a scorer's ``method_caller`` reaches any method of a regressor:
#: before 1.9, ``sklearn.utils._response._get_response_values`` calls only the
#: ``predict`` of an estimator that is not a classifier.
_REGRESSOR_RESPONSE_ANY_METHOD = _SKLEARN_VERSION >= parse_version("1.9")

#: Whether scikit-learn's ``_check_sample_weight`` refuses weights that are all
#: zero: from 1.9 on (``allow_all_zero_weights``); before, it returns them.
_REFUSES_ALL_ZERO_WEIGHTS = (
    "allow_all_zero_weights" in inspect.signature(_sklearn_check_weight).parameters
)


def _check_sample_weight(sample_weight, X, **kwargs):
    """scikit-learn's ``_check_sample_weight``, refusing all-zero weights.

    Weights that are all zero leave nothing to fit (the target's weighted mean
    divides by their sum); scikit-learn refuses them from 1.9 on, and here
    with the same message before.
    """
    weights = _sklearn_check_weight(sample_weight, X, **kwargs)
    if not _REFUSES_ALL_ZERO_WEIGHTS and weights.size and not np.any(weights):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return weights


class NumberInterval(Interval):
    """An :class:`Interval` of numbers that, unlike scikit-learn's, rejects bools.

    ``True`` is an ``Integral`` to Python; as a count or a probability it is a
    mistake.
    """

    def is_satisfied_by(self, val):
        return not isinstance(val, bool) and super().is_satisfied_by(val)


def call_response_method(method_caller, estimator, method: str, X):
    """``getattr(estimator, method)(X)``, through a scorer's ``method_caller``.

    scikit-learn passes a ``_BaseScorer._score`` the ``method_caller`` of a
    multi-metric call, which caches each response by method name, so that the
    scorers of one ``cross_validate`` split share one prediction. It reads the
    estimator's tags, and before scikit-learn 1.9 it calls only ``predict`` of
    a regressor: an object without tags, or a regressor there, is called
    directly, once per scorer.
    """
    if hasattr(estimator, "__sklearn_tags__") and (
        _REGRESSOR_RESPONSE_ANY_METHOD or is_classifier(estimator)
    ):
        return method_caller(estimator, method, X)
    return getattr(estimator, method)(X)
