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
from sklearn_swag._network.lowering import UnforeseenLoweringError, strict
from sklearn_swag._network.lowering.registry import MODULE_RULES
from sklearn_swag._network.stack import ParticleStack


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


def test_the_suite_runs_in_strict_mode():
    assert strict()  # tests/conftest.py sets SKLEARN_SWAG_STRICT


def _broken_rule(lw, node, mod):
    raise IndexError("a bug of the rule")


def test_a_rewrite_that_fails_unforeseen_is_an_error_in_strict_mode(monkeypatch):
    monkeypatch.setitem(MODULE_RULES, nn.Linear, _broken_rule)
    X, _ = _data()
    monkeypatch.setenv("SKLEARN_SWAG_STRICT", "1")
    with pytest.raises(RuntimeError, match="Strict mode.*IndexError: a bug") as info:
        build_stack(_modules(_sequential, 2), X[:8])
    assert isinstance(info.value.__cause__, UnforeseenLoweringError)
    with pytest.raises(UnforeseenLoweringError, match="IndexError: a bug"):
        ParticleStack(_modules(_sequential, 2), mode="auto")
    monkeypatch.setenv("SKLEARN_SWAG_STRICT", "0")  # as users run it
    with pytest.warns(UserWarning, match="IndexError: a bug.*vmap instead"):
        assert build_stack(_modules(_sequential, 2), X[:8]).mode == "vmap"
    assert ParticleStack(_modules(_sequential, 2), mode="auto").mode == "vmap"


def test_a_rewrite_that_disagrees_is_an_error_in_strict_mode(monkeypatch):
    # ELU lowered as the identity: the rewrite runs, but computes another network.
    monkeypatch.setitem(MODULE_RULES, nn.ELU, lambda lw, node, mod: lw.v(node.args[0]))
    X, _ = _data()
    monkeypatch.setenv("SKLEARN_SWAG_STRICT", "1")
    with pytest.raises(RuntimeError, match="Strict mode.*disagrees"):
        build_stack(_modules(_sequential, 2), X[:8])
    monkeypatch.setenv("SKLEARN_SWAG_STRICT", "0")
    with pytest.warns(UserWarning, match="disagrees.*vmap instead"):
        assert build_stack(_modules(_sequential, 2), X[:8]).mode == "vmap"


class _Fails(TinyNet):
    def forward(self, x):
        raise ValueError("the network's own failure")


class _FailsInTraining(TinyNet):
    def forward(self, x):
        if self.training:
            raise RuntimeError("the network's own failure in training")
        return super().forward(x)


@pytest.mark.parametrize("strict_mode", ["0", "1"])
@pytest.mark.parametrize(
    "factory, error", [(_Fails, ValueError), (_FailsInTraining, RuntimeError)]
)
def test_a_failure_of_the_network_itself_is_not_a_fallback(
    factory, error, strict_mode, monkeypatch
):
    monkeypatch.setenv("SKLEARN_SWAG_STRICT", strict_mode)
    X, _ = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "slower" warning either
        with pytest.raises(error, match="the network's own failure"):
            build_stack(_modules(factory, 2), X[:8])
