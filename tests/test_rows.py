"""The training rows: the data's fingerprint, which a warm start checks."""

import hashlib

import numpy as np
import pytest
import torch

from sklearn_swag import MultiSWAGRegressor
from sklearn_swag._rows import _fingerprint, _same_data


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
