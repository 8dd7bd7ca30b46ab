"""Checks of a lowered network against its copies run one by one."""

import copy

import torch
from torch.func import stack_module_state

from sklearn_swag._network.lowering import lower

#: Copies and rows of the checks.
M, N = 3, 5


def _copies(factory, m=M, seed=0):
    """``m`` independently initialised copies, the global seed left alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [factory() for _ in range(m)]


def _randn(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _stacked(lowered, nets):
    params, buffers = stack_module_state(nets)
    P = [params[n].detach().clone().requires_grad_() for n in lowered.param_names]
    B = [buffers[n].detach().clone() for n in lowered.buffer_names]
    return P, B


def _compare(
    factory,
    make_x,
    modes=("train", "eval"),
    grad=False,
    atol=1e-5,
    shared=(True, False),
    m=M,
    rtol=1e-4,
    dtype=torch.float32,
):
    """Outputs, gradients and buffers of the lowered network against ``m`` copies.

    For each mode and each kind of input (one shared by every copy, or each
    copy's own), the lowered network runs on the stacked state of fresh copies
    and each copy runs on its input; with ``grad`` the gradients of a random
    weighting of the outputs are compared too. Deep networks with BatchNorm on
    a few rows amplify round-off in training mode: ``dtype=torch.float64``
    compares them to the last bits instead.
    """
    nets = [net.to(dtype) for net in _copies(factory, m)]
    lowered = lower(nets[0])
    for mode in modes:
        for shared_input in shared:
            copies = [copy.deepcopy(net).train(mode == "train") for net in nets]
            P, B = _stacked(lowered, copies)
            x = make_x() if shared_input else torch.stack([make_x(s) for s in range(m)])
            x = x.to(dtype) if x.is_floating_point() else x
            out = lowered(P, B, x, mode=mode, shared_input=shared_input)
            refs = [c(x if shared_input else x[i]) for i, c in enumerate(copies)]
            assert out.shape == (m, *refs[0].shape)
            for i in range(m):
                torch.testing.assert_close(out[i], refs[i], atol=atol, rtol=rtol)
            for j, name in enumerate(lowered.buffer_names):
                for i, c in enumerate(copies):
                    expected = dict(c.named_buffers())[name]
                    torch.testing.assert_close(B[j][i], expected, atol=atol, rtol=rtol)
            if grad:
                w = _randn(*out.shape, seed=7).to(dtype)
                (out * w).sum().backward()
                for i, c in enumerate(copies):
                    (refs[i] * w[i]).sum().backward()
                    own = dict(c.named_parameters())
                    for k, name in enumerate(lowered.param_names):
                        torch.testing.assert_close(
                            P[k].grad[i], own[name].grad, atol=atol, rtol=rtol
                        )
    return lowered


def _features(*shape):
    return lambda seed=1: _randn(N, *shape, seed=seed)
