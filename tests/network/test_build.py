"""Tests of the choice of a stack's evaluation, with its fallbacks."""

import warnings

import pytest
import torch
from particle_stacks import (
    N_FEATURES,
    ShiftNet,
    TinyNet,
    _bn_net,
    _data,
    _DropoutNet,
    _Mixing,
    _modules,
    _sequential,
)
from torch import nn

from sklearn_swag._network.build import build_stack


class _Counting(TinyNet):
    """Data-dependent control flow that neither tracing nor vmap handles."""

    def forward(self, x):
        h = super().forward(x)
        return h * 2 if bool(h.sum() > 0) else h


@pytest.mark.parametrize("factory", [_sequential, TinyNet, ShiftNet])
def test_build_stack_batches_what_it_can(factory):
    X, _ = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build_stack(_modules(factory, 2), X[:8]).mode == "lowered"


def test_build_stack_falls_back_to_vmap_with_a_warning():
    X, _ = _data()
    with pytest.warns(UserWarning, match="torch.func.vmap instead"):
        stack = build_stack(_modules(_Mixing, 2), X[:8])
    assert stack.mode == "vmap"


@pytest.mark.parametrize(
    "factory",
    [_DropoutNet, lambda: _bn_net(dropout=True)],
    ids=["vmap-dropout", "batchnorm-dropout"],
)
def test_build_stack_leaves_the_global_seed_alone(factory):
    modules = _modules(factory, 2)
    X, _ = _data()
    state = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_stack(modules, X[:8])
    assert torch.equal(torch.get_rng_state(), state)


def test_build_stack_falls_back_to_a_loop_for_buffers_vmap_loses():
    """A network that cannot be rewritten, with BatchNorm: copy by copy."""

    class Net(_Counting):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm1d(N_FEATURES)

        def forward(self, x):
            return super().forward(self.norm(x))

    X, _ = _data()
    with pytest.warns(UserWarning, match="one after another"):
        stack = build_stack(_modules(Net, 2), X[:8])
    assert stack.mode == "loop"
