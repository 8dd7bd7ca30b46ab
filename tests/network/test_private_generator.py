"""Random draws from a private generator: the global one is neither used nor reset."""

import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sklearn_swag import _torch_compat
from sklearn_swag._network import private_generator as module
from sklearn_swag._network.private_generator import private_generator


def _draw_everything():
    """Random operations with and without a ``generator`` argument, and layers."""
    t = torch.rand(4)
    return [
        t,
        torch.randn(3),
        torch.randperm(5),
        torch.randint(3, (2,)),
        torch.randint(1, 3, (2,)),
        torch.rand_like(t),
        torch.randn_like(t),
        torch.randint_like(t, 3),
        torch.normal(0.0, 1.0, (3,)),
        torch.bernoulli(t),
        torch.multinomial(t, 2),
        F.dropout(torch.ones(6), 0.5, True),
        torch.empty(3).exponential_(),
        nn.init.orthogonal_(torch.empty(3, 3)),
        nn.init.trunc_normal_(torch.empty(3)),
        nn.init.sparse_(torch.empty(4, 4), 0.5),
        *nn.Sequential(nn.Linear(3, 4), nn.Conv1d(1, 2, 3), nn.Embedding(4, 2))
        .state_dict()
        .values(),
        *nn.LSTM(3, 3).state_dict().values(),
    ]


def test_the_global_generator_is_left_alone():
    state = torch.random.get_rng_state()
    with private_generator(seed=3):
        first = _draw_everything()
    assert torch.equal(torch.random.get_rng_state(), state)
    with private_generator(seed=3):
        again = _draw_everything()
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_generator_passed_explicitly_is_used():
    with private_generator():
        inside = torch.rand(3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(
        inside, torch.rand(3, generator=torch.Generator().manual_seed(5))
    )


def test_other_threads_draw_from_the_global_generator_meanwhile():
    inside, done = threading.Event(), threading.Event()

    def hold():
        with private_generator():
            inside.set()
            done.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert inside.wait(30)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(11)
            got = torch.rand(3)
            expected = torch.rand(3, generator=torch.Generator().manual_seed(11))
    finally:
        done.set()
        thread.join()
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_without_dispatch_modes_the_global_generator_is_borrowed(monkeypatch):
    monkeypatch.setattr(module, "DispatchMode", None)
    state = torch.random.get_rng_state()
    with private_generator(seed=2):
        got = torch.rand(3)
    assert torch.equal(torch.random.get_rng_state(), state)
    expected = torch.rand(3, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "op, expected",
    [
        (torch.ops.aten.randn.default, torch.ops.aten.randn.generator),
        (torch.ops.aten.randint.low, torch.ops.aten.randint.low_generator),
        (torch.ops.aten.uniform_.default, torch.ops.aten.uniform_.default),
        (torch.ops.aten.add.Tensor, None),
    ],
)
def test_the_overload_with_a_generator(op, expected):
    assert module._with_generator(op) is expected


def test_operation_arguments_without_a_schema_are_none():
    assert _torch_compat.op_arguments(object()) == ()
    assert "generator" in _torch_compat.op_arguments(torch.ops.aten.uniform_.default)


def test_draws_like_a_tensor_without_a_generator_overload():
    # torch 2.4 has no rand_like.generator: those draws go in place instead.
    template = torch.zeros(2, 3, dtype=torch.float64)
    aten = torch.ops.aten
    cases = [
        (aten.rand_like.default, (template,)),
        (aten.randn_like.default, (template,)),
        (aten.randint_like.default, (template, 4)),
        (aten.randint_like.low_dtype, (template, 2, 4)),
    ]
    for func, args in cases:
        first = module._drawn_like(func, args, {}, torch.Generator().manual_seed(1))
        again = module._drawn_like(func, args, {}, torch.Generator().manual_seed(1))
        assert first.shape == (2, 3) and first.dtype == torch.float64
        torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert ((first >= 2) & (first < 4)).all()
