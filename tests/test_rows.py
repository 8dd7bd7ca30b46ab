"""The training rows: the data's fingerprint, which a warm start checks."""

import hashlib

import numpy as np
import pytest
import torch

from sklearn_swag import MultiSWAGRegressor
from sklearn_swag._rows import _fingerprint, _same_data, _validation_split


def _rows():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(20, 3)).astype(np.float32)
    y = rng.normal(size=(20, 1))
    return X, y, np.ones(20)


def _sha256_of_bytes(*arrays):
    """The digest a model saved before joblib.hash holds."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def test_fingerdigestknows_the_data_in_any_layout_and_tells_other_data():
    X, y, w = _rows()
    digest = _fingerprint(X, y, w)
    assert _fingerprint(np.asfortranarray(X), y.copy(), w) == digest
    changed = X.copy()
    changed[3, 1] += 1e-3
    assert _fingerprint(changed, y, w) != digest
    assert _fingerprint(X, y, 2 * w) != digest
    assert _fingerprint(X.reshape(10, 6), y, w) != digest  # same bytes, other shape


def test_a_fingerdigestsaved_before_joblib_hash_still_matches():
    X, y, w = _rows()
    legacy = _sha256_of_bytes(X, y, w)
    assert _same_data(legacy, _fingerprint(X, y, w), X, y, w)
    assert not _same_data(legacy, _fingerprint(X, y + 1, w), X, y + 1, w)
    assert not _same_data(None, _fingerprint(X, y, w), X, y, w)


def test_warm_start_of_a_model_with_a_former_fingerprint(regression_data, fast_params):
    X, y = regression_data
    reg = MultiSWAGRegressor(**{**fast_params, "n_models": 2, "warm_start": True})
    reg.fit(X, y)
    # The rows the core fingerprints: float32 rows, merged, with their weights.
    y2d = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    rows = reg._prepared_rows(X, y2d, None, torch.nn.MSELoss)
    assert reg._fingerprint == _fingerprint(*rows)
    reg._fingerprint = _sha256_of_bytes(*rows)  # as a model saved before
    reg.set_params(n_models=3).fit(X, y)
    assert len(reg.swag_mean_) == 3
    assert reg._fingerprint == _fingerprint(*rows)
    reg._fingerprint = _sha256_of_bytes(*rows)
    with pytest.raises(ValueError, match="data differ"):
        reg.set_params(n_models=4).fit(X, y + 1)


# -- the held-out split ------------------------------------------------------------
def _old_split(X, fraction, rng, weights):
    """The split by groups of identical rows, unstratified, in plain numpy."""
    _, group = np.unique(X, axis=0, return_inverse=True)
    group = group.reshape(-1)
    sizes = np.bincount(group, weights=weights)
    order = rng.permutation(len(sizes))
    n_taken = int(np.searchsorted(np.cumsum(sizes[order]), fraction * weights.sum()))
    held = np.isin(group, order[: n_taken + 1])
    return np.flatnonzero(~held), np.flatnonzero(held)


def _classes_data(sizes, n_copies=1, seed=0):
    """Rows of classes with ``sizes`` distinct rows each, every row ``n_copies``
    times, shuffled."""
    rng = np.random.RandomState(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    X = rng.normal(size=(len(labels), 3))
    X, labels = np.repeat(X, n_copies, axis=0), np.repeat(labels, n_copies)
    order = rng.permutation(len(labels))
    return X[order], labels[order]


def _held_share(labels, held, weights, label):
    mine = labels == label
    return weights[held][labels[held] == label].sum() / weights[mine].sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unstratified_split_is_unchanged(seed):
    """Without classes (the regressor), the same rows as before for a seed."""
    X, _ = _classes_data([30, 25, 9], n_copies=2, seed=seed)
    weights = np.random.RandomState(seed).uniform(0.5, 2.0, len(X))
    for w in (None, weights):
        got = _validation_split(X, 0.2, np.random.default_rng(seed), w)
        ref = _old_split(
            X, 0.2, np.random.default_rng(seed), np.ones(len(X)) if w is None else w
        )
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.4])
def test_stratified_split_holds_out_each_class_share(fraction):
    sizes = [80, 41, 17, 6, 3, 2]
    X, labels = _classes_data(sizes)
    train, held = _validation_split(
        X, fraction, np.random.default_rng(0), classes=labels
    )
    assert np.array_equal(np.sort(np.concatenate([train, held])), np.arange(len(X)))
    for label, n_rows in enumerate(sizes):
        # The count closest to fraction * n_rows (the lower on a tie), at
        # least 1, never all.
        closest = np.ceil(fraction * n_rows - 0.5)
        expected = int(np.clip(closest, 1, n_rows - 1))
        assert np.sum(labels[held] == label) == expected, label


def test_stratified_split_keeps_copies_of_a_row_together():
    X, labels = _classes_data([40, 20, 5], n_copies=4)
    train, held = _validation_split(X, 0.1, np.random.default_rng(0), classes=labels)
    train_rows = {row.tobytes() for row in X[train]}
    assert not any(row.tobytes() in train_rows for row in X[held])
    for label, n_rows in enumerate([40, 20, 5]):
        expected = 4 * max(1, round(0.1 * n_rows))
        assert np.sum(labels[held] == label) == expected


def test_stratified_split_follows_the_weights():
    """Each class holds out the share of its weight closest to the fraction."""
    X, labels = _classes_data([60, 30, 12])
    weights = np.random.RandomState(1).uniform(0.1, 5.0, len(X))
    train, held = _validation_split(
        X, 0.2, np.random.default_rng(3), weights, classes=labels
    )
    for label in range(3):
        mine = labels == label
        step = weights[mine].max() / weights[mine].sum()
        # Consecutive held-out totals differ by a row's weight at most.
        assert abs(_held_share(labels, held, weights, label) - 0.2) <= step / 2


def test_stratified_split_is_random_and_reproducible():
    X, labels = _classes_data([30, 30])
    first = _validation_split(X, 0.2, np.random.default_rng(0), classes=labels)
    again = _validation_split(X, 0.2, np.random.default_rng(0), classes=labels)
    other = _validation_split(X, 0.2, np.random.default_rng(1), classes=labels)
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_identical_inputs_of_two_classes_stay_together():
    """A row given with two labels is on one side, and both classes still train."""
    X, labels = _classes_data([10, 10])
    X = np.concatenate([X, X[:1], X[:1]])
    labels = np.concatenate([labels, [0, 1]])
    for seed in range(20):
        train, held = _validation_split(
            X, 0.3, np.random.default_rng(seed), classes=labels
        )
        same = np.flatnonzero((X == X[0]).all(axis=1))
        assert set(same) <= set(train) or set(same) <= set(held)
        assert set(labels[train]) == {0, 1}


def test_a_class_with_one_distinct_row_is_not_held_out():
    X, labels = _classes_data([20, 1, 2], n_copies=3)
    train, held = _validation_split(X, 0.1, np.random.default_rng(0), classes=labels)
    assert np.sum(labels[held] == 1) == 0
    assert np.sum(labels[held] == 2) == 3  # one distinct row of two, with copies
    assert set(labels[train]) == {0, 1, 2}


def test_stratified_split_without_any_class_to_hold_out_is_an_error():
    X = np.repeat(np.eye(3), 4, axis=0)  # every class one distinct row
    labels = np.repeat(np.arange(3), 4)
    with pytest.raises(ValueError, match="no class has two distinct rows"):
        _validation_split(X, 0.1, np.random.default_rng(0), classes=labels)
    train, held = _validation_split(X, 0.0, np.random.default_rng(0), classes=labels)
    assert len(train) == 12 and len(held) == 0
