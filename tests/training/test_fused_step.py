"""The optimizer's step by its fused kernel alone: the same step, or none."""

import warnings
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook
from training_plans import particle_seeds, small_plan, toy_rows

from sklearn_swag._training import net as net_module
from sklearn_swag._training.fused_step import fused_step
from sklearn_swag._training.group import fit_group

CPU = torch.device("cpu")

OPTIMIZERS = {
    "adam": (torch.optim.Adam, dict(lr=0.05)),
    "adam-decay-amsgrad-maximize": (
        torch.optim.Adam,
        dict(lr=0.05, weight_decay=0.1, amsgrad=True, maximize=True),
    ),
    "adamw": (torch.optim.AdamW, dict(lr=0.05, weight_decay=0.3, betas=(0.8, 0.9))),
    "sgd": (torch.optim.SGD, dict(lr=0.05)),
    "sgd-momentum-nesterov": (
        torch.optim.SGD,
        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    ),
    "sgd-momentum-dampening": (
        torch.optim.SGD,
        dict(lr=0.05, momentum=0.5, dampening=0.2),
    ),
}


def _on_this_torch(optimizer):
    """Whether ``fused_step`` steps ``optimizer``'s class on this torch: the
    groups of older torch versions lack settings it reads (Adam's
    ``decoupled_weight_decay``), and then ``optimizer.step()`` steps."""
    p = nn.Parameter(torch.ones(2))
    opt = optimizer(
        [p],
        lr=0.1,
        fused=True,
        **({"momentum": 0.9} if optimizer is torch.optim.SGD else {}),
    )
    p.grad = torch.ones(2)
    opt.step()
    return fused_step(opt)


needs_kernel = pytest.mark.skipif(
    not _on_this_torch(torch.optim.Adam), reason="this torch steps Adam itself"
)


def _params(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [
        nn.Parameter(torch.randn(3, 7, generator=generator)),
        nn.Parameter(torch.randn(3, 2, generator=generator)),
    ]


def _gradients(n_steps, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(3, 7, generator=generator), torch.randn(3, 2, generator=generator)]
        for _ in range(n_steps)
    ]


def _run(optimizer, kwargs, step, n_steps=6):
    """Parameters and state after ``n_steps``, stepping with ``step(opt)``;
    the learning rate changes half-way, as a schedule changes it."""
    params = _params()
    opt = optimizer(params, fused=True, **kwargs)
    taken = []
    for i, grads in enumerate(_gradients(n_steps)):
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        if i == n_steps // 2:
            opt.param_groups[0]["lr"] *= 0.5
        taken.append(step(opt))
    return params, opt.state_dict()["state"], taken


def _by_kernel(opt):
    if fused_step(opt):
        return True
    opt.step()
    return False


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_the_kernel_alone_steps_bit_for_bit_as_the_optimizer(name):
    optimizer, kwargs = OPTIMIZERS[name]
    expected, expected_state, _ = _run(optimizer, kwargs, lambda opt: opt.step())
    got, got_state, taken = _run(optimizer, kwargs, _by_kernel)
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a, b)
    for index, entry in expected_state.items():
        for key, value in entry.items():
            assert torch.equal(
                torch.as_tensor(value), torch.as_tensor(got_state[index][key])
            )
    if not _on_this_torch(optimizer):
        assert not any(taken)
        return
    plain_sgd = optimizer is torch.optim.SGD and not kwargs.get("momentum")
    # The first step makes the optimizer's state (none for plain SGD).
    assert taken == [plain_sgd] + [True] * (len(taken) - 1)


def _stepped(opt):
    """An optimizer that has taken one step, with fresh gradients."""
    for p in opt.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    opt.step()
    return opt


def _unchanged_when_refused(opt):
    params = [p.detach().clone() for p in opt.param_groups[0]["params"]]
    assert fused_step(opt) is False
    for before, p in zip(params, opt.param_groups[0]["params"], strict=True):
        assert torch.equal(before, p.detach())


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: torch.optim.Adam(p, lr=0.1), id="not-fused"),
        pytest.param(lambda p: torch.optim.Adam(p, lr=0.1, foreach=True), id="foreach"),
        pytest.param(
            lambda p: torch.optim.Adam(p, lr=torch.tensor(0.1), fused=True),
            id="tensor-lr",
        ),
        pytest.param(lambda p: torch.optim.RMSprop(p, lr=0.1), id="rmsprop"),
        pytest.param(
            lambda p: type("MyAdam", (torch.optim.Adam,), {})(p, lr=0.1, fused=True),
            id="subclass",
        ),
    ],
)
def test_other_optimizers_are_left_to_their_own_step(make):
    _unchanged_when_refused(_stepped(make(_params())))


@needs_kernel
def test_hooks_a_scaler_and_a_replaced_step_are_left_to_torch():
    opt = _stepped(torch.optim.Adam(_params(), lr=0.1, fused=True))
    assert fused_step(opt)
    calls = []
    handle = opt.register_step_pre_hook(lambda *args: calls.append("pre"))
    _unchanged_when_refused(opt)
    handle.remove()
    handle = opt.register_step_post_hook(lambda *args: calls.append("post"))
    _unchanged_when_refused(opt)
    handle.remove()
    handle = register_optimizer_step_pre_hook(lambda *args: calls.append("global"))
    try:
        _unchanged_when_refused(opt)
    finally:
        handle.remove()
    opt.grad_scale = torch.tensor(2.0)
    _unchanged_when_refused(opt)
    del opt.grad_scale
    step = opt.step
    opt.step = lambda *args, **kwargs: step(*args, **kwargs)
    _unchanged_when_refused(opt)
    del opt.step
    assert fused_step(opt)
    assert calls == []  # refusing never calls a hook: torch's step will


def test_parameters_of_two_dtypes_are_left_to_torch():
    params = [
        nn.Parameter(torch.ones(3)),
        nn.Parameter(torch.ones(3, dtype=torch.float64)),
    ]
    _unchanged_when_refused(_stepped(torch.optim.Adam(params, lr=0.1, fused=True)))


def test_a_learning_rate_schedule_sees_the_steps_and_sets_the_rate():
    params = _params()
    opt = torch.optim.Adam(params, lr=0.1, fused=True)
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    reference = _params()
    ref_opt = torch.optim.Adam(reference, lr=0.1, fused=True)
    ref_schedule = torch.optim.lr_scheduler.StepLR(ref_opt, step_size=1, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "lr_scheduler.step() before optimizer.step()"
        for grads in _gradients(4):
            for p, q, g in zip(params, reference, grads, strict=True):
                p.grad, q.grad = g.clone(), g.clone()
            _by_kernel(opt)
            ref_opt.step()
            schedule.step()
            ref_schedule.step()
    for a, b in zip(params, reference, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.SGD])
def test_a_group_trains_the_same_with_and_without_the_kernel_alone(optimizer):
    X, y = toy_rows()
    kwargs = {"momentum": 0.9} if optimizer is torch.optim.SGD else {}
    plan = small_plan(optimizer=optimizer, optimizer_kwargs=kwargs)
    seeds = particle_seeds(2)
    taken = []

    def counted(opt):
        taken.append(fused_step(opt))
        return taken[-1]

    with mock.patch.object(net_module, "fused_step", counted):
        kernel_only = fit_group(plan, X, y, np.arange(2), seeds, CPU)
    assert len(taken) == 21  # 7 epochs of 3 batches
    if _on_this_torch(optimizer):
        assert taken.count(False) == 1  # the first step
    with mock.patch.object(net_module, "fused_step", lambda opt: False):
        through_torch = fit_group(plan, X, y, np.arange(2), seeds, CPU)
    for key in ("mean", "sq_mean", "deviations", "train_loss"):
        np.testing.assert_array_equal(kernel_only[key], through_torch[key])
