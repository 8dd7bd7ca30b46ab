"""Tests of prediction at arbitrary weights, BatchNorm statistics recomputed."""

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
    ShiftNet,
    _bn_net,
    _data,
    _modules,
    _stack,
)
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from sklearn_swag._network import inference as inference_module
from sklearn_swag._network.stack import ParticleStack


@pytest.mark.parametrize("mode", MODES)
def test_functional_forward_at_own_weights_is_forward(mode):
    stack = _stack(mode, _modules(FACTORIES[mode]))
    X, _ = _data()
    with torch.no_grad():
        out = stack.functional_forward(
            stack.flat_weights(), X, torch.arange(N_PARTICLES)
        )
        torch.testing.assert_close(out, stack(X), **FWD_TOL)


@pytest.mark.parametrize(
    "layers",
    [
        # ELU in place, one input feature (the outer-product first layer)
        lambda: [
            nn.Linear(1, 8),
            nn.ELU(),
            nn.Linear(8, 16),
            nn.ELU(),
            nn.Linear(16, 2),
        ],
        # an activation after the last layer, dropout, an out-of-place activation
        lambda: [
            nn.Linear(N_FEATURES, 16),
            nn.Tanh(),
            nn.Dropout(0.5),
            nn.Linear(16, 4),
            nn.ReLU(),
            nn.Linear(4, N_OUTPUTS),
            nn.Sigmoid(),
        ],
    ],
)
def test_inference_in_blocks_matches_one_batch(monkeypatch, layers):
    """Blocks of weight vectors with reused buffers give the unblocked result."""
    modules = _modules(lambda: nn.Sequential(*layers()))
    stack = _stack("lowered", modules).eval()
    n_in = modules[0][0].in_features
    X = torch.randn(N_ROWS, n_in, generator=torch.Generator().manual_seed(3))
    owners = torch.arange(11) % N_PARTICLES
    theta = stack.flat_weights()[owners]
    theta = theta + 0.3 * torch.randn(theta.shape, generator=torch.Generator())
    with torch.enable_grad():  # the plain path: one batch, fresh tensors
        expected = stack.functional_forward(theta, X, owners).detach()
    # Blocks of 2 and 3 weight vectors; 11 leaves a partial last block.
    for n_block in (2, 3):
        monkeypatch.setattr(
            "sklearn_swag._network.inference._BLOCK_FLOATS", n_block * N_ROWS * 16
        )
        with torch.no_grad():
            out = stack.functional_forward(theta, X, owners)
        assert out.shape == expected.shape
        torch.testing.assert_close(out, expected, **FWD_TOL)


@pytest.mark.parametrize("mode", [*MODES, "vmap-buffers"])
def test_functional_forward_at_arbitrary_weights(mode):
    factory = ShiftNet if mode == "vmap-buffers" else FACTORIES[mode]
    mode = mode.split("-")[0]
    modules = _modules(factory)
    stack = _stack(mode, modules)
    owners = torch.tensor([2, 0, 3, 3, 1])
    g = torch.Generator().manual_seed(1)
    theta = stack.flat_weights()[owners]
    theta = theta + 0.3 * torch.randn(theta.shape, generator=g)
    X, _ = _data()
    expected = []
    for row, owner in zip(theta, owners.tolist(), strict=True):
        ref = copy.deepcopy(modules[owner])  # keeps the owner's buffers
        vector_to_parameters(row, ref.parameters())
        with torch.no_grad():
            expected.append(ref(X))
    with torch.no_grad():
        out = stack.functional_forward(theta, X, owners)
    assert out.shape == (len(owners), N_ROWS, N_OUTPUTS)
    torch.testing.assert_close(out, torch.stack(expected), **FWD_TOL)
    # The stack's own weights are untouched.
    assert torch.equal(
        stack.flat_weights(),
        torch.stack([parameters_to_vector(m.parameters()) for m in modules]),
    )


def test_refreshed_statistics_are_the_cumulative_batch_averages():
    """SWAG's bn_update: reset, then the average over batches of batch statistics."""
    modules = _modules(_bn_net, 2)
    X, _ = _data(n=27)
    for mode in ("lowered", "loop"):
        stack = ParticleStack(copy.deepcopy(modules), mode=mode)
        inference = stack.inference()
        theta = stack.flat_weights()[[1, 0, 1]]
        theta = theta + 0.1 * torch.randn(theta.shape, generator=torch.Generator())
        owners = torch.tensor([1, 0, 1])
        buffers = inference.refreshed_buffers(theta, owners, X, batch_size=13)
        for m, row in enumerate(theta):
            ref = copy.deepcopy(modules[0])
            vector_to_parameters(row, ref.parameters())
            ref.train()
            ref[1].reset_running_stats()
            ref[1].momentum = None
            with torch.no_grad():
                for low, high in [(0, 13), (13, 27)]:  # a last row of one merges
                    ref(X[low:high])
            torch.testing.assert_close(buffers[0][m], ref[1].running_mean)
            torch.testing.assert_close(buffers[1][m], ref[1].running_var)
            assert int(buffers[2][m]) == 2
        # and evaluation with them is the refreshed network in eval mode
        out = inference(theta, X, buffers)
        ref.eval()
        with torch.no_grad():
            torch.testing.assert_close(out[-1], ref(X), **FWD_TOL)


@pytest.mark.parametrize("mode", ["lowered", "loop"])
def test_a_refresh_in_one_batch_is_update_bn_on_every_row(mode, monkeypatch):
    """batch_size=None: the exact statistics over the rows, as a full-batch
    ``update_bn``; beyond the budget, equal batches keep the mean exact."""
    modules = _modules(_bn_net, 2)
    X, _ = _data(n=27)
    stack = ParticleStack(copy.deepcopy(modules), mode=mode)
    inference = stack.inference()
    theta = stack.flat_weights()
    owners = torch.tensor([0, 1])
    refs = []
    for row in theta:
        ref = copy.deepcopy(modules[0])
        vector_to_parameters(row, ref.parameters())
        with torch.no_grad():
            torch.optim.swa_utils.update_bn([X], ref)
        refs.append(ref[1])
    buffers = inference.refreshed_buffers(theta, owners, X, batch_size=None)
    for m, ref in enumerate(refs):
        torch.testing.assert_close(buffers[0][m], ref.running_mean)
        torch.testing.assert_close(buffers[1][m], ref.running_var)
        assert int(buffers[2][m]) == 1
    # A budget of 10 rows: 3 batches of 9 rows, whose means average exactly.
    widest = inference.widest(X)
    monkeypatch.setattr(inference_module, "_BLOCK_FLOATS", 10 * widest)
    buffers = inference.refreshed_buffers(theta, owners, X, batch_size=None)
    for m, ref in enumerate(refs):
        torch.testing.assert_close(buffers[0][m], ref.running_mean)
        assert int(buffers[2][m]) == 3
