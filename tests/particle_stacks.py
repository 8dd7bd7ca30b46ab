"""Small networks, data and training loops shared by the particle-stack tests.

The reference everywhere is the plain thing: each network on its own, with its
own optimizer, its own loss and its own batches.
"""

import copy

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parameters_to_vector

from sklearn_swag._network.losses import ParticleLoss
from sklearn_swag._network.stack import ParticleStack

N_PARTICLES, N_FEATURES, N_OUTPUTS, N_ROWS = 4, 3, 2, 32
MODES = ["lowered", "vmap", "loop"]
# float32 networks of width 16 with O(1) outputs: a batched matmul and a plain
# ``nn.Linear`` agree to a few ulps.
FWD_TOL = dict(rtol=1e-5, atol=1e-6)


class TinyNet(nn.Module):
    """A 3-16-16-2 ELU network written as a class, so it is not an MLP chain."""

    def __init__(self, n_in=N_FEATURES, n_out=N_OUTPUTS):
        super().__init__()
        self.fc1 = nn.Linear(n_in, 16)
        self.fc2 = nn.Linear(16, 16)
        self.out = nn.Linear(16, n_out)

    def forward(self, x):
        return self.out(F.elu(self.fc2(F.elu(self.fc1(x)))))


class ShiftNet(TinyNet):
    """TinyNet with a fixed, per-copy buffer added to its output."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.randn(N_OUTPUTS))

    def forward(self, x):
        return super().forward(x) + self.shift


def _sequential():
    return nn.Sequential(
        nn.Linear(N_FEATURES, 16),
        nn.ELU(),
        nn.Linear(16, 16),
        nn.ELU(),
        nn.Linear(16, N_OUTPUTS),
    )


FACTORIES = {"lowered": _sequential, "vmap": TinyNet, "loop": _sequential}


def _modules(factory, n=N_PARTICLES, seed=0):
    """``n`` independently initialised copies, without touching the global seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [factory() for _ in range(n)]


def _stack(mode, modules):
    return ParticleStack(copy.deepcopy(modules), mode=mode)


def _data(seed=0, n=N_ROWS):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, N_FEATURES, generator=g)
    y = torch.stack([X[:, 0] * X[:, 1], torch.sin(X[:, 2])], dim=1)
    return X, y + 0.1 * torch.randn(n, N_OUTPUTS, generator=g)


def _each(modules, X):
    """Every module's own output, stacked: (P, N, o)."""
    with torch.no_grad():
        return torch.stack(
            [m(X if X.ndim == 2 else X[i]) for i, m in enumerate(modules)]
        )


class _Mixing(TinyNet):
    """A matrix product with a parameter: not rewritten, but vmap-able."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Parameter(torch.eye(N_OUTPUTS))

    def forward(self, x):
        return super().forward(x) @ self.mix


class _DropoutNet(TinyNet):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(super().forward(x))


def _bn_net(dropout=False):
    # No bias before the normalisation: its exact gradient is zero, and Adam
    # would amplify the rounding noise there into visible differences.
    layers = [nn.Linear(N_FEATURES, 8, bias=False), nn.BatchNorm1d(8), nn.ELU()]
    layers += [nn.Dropout(0.5)] if dropout else []
    return nn.Sequential(*layers, nn.Linear(8, N_OUTPUTS))


def _train_stack(stack, batches, lr):
    optimizer = torch.optim.Adam(stack.parameters(), lr=lr)
    loss = ParticleLoss(nn.MSELoss())
    for Xb, yb in batches:
        optimizer.zero_grad()
        loss(stack(Xb), yb).backward()
        optimizer.step()


def _train_single(module, batches, lr):
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    for Xb, yb in batches:
        optimizer.zero_grad()
        F.mse_loss(module(Xb), yb).backward()
        optimizer.step()


def _assert_same_weights(stack, modules):
    # Adam divides by sqrt(v): float32 round-off in the gradients reaches the
    # weights at about lr * 1e-4 after a few dozen steps; 1e-5 absolute is
    # far below a single step (lr = 1e-2).
    expected = torch.stack([parameters_to_vector(m.parameters()) for m in modules])
    torch.testing.assert_close(stack.flat_weights(), expected, rtol=0, atol=1e-5)
