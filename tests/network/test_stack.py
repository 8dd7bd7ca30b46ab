"""Tests of the particle stack: a group of networks evaluated and trained as one.

The reference everywhere is the plain thing: each network on its own, with its
own optimizer, its own loss and its own batches.
"""

import copy
import warnings

import pytest
import torch
from skorch.dataset import Dataset
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from sklearn_swag._network.stack import (
    ParticleBatches,
    ParticleLoss,
    ParticleStack,
    _as_particle_output,
    build_stack,
)

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


class FlatNet(nn.Module):
    """Returns shape (N,): one output per row."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(N_FEATURES, 1)

    def forward(self, x):
        return self.fc(x).squeeze(-1)


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


# -- evaluation -------------------------------------------------------------------


class _Mixing(TinyNet):
    """A matrix product with a parameter: not rewritten, but vmap-able."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Parameter(torch.eye(N_OUTPUTS))

    def forward(self, x):
        return super().forward(x) @ self.mix


class _Counting(TinyNet):
    """Data-dependent control flow that neither tracing nor vmap handles."""

    def forward(self, x):
        h = super().forward(x)
        return h * 2 if bool(h.sum() > 0) else h


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
            "sklearn_swag._network.stack._BLOCK_FLOATS", n_block * N_ROWS * 16
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


# -- build_stack ------------------------------------------------------------------


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


class _DropoutNet(TinyNet):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(super().forward(x))


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


def _bn_net(dropout=False):
    # No bias before the normalisation: its exact gradient is zero, and Adam
    # would amplify the rounding noise there into visible differences.
    layers = [nn.Linear(N_FEATURES, 8, bias=False), nn.BatchNorm1d(8), nn.ELU()]
    layers += [nn.Dropout(0.5)] if dropout else []
    return nn.Sequential(*layers, nn.Linear(8, N_OUTPUTS))


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


# -- training equivalence ---------------------------------------------------------


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


@pytest.mark.parametrize("mode", MODES)
def test_mini_batch_training_equals_separate_networks(mode):
    modules = _modules(FACTORIES[mode])
    stack = _stack(mode, modules)
    X, y = _data()
    seeds = [11, 12, 13, 14]
    batch_size, n_epochs = 10, 4  # 3 full batches and one of 2 rows per epoch
    batches = ParticleBatches(
        Dataset(X, y),
        batch_size,
        [torch.Generator().manual_seed(s) for s in seeds],
        shuffle=True,
    )
    for _ in range(n_epochs):
        _train_stack(stack, list(batches), lr=0.01)
    # Each particle's batch order comes from its own generator: rebuilding it
    # from the seed alone reproduces the particle.
    for module, seed in zip(modules, seeds, strict=True):
        g = torch.Generator().manual_seed(seed)
        for _ in range(n_epochs):
            order = torch.randperm(N_ROWS, generator=g)
            _train_single(
                module,
                [
                    (X[order[i : i + batch_size]], y[order[i : i + batch_size]])
                    for i in range(0, N_ROWS, batch_size)
                ],
                lr=0.01,
            )
    _assert_same_weights(stack, modules)


def test_mini_batch_training_with_a_wrong_order_differs():
    # The check above can fail: particle 2 trained on the natural row order
    # ends somewhere else.
    modules = _modules(_sequential)
    stack = _stack("lowered", modules)
    X, y = _data()
    batches = ParticleBatches(
        Dataset(X, y), 10, [torch.Generator().manual_seed(s) for s in range(4)]
    )
    for _ in range(4):
        _train_stack(stack, list(batches), lr=0.01)
    for _ in range(4):
        _train_single(
            modules[2], [(X[i : i + 10], y[i : i + 10]) for i in range(0, 32, 10)], 0.01
        )
    gap = stack.flat_weights()[2] - parameters_to_vector(modules[2].parameters())
    assert gap.abs().max() > 1e-3


# -- ParticleLoss -----------------------------------------------------------------


def _predictions(seed=0):
    g = torch.Generator().manual_seed(seed)
    y_pred = torch.randn(N_PARTICLES, 6, N_OUTPUTS, generator=g)
    return y_pred, torch.randn(6, N_OUTPUTS, generator=g)


@pytest.mark.parametrize("criterion", [nn.MSELoss(), nn.L1Loss(), nn.HuberLoss()])
def test_per_particle_losses(criterion):
    y_pred, y_true = _predictions()
    loss = ParticleLoss(criterion)
    expected = torch.stack([criterion(p, y_true) for p in y_pred])
    torch.testing.assert_close(loss.per_particle(y_pred, y_true), expected)
    # Each particle's own targets, as mini-batches give them.
    y_own = torch.randn(N_PARTICLES, 6, N_OUTPUTS, generator=torch.Generator())
    expected_own = torch.stack(
        [criterion(p, t) for p, t in zip(y_pred, y_own, strict=True)]
    )
    torch.testing.assert_close(loss.per_particle(y_pred, y_own), expected_own)
    total = loss(y_pred, y_own)
    torch.testing.assert_close(total, expected_own.sum())
    torch.testing.assert_close(loss.last_losses, expected_own)
    assert not loss.nonfinite.any()


def test_nonfinite_flags_only_the_particle_with_a_nan():
    y_pred, y_true = _predictions()
    bad = y_pred.clone()
    bad[1, 3, 0] = float("nan")
    loss = ParticleLoss(nn.MSELoss())
    total = loss(bad, y_true)
    assert torch.isnan(total)
    assert loss.nonfinite.tolist() == [False, True, False, False]
    assert torch.isnan(loss.last_losses[1])
    assert torch.isfinite(loss.last_losses[[0, 2, 3]]).all()
    # Once flagged, a particle stays flagged after a finite batch.
    loss(y_pred, y_true)
    assert loss.nonfinite.tolist() == [False, True, False, False]
    assert torch.isfinite(loss.last_losses).all()


class _ItemMSE(nn.Module):
    """A criterion vmap cannot batch: it calls ``.item()``."""

    def forward(self, y_pred, y_true):
        scale = y_true.abs().max().item()
        return ((y_pred - y_true) ** 2).mean() / scale


def test_loss_falls_back_to_a_loop():
    y_pred, y_true = _predictions()
    criterion = _ItemMSE()
    with pytest.raises(RuntimeError):  # the premise: vmap rejects it
        torch.func.vmap(criterion)(y_pred, y_true.expand(N_PARTICLES, -1, -1))
    loss = ParticleLoss(criterion)
    y_pred.requires_grad_(True)
    expected = torch.stack([criterion(p, y_true) for p in y_pred])
    total = loss(y_pred, y_true)
    torch.testing.assert_close(loss.last_losses, expected.detach())
    torch.testing.assert_close(total, expected.sum())
    # Gradients reach each particle's own prediction only through its own loss.
    total.backward()
    scale = y_true.abs().max()
    expected_grad = 2 * (y_pred - y_true) / (y_true.numel() * scale)
    torch.testing.assert_close(y_pred.grad, expected_grad.detach())
    # Later calls keep working.
    torch.testing.assert_close(loss.per_particle(y_pred, y_true), expected)


# -- ParticleBatches --------------------------------------------------------------


def _index_dataset(n):
    """Rows that name themselves: X[i] = i, y[i] = -i."""
    X = torch.arange(n, dtype=torch.float32).reshape(n, 1)
    return Dataset(X, -X)


def _generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("batch_size", [10, 11, 1000])
def test_one_full_batch_when_batch_size_covers_the_data(batch_size):
    dataset = _index_dataset(10)
    batches = ParticleBatches(dataset, batch_size, _generators([0, 1, 2]))
    assert len(batches) == 1
    epoch = list(batches)
    assert len(epoch) == 1
    Xb, yb = epoch[0]
    assert Xb is dataset.X
    assert yb is dataset.y


@pytest.mark.parametrize(
    "n, batch_size, drop_last, sizes",
    [
        (10, 3, False, [3, 3, 3, 1]),
        (10, 3, True, [3, 3, 3]),
        (9, 3, False, [3, 3, 3]),
        (9, 3, True, [3, 3, 3]),
        (10, 9, False, [9, 1]),
        (10, 9, True, [9]),
    ],
)
@pytest.mark.parametrize("shuffle", [True, False])
def test_number_and_size_of_batches(n, batch_size, drop_last, sizes, shuffle):
    batches = ParticleBatches(
        _index_dataset(n),
        batch_size,
        _generators([0, 1, 2]),
        shuffle=shuffle,
        drop_last=drop_last,
    )
    assert len(batches) == len(sizes)
    epoch = list(batches)
    assert [Xb.shape for Xb, _ in epoch] == [(3, s, 1) for s in sizes]
    for Xb, yb in epoch:
        assert torch.equal(yb, -Xb)


def _epoch_orders(batches):
    """Each particle's row order over one epoch, shape (P, rows seen)."""
    return torch.cat([Xb[..., 0] for Xb, _ in batches], dim=1).long()


def test_shuffled_epoch_visits_every_row_once_per_particle():
    n = 23
    batches = ParticleBatches(_index_dataset(n), 5, _generators([0, 1, 2, 3]))
    first, second = _epoch_orders(batches), _epoch_orders(batches)
    for order in (*first, *second):
        assert sorted(order.tolist()) == list(range(n))
    # Different generators, different orders; a new epoch, a new order.
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(first[2], first[3])
    assert not torch.equal(first[0], second[0])
    assert not torch.equal(first[0], torch.arange(n))


def test_each_particle_is_shuffled_by_its_own_generator():
    n, seeds = 23, [5, 6, 7, 8]
    together = ParticleBatches(_index_dataset(n), 5, _generators(seeds))
    alone = ParticleBatches(_index_dataset(n), 5, _generators([seeds[2]]))
    g = torch.Generator().manual_seed(seeds[2])
    for _ in range(3):
        order = _epoch_orders(together)[2]
        assert torch.equal(_epoch_orders(alone)[0], order)
        assert torch.equal(torch.randperm(n, generator=g), order)


def test_no_shuffle_gives_the_natural_order():
    n = 23
    batches = ParticleBatches(
        _index_dataset(n), 5, _generators([0, 1, 2]), shuffle=False
    )
    for _ in range(2):
        assert torch.equal(_epoch_orders(batches), torch.arange(n).expand(3, n))


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
