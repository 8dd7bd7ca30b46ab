"""Common image and sequence networks lowered, against their copies run one by one."""

import copy
import warnings

import numpy as np
import pytest
import torch
from conftest import FAST_USER_NET
from image_networks import (
    VGG,
    PreResNet,
    ResNet,
    SequenceConvNet,
    TokenConvNet,
    resnet18,
    small_vgg11_bn,
    vgg11,
)
from lowering_checks import M, N, _compare, _copies, _features, _stacked
from torch import nn

from sklearn_swag import MultiSWAGClassifier
from sklearn_swag._network.lowering import lower

#: Images as the networks were built for: CIFAR's 3x32x32.
IMAGES = _features(3, 32, 32)
#: Deep networks with BatchNorm on five rows amplify round-off in training
#: mode (relative gradient errors near 1e-5 in float32): they are compared in
#: float64, where the lowered network and its copies agree to the last bits.
EXACT = {"grad": True, "dtype": torch.float64}


def _tokens(seed=1, vocab=20, length=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (N, length), generator=g)


def _without_dropout(factory):
    """``factory`` with every ``Dropout`` at ``p=0``: copies that train alike."""

    def build():
        net = factory()
        for mod in net.modules():
            if isinstance(mod, nn.Dropout):
                mod.p = 0.0
        return net

    return build


def test_resnet18():
    lowered = _compare(resnet18, IMAGES, modes=("train",), m=2, **EXACT)
    assert lowered.has_batch_norm
    assert "layer2.0.downsample.1.running_var" in lowered.buffer_names


def test_resnet18_in_float32():
    _compare(resnet18, IMAGES, modes=("eval",), m=2, grad=True)


def test_preresnet8():
    lowered = _compare(PreResNet, IMAGES, **EXACT)
    assert "layer2.0.downsample.0.weight" in lowered.param_names


def test_preresnet20():
    _compare(lambda: PreResNet(depth=20), IMAGES, m=2, **EXACT)


def test_preresnet20_in_float32():
    # Twenty layers of BatchNorm on five rows are ill-conditioned: in float32
    # any two orders of summation (the copies' convolutions and the lowered
    # network's channels-last ones) give training gradients up to 6e-3 apart,
    # either of them that far from the float64 ones; evaluation stays close.
    _compare(
        lambda: PreResNet(depth=20), IMAGES, modes=("eval",), m=2, grad=True, atol=1e-4
    )


def test_small_vgg11_bn():
    _compare(small_vgg11_bn, IMAGES, modes=("eval",), **EXACT)
    lowered = _compare(_without_dropout(small_vgg11_bn), IMAGES, **EXACT)
    assert lowered.has_batch_norm


class _MaskedDropout(nn.Module):
    """Dropout whose masks are drawn from ``generator`` as the lowered network's."""

    def __init__(self, p, generator):
        super().__init__()
        self.p, self.generator = p, generator

    def forward(self, x):
        keep = torch.rand(x.shape, generator=self.generator).ge(self.p)
        return x * keep / (1.0 - self.p)


def test_small_vgg11_bn_dropout_masks_come_from_each_copys_generator():
    nets = _copies(small_vgg11_bn)
    lowered = lower(nets[0])
    P, B = _stacked(lowered, nets)
    x = IMAGES()
    seeds = [10 + i for i in range(M)]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    out = lowered(P, B, x, mode="train", shared_input=True, generators=gens)
    for i, net in enumerate(nets):
        ref = copy.deepcopy(net).train()
        generator = torch.Generator().manual_seed(seeds[i])
        for k in (2, 5):
            ref.classifier[k] = _MaskedDropout(0.5, generator)
        torch.testing.assert_close(out[i], ref(x), atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_vgg11_full_width():
    # 129 million parameters a copy: two copies, one shared input, and still
    # about a minute and 9 GB on a CPU; small_vgg11_bn is the everyday check.
    _compare(_without_dropout(vgg11), IMAGES, grad=True, m=2, shared=(True,))


def test_token_conv_net():
    _compare(TokenConvNet, _tokens, grad=True)


def test_sequence_conv_net():
    _compare(SequenceConvNet, _features(7, 2), grad=True)


#: Two particles, one epoch of each phase, two draws: a fit on a few rows.
TINY_FIT = {
    **FAST_USER_NET,
    "n_models": 2,
    "rank": 2,
    "pretrain_epochs": 1,
    "swag_epochs": 1,
    "n_samples": 2,
    "batch_size": 4,
    "lr": 0.01,
}


@pytest.mark.parametrize(
    "module, kwargs, shape",
    [
        # ResNet-18's layout at a quarter of its widths: at full width the
        # SWAG moments of 11 million weights take most of the fit.
        (ResNet, {"num_classes": 2, "width": 16}, (3, 32, 32)),
        (PreResNet, {"num_classes": 2}, (3, 32, 32)),
        (
            VGG,
            {
                "num_classes": 2,
                "batch_norm": True,
                "hidden": 16,
                "pool": 2,
                "scale": 16,
            },
            (3, 32, 32),
        ),
        (SequenceConvNet, {"n_outputs": 2}, (7, 2)),
    ],
    ids=["resnet18-narrow", "preresnet8", "small-vgg11-bn", "sequence"],
)
def test_classifier_fits_and_predicts_without_fallback(module, kwargs, shape):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, *shape)).astype(np.float32)
    y = np.arange(8) % 2
    params = {f"module__{k}": v for k, v in kwargs.items()}
    clf = MultiSWAGClassifier(module=module, **params, **TINY_FIT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback of the batched rewrite
        clf.fit(X, y)
        proba = clf.predict_proba(X[:3])
    assert proba.shape == (3, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
