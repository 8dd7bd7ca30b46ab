"""The optimizer's flat parameter over a particle stack."""

from unittest import mock

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback, Freezer
from torch import nn
from training_plans import particle_seeds, small_plan, toy_rows

from sklearn_swag._network.build import build_stack
from sklearn_swag._network.losses import ParticleLoss
from sklearn_swag._training import net as net_module
from sklearn_swag._training.flat import FlatParameters
from sklearn_swag._training.group import fit_group

CPU = torch.device("cpu")
needs_switch = pytest.mark.skipif(
    FlatParameters.applies([nn.Parameter(torch.zeros(2, 1))]) is False,
    reason="torch without the gradient layout switch keeps the parameters apart",
)


def _stack(n_particles=3):
    torch.manual_seed(0)
    modules = [
        nn.Sequential(nn.Linear(2, 5), nn.ELU(), nn.Linear(5, 1))
        for _ in range(n_particles)
    ]
    return build_stack(modules, torch.zeros(4, 2))


@needs_switch
def test_attach_shares_the_weights_and_release_gives_them_back():
    stack = _stack()
    before = stack.flat_weights().clone()
    params = list(stack.parameters())
    flat = FlatParameters(params)
    try:
        flat.attach()
        assert flat.attached
        # The rows are the particles' flat weight vectors, in the stack's order,
        # then zeros up to a multiple of 16.
        n = stack.n_params
        assert flat.param.shape == (3, 32) and n == 21
        torch.testing.assert_close(flat.weights(), before, rtol=0, atol=0)
        assert not flat.param[:, n:].any()
        with torch.no_grad():
            flat.param[1].add_(1.0)  # the optimizer's step reaches the stack
        torch.testing.assert_close(stack.flat_weights()[1], before[1] + 1.0)
        # The backward pass writes the gradients into the flat gradient.
        flat.zero_grad()
        stack(torch.ones(4, 2)).sum().backward()
        grads = torch.cat([p.grad.reshape(3, -1) for p in params], dim=1)
        torch.testing.assert_close(flat.param.grad[:, :n], grads, rtol=0, atol=0)
        assert flat.param.grad[:, :n].abs().sum() > 0
        assert not flat.param.grad[:, n:].any()
    finally:
        flat.release()  # whatever failed: torch's layout check back on
    assert not flat.attached
    assert torch._C._is_grad_layout_enforcement_enabled()
    for p in params:
        assert p.grad is None and p.is_contiguous()
        start = flat.param.data_ptr()
        end = start + flat.param.numel() * flat.param.element_size()
        assert not start <= p.data_ptr() < end  # its own memory again
    torch.testing.assert_close(stack.flat_weights()[1], before[1] + 1.0)
    flat.attach()  # again, from the weights as they are now
    torch.testing.assert_close(flat.weights()[1], before[1] + 1.0)
    flat.release()


@needs_switch
def test_zero_grad_puts_back_a_gradient_set_to_none():
    stack = _stack()
    params = list(stack.parameters())
    flat = FlatParameters(params)
    flat.attach()
    try:
        params[0].grad = None  # a user's callback, say
        flat.zero_grad()
        stack(torch.ones(4, 2)).sum().backward()
        assert flat.param.grad[:, : params[0][0].numel()].abs().sum() > 0
    finally:
        flat.release()


def test_applies_only_to_trained_parameters_of_one_kind():
    a = nn.Parameter(torch.zeros(3, 2))
    assert not FlatParameters.applies([])
    assert not FlatParameters.applies([a, nn.Parameter(torch.zeros(3, 2).double())])
    assert not FlatParameters.applies([a, nn.Parameter(torch.zeros(2, 2))])
    frozen = nn.Parameter(torch.zeros(3, 2), requires_grad=False)
    assert not FlatParameters.applies([a, frozen])


class _GradientLogger(Callback):
    def on_grad_computed(self, net, named_parameters, **kwargs):
        pass


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({}, True),
        ({"callbacks": [Freezer("*0.weight")]}, False),
        ({"callbacks": [("log", _GradientLogger())]}, False),
        ({"optimizer_kwargs": {"param_groups": [("*", {"lr": 0.1})]}}, False),
    ],
)
@needs_switch
def test_flat_where_nothing_looks_at_parameters_one_by_one(overrides, expected):
    plan = small_plan(**overrides)
    stack = _stack()
    net = net_module._group_net(
        plan, stack, ParticleLoss(plan.build_criterion()), CPU, plan.callbacks, 1
    )
    net.initialize()
    assert (net.flat_ is not None) is expected


def test_a_stack_evaluated_in_a_loop_is_never_flattened():
    stack = _stack()
    loop = type(stack)(
        [nn.Sequential(nn.Linear(2, 5), nn.ELU(), nn.Linear(5, 1))], mode="loop"
    )
    assert net_module._may_flatten(small_plan(), stack)
    assert not net_module._may_flatten(small_plan(), loop)


@needs_switch
@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.SGD])
def test_training_flat_is_training_apart(optimizer):
    """The flat parameter changes where the weights sit, not one update."""
    plan = small_plan(optimizer=optimizer, optimizer_kwargs={"weight_decay": 1e-3})
    X, y = toy_rows()
    seeds = particle_seeds(2)
    used = []
    original = net_module._GroupNet.initialize_optimizer

    def record(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        used.append(self.flat_ is not None)
        return out

    results = {}
    for flatten in (True, False):
        with (
            mock.patch.object(net_module, "_may_flatten", lambda *a, f=flatten: f),
            mock.patch.object(net_module._GroupNet, "initialize_optimizer", record),
        ):
            results[flatten] = fit_group(plan, X, y, np.array([0, 1]), seeds, CPU)
    assert used == [True, False]
    for key in ("mean", "sq_mean", "deviations", "train_loss"):
        # Equal up to rounding: the fused optimizer rounds the elements past its
        # last full vector of a tensor its own way, and which elements those are
        # differs between one tensor and six.
        np.testing.assert_allclose(
            results[True][key], results[False][key], rtol=1e-6, atol=1e-7
        )
    assert np.abs(results[True]["mean"]).sum() > 0


@needs_switch
def test_a_particle_trains_the_same_in_groups_of_any_size():
    """Rows of whole vectors: each particle's updates do not depend on how many
    particles share the flat tensor (41 weights a particle, rows of 48)."""
    plan = small_plan(module_kwargs={"hidden_layer_sizes": (8,)}, n_features=3)
    X, y = toy_rows()
    X = np.hstack([X, X[:, :1] ** 2])
    seeds = particle_seeds(4)
    whole = fit_group(plan, X, y, np.arange(4), seeds, CPU)
    assert whole["mean"].shape == (4, 41)
    for part in (slice(0, 2), slice(2, 4)):
        alone = fit_group(plan, X, y, np.arange(4)[part], seeds[part], CPU)
        for key in ("mean", "sq_mean", "deviations"):
            np.testing.assert_array_equal(whole[key][part], alone[key])
