"""Training one group of particles."""

from unittest import mock

import numpy as np
import torch


def test_a_tiny_network_trains_on_one_thread(regression_data, fast_params):
    from sklearn_swag import MultiSWAGRegressor
    from sklearn_swag._training.callbacks import SWAGCollector

    seen = []
    original = SWAGCollector.on_epoch_end

    def record(self, net, **kwargs):
        seen.append(torch.get_num_threads())
        original(self, net, **kwargs)

    X, y = regression_data
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with mock.patch.object(SWAGCollector, "on_epoch_end", record):
            MultiSWAGRegressor(**fast_params).fit(X, y)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(threads)
    assert set(seen) == {1}


def test_read_only_rows_train_without_a_warning_or_a_copy():
    # A process-based joblib backend hands large arrays over as read-only
    # memory maps.
    import warnings

    from sklearn_swag._training.group import _read_only_tensor

    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    values.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = _read_only_tensor(values, torch.device("cpu"))
    assert tensor.data_ptr() == values.ctypes.data
