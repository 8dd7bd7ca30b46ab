"""The private torch APIs we rely on still exist, and their fallbacks agree.

A failure here after a torch upgrade means torch dropped or moved a private
name: the package then runs on the public fallback in
``sklearn_swag/_torch_compat.py``, which is the one file to update.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sklearn_swag import _torch_compat
from sklearn_swag._torch_compat import (
    GUARDED,
    PADDING_ATTRIBUTE,
    lookup,
    public_reversed_padding,
    reversed_padding,
)


@pytest.mark.parametrize("path", GUARDED)
def test_private_name_still_exists(path):
    assert lookup(path) is not None, (
        f"torch {torch.__version__} has no {path}: _torch_compat now uses its "
        "public fallback"
    )


def test_the_private_objects_are_in_use():
    assert _torch_compat.elu is torch._C._nn.elu
    assert _torch_compat.elu_ is torch._C._nn.elu_
    assert _torch_compat.leaky_relu is torch._C._nn.leaky_relu
    assert _torch_compat.leaky_relu_ is torch._C._nn.leaky_relu_
    assert _torch_compat.BatchNormBase is torch.nn.modules.batchnorm._BatchNorm
    assert _torch_compat.DropoutBase is torch.nn.modules.dropout._DropoutNd
    from torch.utils import _python_dispatch

    assert _torch_compat.DispatchMode is _python_dispatch.TorchDispatchMode


def test_lookup_of_a_missing_name_is_none():
    assert lookup("torch.nn.Linear") is nn.Linear
    assert lookup("torch._C._nn.no_such_function") is None
    assert lookup("torch.no_such_module.anything") is None


def test_fallback_is_used_when_torch_lacks_the_name(monkeypatch):
    monkeypatch.delattr(torch._C._nn, "elu")
    assert _torch_compat._private("torch._C._nn.elu") is F.elu


@pytest.mark.parametrize(
    "path, args",
    [
        ("torch._C._nn.elu", (0.5,)),
        ("torch._C._nn.elu", (2.0,)),
        ("torch._C._nn.elu_", (0.5,)),
        ("torch._C._nn.leaky_relu", (0.01,)),
        ("torch._C._nn.leaky_relu_", (0.2,)),
    ],
)
def test_function_fallbacks_agree(path, args):
    x = torch.randn(4, 7, generator=torch.Generator().manual_seed(0))
    expected = lookup(path)(x.clone(), *args)
    got = x.clone()
    result = GUARDED[path](got, *args)
    torch.testing.assert_close(result, expected, rtol=0, atol=0)
    if path.endswith("_"):  # in place
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


_LAYERS = [
    nn.BatchNorm1d(2),
    nn.BatchNorm2d(2),
    nn.BatchNorm3d(2),
    nn.SyncBatchNorm(2),
    nn.LazyBatchNorm1d(),
    nn.LazyBatchNorm3d(),
    nn.Dropout(),
    nn.Dropout1d(),
    nn.Dropout2d(),
    nn.Dropout3d(),
    nn.AlphaDropout(),
    nn.FeatureAlphaDropout(),
    nn.LayerNorm(2),
    nn.InstanceNorm1d(2),
    nn.Linear(2, 2),
]


@pytest.mark.parametrize(
    "path",
    ["torch.nn.modules.batchnorm._BatchNorm", "torch.nn.modules.dropout._DropoutNd"],
)
def test_base_class_fallbacks_cover_the_same_layers(path):
    for layer in _LAYERS:
        assert isinstance(layer, GUARDED[path]) == isinstance(layer, lookup(path))


_CONVS = [
    nn.Conv1d(2, 3, 3, padding=2, padding_mode="circular"),
    nn.Conv1d(2, 3, 4, padding="same", dilation=2, padding_mode="reflect"),
    nn.Conv2d(2, 3, (3, 5), padding=(1, 2), padding_mode="replicate"),
    nn.Conv2d(2, 3, (2, 5), padding="same", padding_mode="reflect"),
    nn.Conv2d(2, 3, 3, padding="valid", padding_mode="circular"),
    nn.Conv3d(2, 3, (3, 2, 4), padding=(1, 0, 2), padding_mode="zeros"),
    nn.Conv3d(2, 3, (3, 2, 4), padding="same", dilation=(1, 3, 2)),
]


@pytest.mark.parametrize("conv", _CONVS, ids=repr)
def test_conv_padding_attribute_still_exists(conv):
    assert hasattr(conv, PADDING_ATTRIBUTE), (
        f"torch {torch.__version__} convolutions have no {PADDING_ATTRIBUTE}: "
        "_torch_compat.reversed_padding now computes it"
    )
    assert reversed_padding(conv) == tuple(getattr(conv, PADDING_ATTRIBUTE))


@pytest.mark.parametrize("conv", _CONVS, ids=repr)
def test_conv_padding_fallback_agrees(conv):
    assert public_reversed_padding(conv) == tuple(getattr(conv, PADDING_ATTRIBUTE))


def test_conv_padding_fallback_is_used_without_the_attribute():
    conv = nn.Conv2d(2, 3, (2, 5), padding="same", padding_mode="reflect")
    expected = tuple(getattr(conv, PADDING_ATTRIBUTE))
    delattr(conv, PADDING_ATTRIBUTE)
    assert reversed_padding(conv) == expected == (2, 2, 0, 1)
