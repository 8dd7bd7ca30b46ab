"""Tracing patches nothing that other threads see, and records what fx records."""

import threading

import pytest
import torch
from particle_stacks import TinyNet, _sequential
from torch import fx, nn

from sklearn_swag._network.lowering import LoweringError
from sklearn_swag._network.lowering.tracing import _signature, trace


class _Pausing(nn.Module):
    """Waits in its traced forward until another thread has run a network."""

    events = None

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        if _Pausing.events is not None:
            inside, done = _Pausing.events
            _Pausing.events = None  # once
            inside.set()
            done.wait(30)
        return self.lin(x)


def test_a_network_runs_in_another_thread_while_one_is_traced():
    inside, done = threading.Event(), threading.Event()
    _Pausing.events = (inside, done)
    results = []

    def run_another_network():
        inside.wait(30)
        try:
            other = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
            results.append(other(torch.ones(2, 3)))
            results.append(other[0].weight)
        except Exception as exc:  # noqa: BLE001 - reported below
            results.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run_another_network)
    thread.start()
    graph = trace(_Pausing())
    thread.join()
    assert [type(r) for r in results] == [torch.Tensor, nn.Parameter], results
    assert [n.op for n in graph.nodes] == ["placeholder", "call_module", "output"]


class _DirectParameters(nn.Module):
    """Parameters, a buffer, a tensor constant, a shared layer and methods."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(2, 3))
        self.register_buffer("shift", torch.zeros(2))
        self.scale = torch.tensor(2.0)
        self.shared = nn.Linear(2, 2)
        self.body = nn.Sequential(self.shared, nn.Tanh(), self.shared)

    def forward(self, x):
        h = x @ self.weight.t() + self.shift
        return self.body(h * self.scale).sum(-1, keepdim=True)


@pytest.mark.parametrize("factory", [_sequential, TinyNet, _DirectParameters])
def test_the_trace_is_fx_s_own(factory):
    module = factory()
    classes = [type(m) for m in module.modules()]
    ours = trace(module)
    assert [type(m) for m in module.modules()] == classes  # given back
    assert _signature(ours) == _signature(fx.Tracer().trace(factory()))
    out = fx.GraphModule(module, ours)(torch.ones(4, 3))
    torch.testing.assert_close(out, module(torch.ones(4, 3)))


def test_a_forward_that_cannot_be_traced_keeps_its_classes():
    class Flow(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            return self.lin(x) if x.sum() > 0 else x

    module = Flow()
    with pytest.raises(LoweringError, match="cannot trace Flow"):
        trace(module)
    assert type(module) is Flow and type(module.lin) is nn.Linear
    assert module.training and module.lin.training
