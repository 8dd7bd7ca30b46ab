"""Tests of the distribution metrics (against scipy) and of the scorers."""

import pickle

import numpy as np
import pytest
from conftest import FAST
from numpy.testing import assert_allclose
from scipy import stats
from scipy.optimize import brentq
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.metrics import check_scoring
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    cross_val_score,
    cross_validate,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from sklearn_swag import (
    MultiSWAGRegressor,
    NormalMixture,
    dist_scorers,
    interval_coverage,
    make_dist_scorer,
    mean_crps,
    mean_interval_width,
    mean_negative_log_likelihood,
    neg_crps_scorer,
    neg_nll_scorer,
)

METRICS = [
    mean_negative_log_likelihood,
    mean_crps,
    interval_coverage,
    mean_interval_width,
]

# --------------------------------------------------------------------------- metrics


def _mixture(n_points=8, n_outputs=1, seed=0):
    """A three-component mixture with per-component noise, and targets."""
    rng = np.random.RandomState(seed)
    shape = (3, n_points, n_outputs)
    means = rng.normal(scale=2.0, size=shape)
    variances = rng.uniform(0.0, 1.0, size=shape)
    noise = rng.uniform(0.1, 1.0, size=shape)
    dist = NormalMixture(means, variances, noise, single_output=n_outputs == 1)
    y = rng.normal(scale=2.0, size=shape[1:])
    return dist, (y[:, 0] if n_outputs == 1 else y), means, np.sqrt(variances + noise)


def _hand_cdf(x, means, scales):
    return np.mean(stats.norm.cdf(x, means, scales), axis=0)


def _hand_crps(y, means, scales):
    """E|X - y| - E|X - X'| / 2, with E|N(m, s^2)| from scipy's folded normal."""

    def expected_abs(m, s):
        return s * stats.foldnorm.mean(np.abs(m) / s)

    to_y = np.mean(
        [expected_abs(y - m, s) for m, s in zip(means, scales, strict=True)], axis=0
    )
    pairs = [
        expected_abs(mj - mk, np.hypot(sj, sk))
        for mj, sj in zip(means, scales, strict=True)
        for mk, sk in zip(means, scales, strict=True)
    ]
    return to_y - 0.5 * np.mean(pairs, axis=0)


def test_mean_negative_log_likelihood_matches_scipy():
    dist, y, means, scales = _mixture()
    nll = -np.log(np.mean(stats.norm.pdf(y, means[..., 0], scales[..., 0]), axis=0))
    assert_allclose(mean_negative_log_likelihood(y, dist), nll.mean(), rtol=1e-12)
    weights = np.arange(1.0, 9.0)
    assert_allclose(
        mean_negative_log_likelihood(y, dist, sample_weight=weights),
        np.average(nll, weights=weights),
        rtol=1e-12,
    )


def test_mean_negative_log_likelihood_is_joint_over_outputs():
    dist, y, means, scales = _mixture(n_outputs=2, seed=1)
    joint = np.mean(np.prod(stats.norm.pdf(y, means, scales), axis=-1), axis=0)
    value = mean_negative_log_likelihood(y, dist)
    assert_allclose(value, -np.mean(np.log(joint)), rtol=1e-12)
    # Not the sum of the marginal log likelihoods.
    marginal = np.mean(stats.norm.pdf(y, means, scales), axis=0)
    assert not np.isclose(value, -np.mean(np.log(marginal).sum(axis=-1)))


@pytest.mark.parametrize("n_outputs", [1, 2])
def test_mean_crps_matches_folded_normal_reference(n_outputs):
    dist, y, means, scales = _mixture(n_outputs=n_outputs, seed=2)
    if n_outputs == 1:
        means, scales = means[..., 0], scales[..., 0]
    crps = _hand_crps(y, means, scales)
    assert crps.shape == y.shape
    assert_allclose(mean_crps(y, dist), crps.mean(), rtol=1e-10)
    weights = np.linspace(0.5, 3.0, 8)
    per_point = crps if n_outputs == 1 else crps.mean(axis=1)
    assert_allclose(
        mean_crps(y, dist, sample_weight=weights),
        np.average(per_point, weights=weights),
        rtol=1e-10,
    )


def test_mean_crps_of_one_gaussian_is_the_known_formula():
    rng = np.random.RandomState(3)
    mean, scale = rng.normal(size=5), rng.uniform(0.5, 2.0, size=5)
    dist = NormalMixture(mean[None, :, None], np.zeros((1, 5, 1)), scale**2)
    y = rng.normal(size=5)
    z = (y - mean) / scale
    crps = scale * (
        z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi)
    )
    assert_allclose(mean_crps(y, dist), crps.mean(), rtol=1e-12)


@pytest.mark.parametrize("n_outputs", [1, 2])
@pytest.mark.parametrize("confidence", [0.5, 0.9])
def test_interval_coverage_matches_hand_cdf(n_outputs, confidence):
    dist, y, means, scales = _mixture(n_points=40, n_outputs=n_outputs, seed=4)
    if n_outputs == 1:
        means, scales = means[..., 0], scales[..., 0]
    # y is inside the equal-tailed interval iff its cdf lies in [a, 1 - a].
    alpha = (1 - confidence) / 2
    cdf = _hand_cdf(y, means, scales)
    inside = ((cdf >= alpha) & (cdf <= 1 - alpha)).astype(float)
    assert 0 < inside.mean() < 1  # the case tells covered from uncovered
    coverage = interval_coverage(y, dist, confidence)
    assert_allclose(coverage, inside.mean(), rtol=1e-12)
    assert_allclose(interval_coverage(y, dist, confidence=confidence), coverage)
    weights = np.random.RandomState(5).uniform(size=40)
    per_point = inside if n_outputs == 1 else inside.mean(axis=1)
    assert_allclose(
        interval_coverage(y, dist, confidence, sample_weight=weights),
        np.average(per_point, weights=weights),
        rtol=1e-12,
    )


def test_mean_interval_width_matches_root_finding():
    dist, y, means, scales = _mixture(n_points=5, seed=6)
    means, scales = means[..., 0], scales[..., 0]
    widths = []
    for point in range(5):
        m, s = means[:, point], scales[:, point]

        def cdf(x, m=m, s=s):
            return np.mean(stats.norm.cdf(x, m, s))

        lo, hi = m.min() - 20 * s.max(), m.max() + 20 * s.max()
        lower = brentq(lambda x, cdf=cdf: cdf(x) - 0.05, lo, hi, xtol=1e-13)
        upper = brentq(lambda x, cdf=cdf: cdf(x) - 0.95, lo, hi, xtol=1e-13)
        widths.append(upper - lower)
    widths = np.array(widths)
    assert_allclose(mean_interval_width(y, dist, 0.9), widths.mean(), rtol=1e-9)
    weights = [1.0, 0.0, 2.0, 3.0, 1.0]
    assert_allclose(
        mean_interval_width(y, dist, 0.9, sample_weight=weights),
        np.average(widths, weights=weights),
        rtol=1e-9,
    )
    assert mean_interval_width(y, dist, 0.5) < mean_interval_width(y, dist, 0.9)
    assert mean_interval_width(y, dist, 1.0) == np.inf


@pytest.mark.parametrize("metric", METRICS)
def test_zero_weights_drop_points(metric):
    dist, y, means, scales = _mixture(n_points=6, seed=7)
    keep = np.array([True, False, True, True, False, True])
    variances = scales**2 - 0.01
    subset = NormalMixture(means[:, keep], variances[:, keep], 0.01)
    whole = NormalMixture(means, variances, 0.01)
    weighted = metric(y, whole, sample_weight=keep.astype(float))
    assert_allclose(weighted, metric(y[keep], subset), rtol=1e-12)


@pytest.mark.parametrize("metric", METRICS)
def test_integer_weights_repeat_points(metric):
    dist, y, means, scales = _mixture(n_points=4, n_outputs=2, seed=8)
    counts = np.array([1, 3, 0, 2])
    repeated = np.repeat(np.arange(4), counts)
    variances = scales**2 - 0.01
    copies = NormalMixture(
        means[:, repeated], variances[:, repeated], 0.01, single_output=False
    )
    whole = NormalMixture(means, variances, 0.01, single_output=False)
    assert_allclose(
        metric(y, whole, sample_weight=counts),
        metric(y[repeated], copies),
        rtol=1e-12,
    )


@pytest.mark.parametrize("metric", METRICS)
def test_single_output_accepts_a_column_of_targets(metric):
    dist, y, _, _ = _mixture(seed=9)
    assert metric(y[:, None], dist) == metric(y, dist)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(
    "case, error, match",
    [
        ("short-y", ValueError, r"y_true of shape \(7,\) does not match dist"),
        ("wide-y", ValueError, r"expected shape \(8, 2\)"),
        ("nan-y", ValueError, "y_true must be finite"),
        ("text-y", ValueError, "real numbers"),
        ("short-weights", ValueError, r"sample_weight must have shape"),
        ("negative-weights", ValueError, "non-negative"),
        ("zero-weights", ValueError, "sum to zero"),
        ("nan-weights", ValueError, "sample_weight must be finite"),
        ("not-a-mixture", TypeError, "dist must be a NormalMixture"),
    ],
)
def test_metric_validation(metric, case, error, match):
    dist, y, _, _ = _mixture(seed=10)
    multi, y_multi, _, _ = _mixture(n_outputs=2, seed=10)
    y_true, kwargs = y, {}
    if case == "short-y":
        y_true = y[:7]
    elif case == "wide-y":
        y_true, dist = np.ones((8, 3)), multi
    elif case == "nan-y":
        y_true = np.where(np.arange(8) == 3, np.nan, y)
    elif case == "text-y":
        y_true = ["a"] * 8
    elif case == "short-weights":
        kwargs["sample_weight"] = np.ones(7)
    elif case == "negative-weights":
        kwargs["sample_weight"] = -np.ones(8)
    elif case == "zero-weights":
        kwargs["sample_weight"] = np.zeros(8)
    elif case == "nan-weights":
        kwargs["sample_weight"] = np.full(8, np.nan)
    elif case == "not-a-mixture":
        dist = stats.norm()
    with pytest.raises(error, match=match):
        metric(y_true, dist, **kwargs)


@pytest.mark.parametrize("metric", [interval_coverage, mean_interval_width])
@pytest.mark.parametrize(
    "confidence, error", [(1.5, ValueError), (-0.1, ValueError), ("0.9", TypeError)]
)
def test_interval_metrics_check_confidence(metric, confidence, error):
    dist, y, _, _ = _mixture(seed=11)
    with pytest.raises(error, match="confidence"):
        metric(y, dist, confidence)


# --------------------------------------------------------------------------- scorers

#: Fewer epochs than the shared fast settings: the scores need not be good.
SMALL = dict(FAST, pretrain_epochs=10, swag_epochs=5)


def _mean_abs_error_of_mean(y_true, dist):
    """A metric without sample_weight, as users may write one."""
    return float(np.mean(np.abs(np.asarray(y_true) - dist.mean())))


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(48, 3)).astype(np.float32)
    X *= np.array([1.0, 10.0, 0.1], dtype=np.float32)  # scaling matters
    y = (X[:, 0] - 0.2 * X[:, 1] + np.sin(30 * X[:, 2])).astype(np.float32)
    y += 0.1 * rng.standard_normal(48).astype(np.float32)
    return X, y


@pytest.fixture(scope="module")
def fitted(data):
    """The same model fitted as a Pipeline and, on scaled inputs, on its own."""
    X, y = data
    pipe = make_pipeline(StandardScaler(), MultiSWAGRegressor(**SMALL)).fit(X, y)
    X_scaled = StandardScaler().fit_transform(X)
    reg = MultiSWAGRegressor(**SMALL).fit(X_scaled, y)
    return pipe, reg, X_scaled


def _all_scorers():
    return {
        **dist_scorers(0.9),
        "mae_of_mean": make_dist_scorer(
            _mean_abs_error_of_mean, greater_is_better=False
        ),
    }


def test_scorers_on_regressor_match_metrics(data, fitted):
    _, y = data
    _, reg, X_scaled = fitted
    dist = reg.predict_dist(X_scaled)
    expected = {
        "neg_nll": -mean_negative_log_likelihood(y, dist),
        "neg_crps": -mean_crps(y, dist),
        "coverage_90": interval_coverage(y, dist, 0.9),
        "neg_width_90": -mean_interval_width(y, dist, 0.9),
        "mae_of_mean": -np.mean(np.abs(y - reg.predict(X_scaled))),
    }
    for name, scorer in _all_scorers().items():
        score = scorer(reg, X_scaled, y)
        assert isinstance(score, float)
        assert_allclose(score, expected[name], rtol=1e-12, err_msg=name)
    assert expected["neg_crps"] < 0 and expected["neg_width_90"] < 0
    assert 0 < expected["coverage_90"] <= 1


def test_scorers_reach_through_pipelines(data, fitted):
    X, y = data
    pipe, reg, X_scaled = fitted
    inner = make_pipeline(FunctionTransformer().fit(X_scaled), pipe[-1])
    nested = Pipeline([("outer", pipe[0]), ("inner", inner)])
    alone = Pipeline([("reg", reg)])
    for name, scorer in _all_scorers().items():
        direct = scorer(reg, X_scaled, y)
        assert_allclose(scorer(pipe, X, y), direct, rtol=1e-5, err_msg=name)
        assert_allclose(scorer(nested, X, y), scorer(pipe, X, y), err_msg=name)
        assert scorer(alone, X_scaled, y) == direct
    # Without the scaling, the score differs: the pipeline did transform X.
    assert not np.isclose(neg_nll_scorer(pipe[-1], X, y), neg_nll_scorer(pipe, X, y))


def test_scorers_in_cross_validate_and_grid_search(data):
    X, y = data
    pipe = make_pipeline(StandardScaler(), MultiSWAGRegressor(**SMALL))
    cv = KFold(n_splits=2)
    results = cross_validate(pipe, X, y, cv=cv, scoring=dist_scorers())
    names = ["neg_nll", "neg_crps", "coverage_95", "neg_width_95"]
    for name in names:
        assert results[f"test_{name}"].shape == (2,)
        assert np.all(np.isfinite(results[f"test_{name}"]))

    # The first split by hand gives the same scores.
    train, test = next(cv.split(X))
    by_hand = clone(pipe).fit(X[train], y[train])
    for name, scorer in dist_scorers().items():
        assert_allclose(
            results[f"test_{name}"][0], scorer(by_hand, X[test], y[test]), rtol=1e-6
        )

    search = GridSearchCV(
        pipe,
        {"multiswagregressor__lr": [SMALL["lr"]]},
        scoring=neg_nll_scorer,
        cv=cv,
        refit=False,
    ).fit(X, y)
    assert_allclose(
        [search.cv_results_[f"split{i}_test_score"][0] for i in range(2)],
        results["test_neg_nll"],
        rtol=1e-6,
    )

    scores = cross_val_score(pipe, X, y, cv=cv, scoring=neg_crps_scorer)
    assert_allclose(scores, results["test_neg_crps"], rtol=1e-6)


def test_scorer_on_multi_output_regressor(data):
    X, y = data
    Y = np.stack([y, 2 * y], axis=1)
    reg = MultiSWAGRegressor(**SMALL).fit(X, Y)
    dist = reg.predict_dist(X)
    assert_allclose(neg_nll_scorer(reg, X, Y), -mean_negative_log_likelihood(Y, dist))
    assert_allclose(neg_crps_scorer(reg, X, Y), -mean_crps(Y, dist))


def test_scorers_pickle(fitted, data):
    _, y = data
    _, reg, X_scaled = fitted
    for name, scorer in _all_scorers().items():
        loaded = pickle.loads(pickle.dumps(scorer))
        assert repr(loaded) == repr(scorer)
        assert loaded(reg, X_scaled, y) == scorer(reg, X_scaled, y), name


def test_scorer_sample_weight(fitted, data):
    _, y = data
    _, reg, X_scaled = fitted
    dist = reg.predict_dist(X_scaled)
    weights = np.random.RandomState(12).uniform(0.0, 2.0, size=len(y))
    weighted = neg_nll_scorer(reg, X_scaled, y, sample_weight=weights)
    expected = -mean_negative_log_likelihood(y, dist, sample_weight=weights)
    assert_allclose(weighted, expected, rtol=1e-12)
    assert not np.isclose(weighted, neg_nll_scorer(reg, X_scaled, y))

    # The dict form, as scikit-learn's multi-metric scorer calls it.
    multi = check_scoring(reg, scoring=dist_scorers(0.9))
    scores = multi(reg, X_scaled, y, sample_weight=weights)
    for name, scorer in dist_scorers(0.9).items():
        value = scorer(reg, X_scaled, y, sample_weight=weights)
        assert_allclose(scores[name], value, rtol=1e-12, err_msg=name)
    assert not np.isclose(scores["neg_crps"], neg_crps_scorer(reg, X_scaled, y))


def test_scorer_needs_predict_dist(data):
    X, y = data
    linear = LinearRegression().fit(X, y)
    with pytest.raises(TypeError, match="^LinearRegression has no predict_dist"):
        neg_nll_scorer(linear, X, y)
    pipe = make_pipeline(StandardScaler(), LinearRegression()).fit(X, y)
    match = "last step of this Pipeline, LinearRegression, has no predict_dist"
    with pytest.raises(TypeError, match=match):
        neg_crps_scorer(pipe, X, y)


def test_scorer_repr():
    assert repr(neg_nll_scorer) == (
        "make_dist_scorer(mean_negative_log_likelihood, greater_is_better=False)"
    )
    assert (
        repr(neg_crps_scorer) == "make_dist_scorer(mean_crps, greater_is_better=False)"
    )
    assert repr(make_dist_scorer(interval_coverage, confidence=0.8)) == (
        "make_dist_scorer(interval_coverage, confidence=0.8)"
    )
    assert repr(dist_scorers(0.9)["neg_width_90"]) == (
        "make_dist_scorer(mean_interval_width, greater_is_better=False, confidence=0.9)"
    )


@pytest.mark.parametrize(
    "confidence, suffix", [(0.95, "95"), (0.9, "90"), (0.975, "97.5"), (0.5, "50")]
)
def test_dist_scorers_names(confidence, suffix):
    scorers = dist_scorers(confidence)
    assert list(scorers) == [
        "neg_nll",
        "neg_crps",
        f"coverage_{suffix}",
        f"neg_width_{suffix}",
    ]
    assert scorers["neg_nll"] is neg_nll_scorer
    assert scorers["neg_crps"] is neg_crps_scorer


def test_dist_scorers_coverage_is_not_negated_and_width_is():
    dist, y, means, scales = _mixture(n_points=30, seed=13)

    class Fixed:
        """A fitted 'estimator' that predicts a fixed distribution."""

        def predict_dist(self, X):
            return dist

    scorers = dist_scorers(0.8)
    coverage = interval_coverage(y, dist, 0.8)
    assert 0 < coverage < 1
    assert scorers["coverage_80"](Fixed(), None, y) == coverage
    width = mean_interval_width(y, dist, 0.8)
    assert width > 0
    assert scorers["neg_width_80"](Fixed(), None, y) == -width


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.2])
def test_dist_scorers_check_confidence(confidence):
    with pytest.raises(ValueError, match="confidence"):
        dist_scorers(confidence)


def test_make_dist_scorer_needs_a_callable():
    with pytest.raises(TypeError, match="metric must be callable"):
        make_dist_scorer("mean_crps")
