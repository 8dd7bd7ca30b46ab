"""Tests of the particle stack: a group of networks held and trained as one.

The reference everywhere is the plain thing: each network on its own, with its
own optimizer, its own loss and its own batches.
"""

import copy
import warnings

import pytest
import torch
from particle_stacks import (
    FACTORIES,
    FWD_TOL,
    MODES,
    ShiftNet,
    _assert_same_weights,
    _bn_net,
    _data,
    _DropoutNet,
    _each,
    _modules,
    _sequential,
    _stack,
    _train_single,
    _train_stack,
)
from torch import nn
from torch.nn.utils import parameters_to_vector

from sklearn_swag._network.build import build_stack
from sklearn_swag._network.stack import ParticleStack

# -- flat weights -----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_flat_weights_and_unflatten(mode):
    modules = _modules(FACTORIES[mode])
    stack = _stack(mode, modules)
    flat = stack.flat_weights()
    expected = torch.stack([parameters_to_vector(m.parameters()) for m in modules])
    assert stack.n_params == expected.shape[1]
    assert torch.equal(flat, expected)
    assert not flat.requires_grad
    pieces = stack.unflatten(flat)
    for piece, params in zip(
        pieces, zip(*(m.parameters() for m in modules), strict=True), strict=True
    ):
        assert torch.equal(piece, torch.stack([p.detach() for p in params]))
    # unflatten is the inverse of flattening, for any number of rows.
    theta = torch.randn(7, stack.n_params, generator=torch.Generator())
    rebuilt = torch.cat([p.reshape(7, -1) for p in stack.unflatten(theta)], dim=1)
    assert torch.equal(rebuilt, theta)


# -- joining stacks ---------------------------------------------------------------


@pytest.mark.parametrize("mode", [*MODES, "vmap-buffers"])
def test_concatenate_equals_one_stack(mode):
    factory = ShiftNet if mode == "vmap-buffers" else FACTORIES[mode]
    mode = mode.split("-")[0]
    modules = _modules(factory, 5)
    whole = _stack(mode, modules)
    joined = ParticleStack.concatenate(
        [_stack(mode, modules[:2]), _stack(mode, modules[2:])]
    )
    assert joined.mode == mode
    assert joined.n_particles == 5
    assert joined.n_params == whole.n_params
    assert torch.equal(joined.flat_weights(), whole.flat_weights())
    X, _ = _data()
    with torch.no_grad():
        torch.testing.assert_close(joined(X), whole(X), **FWD_TOL)
        torch.testing.assert_close(joined(X), _each(modules, X), **FWD_TOL)
        owners = torch.tensor([4, 0, 2])
        torch.testing.assert_close(
            joined.functional_forward(whole.flat_weights()[owners], X, owners),
            whole.functional_forward(whole.flat_weights()[owners], X, owners),
            **FWD_TOL,
        )
    # The joined weights are trainable parameters of their own.
    assert sum(p.numel() for p in joined.parameters()) == 5 * whole.n_params


@pytest.mark.parametrize("mode", MODES)
def test_concatenate_leaves_its_inputs_independent(mode):
    factory = _DropoutNet if mode == "vmap" else _sequential
    modules = _modules(factory, 4)
    if mode != "vmap":
        modules = [nn.Sequential(*m, nn.Dropout(0.5)) for m in modules]
    first, second = _stack(mode, modules[:2]), _stack(mode, modules[2:])
    second.eval()
    joined = ParticleStack.concatenate([first, second])
    assert joined.training == first.training
    X, _ = _data()
    with torch.no_grad():
        assert not torch.equal(joined(X), joined(X))  # dropout on, as in `first`
        joined.eval()
        assert first.training
        assert not torch.equal(first(X), first(X))  # still dropout on
        assert torch.equal(joined(X), joined(X))


def test_concatenate_rejects_mixed_modes():
    modules = _modules(_sequential, 2)
    with pytest.raises(ValueError):
        ParticleStack.concatenate(
            [_stack("lowered", modules[:1]), _stack("loop", modules[1:])]
        )


@pytest.mark.parametrize("mode", ["lowered", "loop"])
def test_batch_norm_trains_each_copy_on_its_own(mode):
    modules = _modules(_bn_net, 3)
    reference = copy.deepcopy(modules)
    X, y = _data()
    if mode == "lowered":
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # batched: no fallback warning
            stack = build_stack(modules, X[:8])
    else:
        stack = ParticleStack(modules, mode="loop")
    assert stack.mode == mode and stack.has_batch_norm
    _train_stack(stack, [(X, y)] * 20, lr=0.01)
    for module in reference:
        _train_single(module, [(X, y)] * 20, lr=0.01)
    _assert_same_weights(stack, reference)
    # The running statistics are each copy's own, updated as on its own ...
    names = [name for name, _ in reference[0].named_buffers()]
    for name, stacked in zip(names, stack.stacked_buffers(), strict=True):
        expected = torch.stack([dict(m.named_buffers())[name] for m in reference])
        torch.testing.assert_close(stacked, expected)
    # ... so predictions in eval mode, which use them, agree too.
    stack.eval()
    for module in reference:
        module.eval()
    with torch.no_grad():
        torch.testing.assert_close(stack(X), _each(reference, X), **FWD_TOL)


# -- training equivalence ---------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_full_batch_training_equals_separate_networks(mode):
    modules = _modules(FACTORIES[mode])
    stack = _stack(mode, modules)
    X, y = _data()
    before = stack.flat_weights()
    _train_stack(stack, [(X, y)] * 30, lr=0.01)
    for module in modules:
        _train_single(module, [(X, y)] * 30, lr=0.01)
    _assert_same_weights(stack, modules)
    # Training moved every particle by much more than the tolerance.
    assert (stack.flat_weights() - before).abs().amax(dim=1).min() > 0.05
