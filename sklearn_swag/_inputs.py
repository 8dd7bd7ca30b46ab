"""The input arrays: validation of any shape.

Both estimators take float arrays of shape ``(n_samples, n_features)`` or
``(n_samples, ...)`` (images ``(N, C, H, W)``, sequences ``(N, T, F)``) when
the network takes such a tensor. scikit-learn's checks run along the first
axis (NaN, inf, too few rows, lengths of ``y`` and ``sample_weight``); the
shape of one sample is remembered at fit (``input_shape_``) and prediction
refuses another (:func:`predict_inputs`). Two-dimensional inputs keep
everything scikit-learn gives them: feature names, DataFrames,
``n_features_in_``.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from ._rows import as_float32
from ._sklearn_compat import validate_data

#: The dtypes the inputs are validated to (float32 kept, anything else float64).
FLOATS = [np.float64, np.float32]


def fit_inputs(est, X, y, **check_params):
    """``X, y`` validated at fit, ``X`` of any shape ``(n_samples, ...)``.

    Sets ``n_features_in_`` (the values of one sample: for an image
    ``C * H * W``), ``input_shape_`` (the shape of one sample) and, for a
    DataFrame, ``feature_names_in_``. An N-D ``X`` needs a network of the
    user's (``module``): the built-in MLP takes rows of features.

    Parameters
    ----------
    est : MultiSWAGRegressor or MultiSWAGClassifier
        The estimator being fitted.
    X : array-like of shape (n_samples, n_features) or (n_samples, ...)
        Training inputs.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Targets.
    **check_params : dict
        Further arguments of :func:`~sklearn.utils.check_X_y`.

    Returns
    -------
    X : ndarray of shape (n_samples, ...), float32 or float64
    y : ndarray
    """
    X, y = validate_data(est, X, y, dtype=FLOATS, allow_nd=True, **check_params)
    shape = tuple(int(s) for s in X.shape[1:])
    if X.ndim > 2:
        if 0 in shape:
            raise ValueError(
                f"X of shape {X.shape} has no values per sample; "
                f"{type(est).__name__} needs samples of at least one value."
            )
        if est.module is None:
            raise ValueError(
                f"X has shape {X.shape}: samples of shape {shape}, but the "
                "built-in network (module=None) takes rows of features, "
                "(n_samples, n_features). Pass a network that takes tensors "
                f"of shape (n_samples, {', '.join(map(str, shape))}) as `module` "
                "(for example a CNN), or flatten the inputs to (n_samples, "
                f"{int(np.prod(shape))}) first (X.reshape(len(X), -1))."
            )
        # scikit-learn counts X.shape[1] (the channels of an image); here
        # the values of one sample, as flattened inputs would have.
        est.n_features_in_ = int(np.prod(shape))
    est.input_shape_ = shape
    return X, y


def predict_inputs(est, X) -> np.ndarray:
    """``X`` validated for prediction, as float32, or a clear error.

    The checks of :func:`~sklearn.utils.validation.validate_data` with
    ``reset=False`` (feature names, NaN and inf, at least one row), and the
    shape of a sample must be the one fitted on, ``input_shape_``.

    Parameters
    ----------
    est : MultiSWAGRegressor or MultiSWAGClassifier
        A fitted estimator.
    X : array-like of shape (n_samples, n_features) or (n_samples, ...)
        Query points.

    Returns
    -------
    ndarray of shape (n_samples, *input_shape_), float32
    """
    check_is_fitted(est)
    # Feature names only; the shape is checked below, against the whole
    # shape of a sample rather than X.shape[1].
    validate_data(est, X, reset=False, skip_check_array=True, ensure_2d=False)
    X = check_array(X, dtype=FLOATS, allow_nd=True, estimator=est, input_name="X")
    fitted = vars(est).get("input_shape_")
    if fitted is None:  # a model saved before inputs of any shape
        fitted = (est.n_features_in_,)
    check_input_shape(est, X.shape, tuple(fitted))
    return as_float32(X, "X")


def check_input_shape(est, shape: tuple, fitted: tuple) -> None:
    """Fail unless ``shape`` is ``(n, *fitted)``, naming both shapes.

    Rows of another width get scikit-learn's own message (``X has 3
    features, but ... is expecting 5 features as input``).
    """
    sample = tuple(int(s) for s in shape[1:])
    if sample == fitted:
        return
    name = type(est).__name__
    if len(sample) == 1 and len(fitted) == 1:
        raise ValueError(
            f"X has {sample[0]} features, but {name} is expecting "
            f"{fitted[0]} features as input."
        )
    raise ValueError(
        f"X has shape {tuple(shape)}, samples of shape {sample}, but {name} "
        f"was fitted on samples of shape {fitted}: X must have shape "
        f"(n_samples, {', '.join(map(str, fitted))})."
    )
