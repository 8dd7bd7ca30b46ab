"""Groups and devices of the particles."""

from unittest import mock

import numpy as np
import pytest
import torch

from sklearn_swag._training.devices import (
    check_device,
    group_devices,
    partition,
    resolve_devices,
)


@pytest.mark.parametrize("n_models, n_jobs", [(1, 1), (5, 2), (16, 3), (3, 8)])
def test_partition_covers_every_particle_once_in_order(n_models, n_jobs):
    groups = partition(n_models, n_jobs)
    assert len(groups) == min(n_models, n_jobs)
    np.testing.assert_array_equal(np.concatenate(groups), np.arange(n_models))
    sizes = [len(g) for g in groups]
    assert max(sizes) - min(sizes) <= 1


def test_check_device_cpu_and_errors():
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a torch device"):
        check_device("gpu")
    with mock.patch("torch.cuda.is_available", return_value=False):
        with pytest.raises(ValueError, match="CUDA is not available"):
            check_device("cuda")


def test_check_device_cuda_index_must_exist():
    with (
        mock.patch("torch.cuda.is_available", return_value=True),
        mock.patch("torch.cuda.device_count", return_value=2),
    ):
        assert check_device("cuda:1") == torch.device("cuda", 1)
        with pytest.raises(ValueError, match="2 CUDA device"):
            check_device("cuda:2")


def test_devices_resolve_and_go_round_robin():
    with (
        mock.patch("torch.cuda.is_available", return_value=True),
        mock.patch("torch.cuda.device_count", return_value=2),
    ):
        gpus = resolve_devices("cuda")
        assert gpus == [torch.device("cuda", 0), torch.device("cuda", 1)]
        assert [d.index for d in group_devices(gpus, 5)] == [0, 1, 0, 1, 0]
        listed = resolve_devices(["cuda:1", "cpu"])
        assert group_devices(listed, 3) == [
            torch.device("cuda", 1),
            torch.device("cpu"),
            torch.device("cuda", 1),
        ]
        with pytest.raises(ValueError, match="2 CUDA device"):
            resolve_devices(["cuda:0", "cuda:5"])
    assert group_devices(resolve_devices("cpu"), 2) == [torch.device("cpu")] * 2
    with pytest.raises(ValueError, match="at least one device"):
        resolve_devices([])
