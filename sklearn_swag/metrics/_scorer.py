"""Scorers of predictive distributions and of probabilistic classifiers.

The scorers have the signature ``scorer(estimator, X, y, sample_weight=None)``
that ``GridSearchCV``, ``cross_validate`` and ``cross_val_score`` expect as
``scoring``. Those of distributions are scikit-learn scorers of
``predict_dist``, reaching through a :class:`~sklearn.pipeline.Pipeline` to its
last step, so that the scorers of one ``cross_validate`` call share one
prediction per split; those of probabilities are
:func:`sklearn.metrics.make_scorer` scorers of ``predict_proba``.
"""

from collections.abc import Callable
from numbers import Integral, Real

from sklearn.metrics import get_scorer, make_scorer
from sklearn.pipeline import Pipeline

from .._sklearn_compat import (
    NumberInterval,
    _BaseScorer,
    call_response_method,
    validate_params,
)
from ._classification import (
    expected_calibration_error,
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


def _final_step(estimator, X):
    """The estimator with ``predict_dist``, and ``X`` transformed on the way to it.

    ``estimator`` itself if it has ``predict_dist``; for a fitted Pipeline, the
    last step's (through nested Pipelines) and ``X`` transformed through the
    steps before it.
    """
    if hasattr(estimator, "predict_dist"):
        return estimator, X
    final = estimator
    while isinstance(final, Pipeline) and not hasattr(final, "predict_dist"):
        final = final[-1]
    if not hasattr(final, "predict_dist"):
        where = (
            f"The last step of this {type(estimator).__name__}, {type(final).__name__},"
            if final is not estimator
            else type(estimator).__name__
        )
        raise TypeError(
            f"{where} has no predict_dist method. Distribution scorers need an "
            "estimator with predict_dist, such as MultiSWAGRegressor or "
            "MultiSWAGClassifier, or a Pipeline whose last step has one. To "
            "score predict_proba, use neg_ece_scorer or a scikit-learn scorer."
        )
    # Only Pipelines remain: transform through all steps but the last.
    if len(estimator) > 1:
        X = estimator[:-1].transform(X)
    return _final_step(estimator[-1], X)


def _call_method(estimator, method: str, X):
    """The ``method_caller`` of one scorer on its own: no cache to share."""
    return getattr(estimator, method)(X)


class _DistScorer(_BaseScorer):
    """Scorer ``scorer(estimator, X, y_true, sample_weight=None)`` of ``predict_dist``.

    Made by :func:`make_dist_scorer`. A scikit-learn scorer: in the dict form
    of ``scoring``, scikit-learn's multi-metric scorer hands every scorer one
    ``method_caller`` that caches the responses by method name, so the
    distribution scorers of one split share one ``predict_dist``. Its
    attributes are picklable, so that it travels to the workers of a parallel
    search.
    """

    def __init__(self, metric: Callable, sign: int, kwargs: dict) -> None:
        # A Pipeline has no predict_dist: the multi-metric scorer, which asks
        # for a response method to decide whether to cache, then finds its
        # predict. The response itself comes from _final_step's predict_dist.
        super().__init__(metric, sign, kwargs, ("predict_dist", "predict"))

    def __call__(self, estimator, X, y_true, sample_weight=None) -> float:
        """Score ``estimator`` on ``X`` against ``y_true``.

        Parameters
        ----------
        estimator : object
            Fitted estimator with a ``predict_dist`` method, or a fitted
            Pipeline whose last step has one.

        X : array-like of shape (n_samples, n_features)
            Test inputs.

        y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Observed targets, or class labels.

        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the points, passed on to the metric when not None.

        Returns
        -------
        score : float
            The metric, negated if lower is better.
        """
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        return self._score(_call_method, estimator, X, y_true, **kwargs)

    def _score(self, method_caller, estimator, X, y_true, **kwargs) -> float:
        # Called by scikit-learn's multi-metric scorer with its method_caller,
        # and by __call__; kwargs are the routed metadata (sample_weight).
        final, X = _final_step(estimator, X)
        dist = call_response_method(method_caller, final, "predict_dist", X)
        kwargs = {**self._kwargs, **kwargs}
        return self._sign * float(self._score_func(y_true, dist, **kwargs))

    def _accept_sample_weight(self) -> bool:
        # Asked by scikit-learn's multi-metric scorer (the dict form of
        # ``scoring``) before it passes sample_weight on without metadata
        # routing. Always, as before this class was a scikit-learn scorer: a
        # metric without sample_weight then fails instead of ignoring weights.
        return True

    def __setstate__(self, state: dict) -> None:
        # Scorers pickled before this class was a scikit-learn scorer (for
        # instance inside a saved GridSearchCV) named the metric _metric.
        if "_metric" in state:
            state = dict(state)
            state["_score_func"] = state.pop("_metric")
            state.setdefault("_response_method", ("predict_dist", "predict"))
        self.__dict__.update(state)

    def __repr__(self) -> str:
        name = getattr(self._score_func, "__name__", repr(self._score_func))
        arguments = [name]
        if self._sign < 0:
            arguments.append("greater_is_better=False")
        arguments += [f"{key}={value!r}" for key, value in self._kwargs.items()]
        return f"make_dist_scorer({', '.join(arguments)})"


def make_dist_scorer(
    metric: Callable, *, greater_is_better: bool = True, **kwargs
) -> _DistScorer:
    """Make a scorer of predictive distributions from a metric.

    The scorer has the signature ``scorer(estimator, X, y, sample_weight=None)``
    of ``scoring`` in :class:`~sklearn.model_selection.GridSearchCV`,
    :func:`~sklearn.model_selection.cross_validate` and
    :func:`~sklearn.model_selection.cross_val_score`. It calls
    ``estimator.predict_dist(X)``; for a :class:`~sklearn.pipeline.Pipeline`,
    which has no ``predict_dist``, it transforms ``X`` through all steps but the
    last and calls the last step's ``predict_dist`` (through nested Pipelines
    as well). It then returns ``metric(y, dist, **kwargs)``, negated if
    ``greater_is_better`` is False so that greater is always better. It is a
    scikit-learn scorer: several of them in the dict form of ``scoring`` share
    one ``predict_dist`` per split (see :func:`dist_scorers`).

    Parameters
    ----------
    metric : callable
        Function ``metric(y_true, dist, **kwargs)`` returning a float, such as
        :func:`mean_crps` for a regressor or :func:`mean_log_loss` for a
        classifier. It must accept a ``sample_weight`` keyword if the
        scorer is given sample weights. To use a scorer in parallel (``n_jobs``
        other than 1), the metric must be picklable: a module-level function,
        not a lambda.

    greater_is_better : bool, default=True
        Whether a greater value of ``metric`` is better. If False the scorer
        returns the negated metric.

    **kwargs : dict
        Further keyword arguments of ``metric``, such as ``confidence``.

    Returns
    -------
    scorer : callable
        Picklable scorer object, whose ``repr`` shows how it was made.

    See Also
    --------
    dist_scorers : A dictionary of ready-made scorers for ``cross_validate``.
    classification_scorers : The same for classifiers.
    sklearn.metrics.make_scorer : The same for metrics of point predictions.

    Examples
    --------
    >>> from sklearn_swag import interval_coverage, make_dist_scorer
    >>> make_dist_scorer(interval_coverage, confidence=0.9)
    make_dist_scorer(interval_coverage, confidence=0.9)

    Used in a search, with ``X`` and ``y`` arrays::

        from sklearn.model_selection import GridSearchCV
        from sklearn_swag import MultiSWAGRegressor, mean_crps

        scorer = make_dist_scorer(mean_crps, greater_is_better=False)
        search = GridSearchCV(
            MultiSWAGRegressor(), {"swag_epochs": [10, 30]}, scoring=scorer
        ).fit(X, y)
    """
    # Written out rather than left to validate_params, whose message ("The
    # 'metric' parameter of make_dist_scorer must be a callable") differs from
    # the one tests/metrics assert.
    if not callable(metric):
        raise TypeError(f"metric must be callable; got {type(metric).__name__}.")
    return _DistScorer(metric, 1 if greater_is_better else -1, kwargs)


#: Scorer of the negated mean negative log likelihood, for ``scoring``.
#:
#: ``neg_nll_scorer(estimator, X, y_true, sample_weight=None)`` returns
#: ``-mean_negative_log_likelihood(y_true, estimator.predict_dist(X))``, so
#: that greater is better, as ``scoring`` in scikit-learn expects.
#:
#: Parameters
#: ----------
#: estimator : object
#:     Fitted estimator with a ``predict_dist`` method, or a fitted
#:     Pipeline whose last step has one.
#: X : array-like of shape (n_samples, n_features)
#:     Test inputs.
#: y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
#:     Observed targets.
#: sample_weight : array-like of shape (n_samples,), default=None
#:     Weights of the points in the mean.
#:
#: Returns
#: -------
#: score : float
#:     Minus :func:`mean_negative_log_likelihood`; greater is better.
#:
#: See Also
#: --------
#: neg_crps_scorer : The same for the CRPS.
#: dist_scorers : This scorer and others, by name.
#:
#: Examples
#: --------
#: >>> from sklearn_swag import neg_nll_scorer
#: >>> neg_nll_scorer
#: make_dist_scorer(mean_negative_log_likelihood, greater_is_better=False)
#:
#: In a search, with ``X`` and ``y`` arrays::
#:
#:     from sklearn.model_selection import GridSearchCV
#:     from sklearn_swag import MultiSWAGRegressor
#:
#:     search = GridSearchCV(
#:         MultiSWAGRegressor(), {"rank": [5, 20]}, scoring=neg_nll_scorer
#:     ).fit(X, y)
neg_nll_scorer = make_dist_scorer(mean_negative_log_likelihood, greater_is_better=False)

#: Scorer of the negated mean CRPS, for ``scoring``.
#:
#: ``neg_crps_scorer(estimator, X, y_true, sample_weight=None)`` returns
#: ``-mean_crps(y_true, estimator.predict_dist(X))``, so that greater is
#: better.
#:
#: Parameters
#: ----------
#: estimator : object
#:     Fitted estimator with a ``predict_dist`` method, or a fitted
#:     Pipeline whose last step has one.
#: X : array-like of shape (n_samples, n_features)
#:     Test inputs.
#: y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
#:     Observed targets.
#: sample_weight : array-like of shape (n_samples,), default=None
#:     Weights of the points in the mean.
#:
#: Returns
#: -------
#: score : float
#:     Minus :func:`mean_crps`; greater is better.
#:
#: See Also
#: --------
#: neg_nll_scorer : The same for the log likelihood.
#: dist_scorers : This scorer and others, by name.
#:
#: Examples
#: --------
#: >>> from sklearn_swag import neg_crps_scorer
#: >>> neg_crps_scorer
#: make_dist_scorer(mean_crps, greater_is_better=False)
#:
#: In a search, with ``X`` and ``y`` arrays::
#:
#:     from sklearn.model_selection import GridSearchCV
#:     from sklearn_swag import MultiSWAGRegressor
#:
#:     search = GridSearchCV(
#:         MultiSWAGRegressor(), {"rank": [5, 20]}, scoring=neg_crps_scorer
#:     ).fit(X, y)
neg_crps_scorer = make_dist_scorer(mean_crps, greater_is_better=False)


@validate_params(
    {"confidence": [NumberInterval(Real, 0, 1, closed="neither")]},
    prefer_skip_nested_validation=True,
)
def dist_scorers(confidence: float = 0.95) -> dict[str, _DistScorer]:
    """Scorers of the predictive distribution, for ``cross_validate``.

    A dictionary of named scorers, ready for ``scoring`` in
    :func:`~sklearn.model_selection.cross_validate` or (with a ``refit`` name)
    :class:`~sklearn.model_selection.GridSearchCV`.

    Parameters
    ----------
    confidence : float, default=0.95
        Probability mass of the intervals of the coverage and width scorers,
        in (0, 1).

    Returns
    -------
    scorers : dict
        With ``pct`` the confidence in percent (``"95"`` for 0.95):

        - ``"neg_nll"``: :data:`neg_nll_scorer`, the negated mean negative log
          likelihood;
        - ``"neg_crps"``: :data:`neg_crps_scorer`, the negated mean CRPS;
        - ``f"coverage_{pct}"``: :func:`interval_coverage`, as is. It is for
          reporting calibration, not a score to maximise: the widest intervals
          cover everything. Compare it with ``confidence``;
        - ``f"neg_width_{pct}"``: the negated :func:`mean_interval_width`.

    See Also
    --------
    make_dist_scorer : Make a scorer of another metric.

    Notes
    -----
    Scored together, in the dict form of ``scoring``, the four share one
    ``predict_dist`` per split (with scikit-learn < 1.9, only for a
    classifier: there each scorer of a regressor predicts on its own). The
    steps of a Pipeline before the estimator transform ``X`` once per scorer.

    Examples
    --------
    >>> from sklearn_swag import dist_scorers
    >>> sorted(dist_scorers(0.9))
    ['coverage_90', 'neg_crps', 'neg_nll', 'neg_width_90']

    With an estimator and ``X``, ``y`` arrays::

        from sklearn.model_selection import cross_validate

        results = cross_validate(estimator, X, y, scoring=dist_scorers())
        results["test_coverage_95"].mean()
    """
    confidence = float(confidence)
    pct = f"{100 * confidence:g}"
    return {
        "neg_nll": neg_nll_scorer,
        "neg_crps": neg_crps_scorer,
        f"coverage_{pct}": make_dist_scorer(interval_coverage, confidence=confidence),
        f"neg_width_{pct}": make_dist_scorer(
            mean_interval_width, greater_is_better=False, confidence=confidence
        ),
    }


#: Scorer of the negated expected calibration error, for ``scoring``.
#:
#: ``neg_ece_scorer(estimator, X, y_true, sample_weight=None)`` returns
#: ``-expected_calibration_error(y_true, estimator.predict_proba(X))`` with
#: 15 bins, so that greater is better. A scikit-learn scorer of
#: ``predict_proba`` (:func:`sklearn.metrics.make_scorer`), it scores any
#: classifier and Pipeline that has ``predict_proba``. On a binary problem it
#: gets the probabilities of ``classes_[1]`` only, which the metric reads as
#: the columns ``[1 - p, p]``; the columns are matched with the labels found
#: in ``y_true``, so every class must occur in the test set (stratified folds
#: see to that), as for scikit-learn's ``"neg_log_loss"``.
#:
#: Parameters
#: ----------
#: estimator : object
#:     Fitted classifier with a ``predict_proba`` method.
#: X : array-like of shape (n_samples, n_features)
#:     Test inputs.
#: y_true : array-like of shape (n_samples,)
#:     Observed labels.
#: sample_weight : array-like of shape (n_samples,), default=None
#:     Weights of the samples.
#:
#: Returns
#: -------
#: score : float
#:     Minus :func:`expected_calibration_error`; greater is better.
#:
#: See Also
#: --------
#: classification_scorers : This scorer, with ``n_bins`` chosen, and others.
#:
#: Examples
#: --------
#: >>> from sklearn.datasets import load_iris
#: >>> from sklearn.linear_model import LogisticRegression
#: >>> from sklearn_swag import neg_ece_scorer
#: >>> X, y = load_iris(return_X_y=True)
#: >>> score = neg_ece_scorer(LogisticRegression().fit(X, y), X, y)
#: >>> isinstance(score, float), score <= 0
#: (True, True)
neg_ece_scorer = make_scorer(
    expected_calibration_error,
    greater_is_better=False,
    response_method="predict_proba",
)


@validate_params(
    {"n_bins": [NumberInterval(Integral, 1, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def classification_scorers(n_bins: int = 15) -> dict:
    """Scorers of a probabilistic classifier, for ``cross_validate``.

    A dictionary of named scorers, ready for ``scoring`` in
    :func:`~sklearn.model_selection.cross_validate` or (with a ``refit`` name)
    :class:`~sklearn.model_selection.GridSearchCV`. The first three score
    ``predict_proba`` and work for any classifier; the last two need the
    ``predict_dist`` of a MultiSWAG classifier.

    Parameters
    ----------
    n_bins : int, default=15
        Number of bins of the calibration error.

    Returns
    -------
    scorers : dict
        - ``"neg_log_loss"``: scikit-learn's negated log loss;
        - ``"neg_brier"``: the negated :func:`multiclass_brier_score`;
        - ``f"neg_ece_{n_bins}"``: the negated
          :func:`expected_calibration_error` with ``n_bins`` bins;
        - ``"mutual_information"``: :func:`mean_mutual_information`, the
          epistemic uncertainty;
        - ``"entropy"``: :func:`mean_predictive_entropy`, the total
          uncertainty.

        The last two report uncertainty, and are not scores to maximise.

    See Also
    --------
    dist_scorers : The same for regressors.
    make_dist_scorer : Make a scorer of another metric of ``predict_dist``.

    Notes
    -----
    Scored together, in the dict form of ``scoring``, the scorers of
    ``predict_proba`` share one prediction per split, and those of
    ``predict_dist`` another.

    Examples
    --------
    >>> from sklearn_swag import classification_scorers
    >>> sorted(classification_scorers(10))
    ['entropy', 'mutual_information', 'neg_brier', 'neg_ece_10', 'neg_log_loss']

    With a classifier and ``X``, ``y`` arrays::

        from sklearn.model_selection import cross_validate

        results = cross_validate(classifier, X, y, scoring=classification_scorers())
        results["test_neg_ece_15"].mean()
    """
    n_bins = int(n_bins)
    return {
        "neg_log_loss": get_scorer("neg_log_loss"),
        "neg_brier": make_scorer(
            multiclass_brier_score,
            greater_is_better=False,
            response_method="predict_proba",
        ),
        f"neg_ece_{n_bins}": make_scorer(
            expected_calibration_error,
            greater_is_better=False,
            response_method="predict_proba",
            n_bins=n_bins,
        ),
        "mutual_information": make_dist_scorer(mean_mutual_information),
        "entropy": make_dist_scorer(mean_predictive_entropy),
    }
