"""Scale-out: particle groups on a dask.distributed cluster via joblib's backend."""

import logging
import threading

import joblib
import numpy as np
import pytest
import torch
from conftest import FAST
from numpy.testing import assert_allclose

from sklearn_swag import MultiSWAGRegressor

distributed = pytest.importorskip("distributed")

PARAMS = {
    **FAST,
    "n_models": 4,
    "rank": 3,
    "pretrain_epochs": 40,
    "swag_epochs": 5,
    "n_samples": 3,
    "batch_size": 16,
    "module__hidden_layer_sizes": (8,),
}

#: Seconds a fit on the cluster may take before the test gives up on it. A task
#: result that the cluster cannot send back leaves its future pending forever.
FIT_TIMEOUT = 60


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # Workers give up this soon on a scheduler that has gone away; it
            # also bounds their start-up, which imports torch.
            death_timeout=30,
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _fit_on_dask(reg, X, y):
    """``reg.fit(X, y)`` under the dask backend, failing instead of hanging."""
    outcome = {}

    def fit():
        try:
            # joblib's backend context is per thread: enter it in this one.
            with joblib.parallel_backend("dask"):
                outcome["reg"] = reg.fit(X, y)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    thread.join(FIT_TIMEOUT)
    if thread.is_alive():
        pytest.fail(
            f"fit under the dask backend did not finish in {FIT_TIMEOUT} s; a "
            "task result that dask cannot serialize leaves it waiting forever "
            "(see test_fitted_particles_survive_dask_serialization)."
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["reg"]


def _fitted(reg, X):
    mean, std = reg.predict(X, return_std=True)
    return reg.swag_mean_, reg.swag_deviations_, mean, std


def _assert_same_fit(a, b):
    for got, expected in zip(a, b, strict=True):
        assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_fitted_particles_survive_dask_serialization(regression_data):
    # A group's result travels back from a worker through dask's own
    # serializers, which take torch modules apart attribute by attribute.
    from distributed.protocol import deserialize, serialize

    X, y = regression_data
    params = {**PARAMS, "n_models": 2, "pretrain_epochs": 2, "swag_epochs": 2}
    reg = MultiSWAGRegressor(**params).fit(X, y)
    stack = deserialize(*serialize(reg.particles_))
    assert type(stack) is type(reg.particles_)
    assert_allclose(stack.flat_weights(), reg.particles_.flat_weights())
    with torch.no_grad():
        assert_allclose(stack(torch.as_tensor(X)), reg.particles_(torch.as_tensor(X)))


def test_groups_run_on_the_cluster_and_match_local_fits(client, regression_data):
    X, y = regression_data
    serial = _fitted(MultiSWAGRegressor(n_jobs=1, **PARAMS).fit(X, y), X)
    with joblib.parallel_backend("threading"):
        threads = _fitted(MultiSWAGRegressor(n_jobs=2, **PARAMS).fit(X, y), X)

    with distributed.get_task_stream(client) as stream:
        reg = _fit_on_dask(MultiSWAGRegressor(n_jobs=2, **PARAMS), X, y)

    # Two groups of two particles, one task each, run by the two workers.
    tasks = [t for t in stream.data if "fit_group" in t["key"]]
    assert len(tasks) == 2, [t["key"] for t in stream.data]
    workers = set(client.scheduler_info()["workers"])
    assert {t["worker"] for t in tasks} == workers

    on_dask = _fitted(reg, X)
    _assert_same_fit(threads, serial)
    _assert_same_fit(on_dask, serial)
    assert np.all(reg.n_snapshots_ == PARAMS["swag_epochs"])


def test_classifier_groups_run_on_the_cluster(client):
    from sklearn.datasets import make_blobs

    from sklearn_swag import MultiSWAGClassifier

    X, y = make_blobs(n_samples=60, centers=3, random_state=0)
    labels = np.array(["a", "b", "c"])[y]
    # Groups of the same size round the same: compare with threads.
    with joblib.parallel_backend("threading"):
        serial = MultiSWAGClassifier(n_jobs=2, **PARAMS).fit(X, labels)
    clf = _fit_on_dask(MultiSWAGClassifier(n_jobs=2, **PARAMS), X, labels)
    assert_allclose(clf.swag_mean_, serial.swag_mean_, rtol=1e-6, atol=1e-7)
    assert_allclose(clf.predict_proba(X), serial.predict_proba(X), rtol=1e-5)
    assert (clf.predict(X) == serial.predict(X)).all()
