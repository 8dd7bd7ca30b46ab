"""Tests of the evaluators: every copy of a stack evaluated in each mode."""

import copy

import pytest
import torch
from particle_stacks import (
    FACTORIES,
    FWD_TOL,
    MODES,
    N_FEATURES,
    N_OUTPUTS,
    N_PARTICLES,
    N_ROWS,
    TinyNet,
    _data,
    _each,
    _Mixing,
    _modules,
    _sequential,
    _stack,
)
from torch import nn

from sklearn_swag._network.evaluators import _as_particle_output
from sklearn_swag._network.stack import ParticleStack


class FlatNet(nn.Module):
    """Returns shape (N,): one output per row."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(N_FEATURES, 1)

    def forward(self, x):
        return self.fc(x).squeeze(-1)


def test_auto_mode():
    assert ParticleStack(_modules(_sequential, 2)).mode == "lowered"
    assert ParticleStack(_modules(TinyNet, 2)).mode == "lowered"
    bn = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    assert ParticleStack([bn]).mode == "lowered"
    assert ParticleStack(_modules(_Mixing, 2)).mode == "vmap"


@pytest.mark.parametrize("mode", MODES)
def test_forward_on_shared_rows(mode):
    modules = _modules(FACTORIES[mode])
    stack = _stack(mode, modules)
    assert stack.mode == mode
    X, _ = _data()
    with torch.no_grad():
        out = stack(X)
    assert out.shape == (N_PARTICLES, N_ROWS, N_OUTPUTS)
    torch.testing.assert_close(out, _each(modules, X), **FWD_TOL)
    # The particles really differ: a stack of one copy would not pass.
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("mode", MODES)
def test_forward_on_per_particle_rows(mode):
    modules = _modules(FACTORIES[mode])
    stack = _stack(mode, modules)
    X = torch.randn(N_PARTICLES, 5, N_FEATURES, generator=torch.Generator())
    with torch.no_grad():
        out = stack(X)
    assert out.shape == (N_PARTICLES, 5, N_OUTPUTS)
    torch.testing.assert_close(out, _each(modules, X), **FWD_TOL)


@pytest.mark.parametrize("mode", ["vmap", "loop"])
def test_one_dimensional_outputs_get_an_output_axis(mode):
    modules = _modules(FlatNet, 3)
    stack = _stack(mode, modules)
    X, _ = _data()
    with torch.no_grad():
        out = stack(X)
        theta_out = stack.functional_forward(stack.flat_weights(), X, torch.arange(3))
    assert out.shape == (3, N_ROWS, 1)
    torch.testing.assert_close(out[..., 0], _each(modules, X), **FWD_TOL)
    torch.testing.assert_close(theta_out, out, **FWD_TOL)


class _AddAxis(TinyNet):
    def forward(self, x):
        return super().forward(x).unsqueeze(-1)  # (N, o, 1)


class _Scalar(TinyNet):
    def forward(self, x):
        return super().forward(x).sum()  # ()


class _FirstRow(TinyNet):
    def forward(self, x):
        return super().forward(x)[:1]  # (1, o) for N rows


@pytest.mark.parametrize("mode", ["vmap", "loop"])
@pytest.mark.parametrize("factory", [_AddAxis, _Scalar, _FirstRow])
def test_bad_output_shape_raises(mode, factory):
    stack = _stack(mode, _modules(factory, 2))
    X, _ = _data()
    with pytest.raises(ValueError, match="n_samples"):
        stack(X)


def test_as_particle_output_shapes():
    assert _as_particle_output(torch.zeros(2, 5), 5).shape == (2, 5, 1)
    assert _as_particle_output(torch.zeros(2, 5, 3), 5).shape == (2, 5, 3)
    for bad in (torch.zeros(2), torch.zeros(2, 5, 3, 1), torch.zeros(2, 4, 3)):
        with pytest.raises(ValueError):
            _as_particle_output(bad, 5)


def test_lowered_path_never_modifies_its_input():
    """Activations run in place inside the network, never on the caller's data."""
    torch.manual_seed(0)
    modules = [nn.Sequential(nn.ELU(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))]
    modules.append(copy.deepcopy(modules[0]))
    stack = ParticleStack(modules)
    assert stack.mode == "lowered"
    X = torch.randn(5, 3)
    before = X.clone()
    out = stack(X)
    assert torch.equal(X, before)
    torch.testing.assert_close(out[0], modules[0](X))
