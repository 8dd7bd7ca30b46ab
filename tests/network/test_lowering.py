"""The batched rewrite of a network against its copies run one by one."""

import copy
import pickle
import threading

import pytest
import torch
import torch.nn.functional as F
from lowering_checks import M, N, _compare, _copies, _features, _randn, _stacked
from networks import SeedNet
from torch import nn

from sklearn_swag._network.lowering import LoweringError, kernels, lower


def Net():
    """The typical user module: the seed's network, a forward calling a Sequential."""
    return SeedNet(input_dim=1)


def test_typical_user_module():
    lowered = _compare(Net, _features(1), grad=True)
    assert lowered.param_names == [n for n, _ in Net().named_parameters()]
    assert lowered.buffer_names == [] and not lowered.has_batch_norm


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1,), (4,), (2, 4), (2, 3, 4)])
def test_linear(bias, shape):
    n_in = shape[-1]
    _compare(lambda: nn.Linear(n_in, 3, bias=bias), _features(*shape), grad=True)


def test_one_feature_is_an_outer_product():
    lowered = lower(nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 1)))
    params = [torch.zeros(2, *s) for s in [(4, 1), (4,), (1, 4), (1,)]]
    lowered(params, [], torch.zeros(3, 1), mode="eval", shared_input=True)
    code = next(iter(lowered._compiled.values())).__self__.code
    assert "addcmul" in code and "relu_" in code


@pytest.mark.parametrize(
    "conv",
    [
        lambda: nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2),
        lambda: nn.Conv1d(4, 6, 3, padding="same", padding_mode="circular"),
        lambda: nn.Conv2d(4, 6, 3, padding=1, bias=False),
        lambda: nn.Conv2d(4, 4, (3, 2), stride=(2, 1), padding=1, groups=4),
        lambda: nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect"),
        lambda: nn.Conv2d(4, 6, 3, padding=(1, 2), padding_mode="replicate"),
    ],
)
@pytest.mark.parametrize("fold", [False, True], ids=["one_by_one", "grouped"])
def test_conv(conv, fold, monkeypatch):
    # both forms of the stacked convolution: one by one (the CPU's) and the
    # copies folded into the channels of one grouped convolution (CUDA's)
    monkeypatch.setattr(kernels, "folds_particles", lambda h: fold)
    dims = len(conv().kernel_size)
    _compare(conv, _features(4, *(7,) * dims), grad=True)


def test_convolutions_and_batch_norms_run_one_by_one_on_the_cpu():
    assert not kernels.folds_particles(torch.zeros(1))
    if torch.cuda.is_available():
        assert kernels.folds_particles(torch.zeros(1, device="cuda"))


def test_conv_net_with_flatten_head():
    def factory():
        return nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, stride=2),
            nn.ELU(),
            nn.Flatten(),
            nn.Linear(4 * 2 * 2, 2),
        )

    _compare(factory, _features(2, 6, 6), grad=True)


@pytest.mark.parametrize(
    "pool",
    [
        lambda: nn.MaxPool2d(2),
        lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
        lambda: nn.AdaptiveAvgPool2d((2, 1)),
        lambda: nn.AdaptiveMaxPool2d(1),
        lambda: nn.MaxPool2d(3, stride=2, padding=1),
        lambda: nn.AdaptiveAvgPool2d(7),  # more outputs than inputs: repeats
    ],
)
def test_pooling_after_conv(pool):
    def factory():
        return nn.Sequential(nn.Conv2d(2, 3, 3), pool(), nn.Flatten(), nn.LazyLinear(2))

    def factory_known():
        net = factory()
        with torch.no_grad():
            net(torch.zeros(1, 2, 7, 7))  # materialise the lazy head
        return net

    _compare(factory_known, _features(2, 7, 7), grad=True)
    _compare(lambda: nn.Sequential(pool(), nn.Conv2d(2, 3, 1)), _features(2, 6, 6))


@pytest.mark.parametrize(
    "args",
    [
        dict(kernel_size=2),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=(3, 2), stride=(1, 2), dilation=(1, 2), ceil_mode=True),
        dict(kernel_size=2, stride=[]),
    ],
)
def test_max_pooling_channels_last_is_torchs_to_the_bit(args):
    from sklearn_swag._network.lowering.kernels import (
        _ChannelsLastMaxPool2d,
        _max_pool2d_args,
    )

    x = torch.relu(_randn(6, 4, 7, 9))  # ties: the zeros of the ReLU
    x = x.round(decimals=1).requires_grad_()  # and among positive values
    ours = _ChannelsLastMaxPool2d.apply(x, *_max_pool2d_args(**args))
    theirs = F.max_pool2d(x, **args)
    assert torch.equal(ours, theirs) and ours.is_contiguous()
    g = _randn(*theirs.shape, seed=3)
    (ours_grad,) = torch.autograd.grad(ours, x, g)
    (theirs_grad,) = torch.autograd.grad(theirs, x, g)
    assert torch.equal(ours_grad, theirs_grad) and ours_grad.is_contiguous()


def _bn_net(kind, **kwargs):
    if kind == "1d":
        return lambda: nn.Sequential(
            nn.Linear(4, 6), nn.BatchNorm1d(6, **kwargs), nn.ReLU(), nn.Linear(6, 2)
        )
    if kind == "1d-seq":
        return lambda: nn.Sequential(nn.Conv1d(3, 4, 3), nn.BatchNorm1d(4, **kwargs))
    return lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, **kwargs))


_BN_INPUTS = {"1d": (4,), "1d-seq": (3, 6), "2d": (3, 5, 5)}


@pytest.mark.parametrize("kind", ["1d", "1d-seq", "2d"])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"affine": False}, {"momentum": None}, {"track_running_stats": False}],
)
@pytest.mark.parametrize("fold", [False, True], ids=["one_by_one", "folded"])
def test_batch_norm(kind, kwargs, fold, monkeypatch):
    # each copy's own BatchNorm (the CPU's) and one over M * C channels (CUDA's)
    monkeypatch.setattr(kernels, "folds_particles", lambda h: fold)
    lowered = _compare(_bn_net(kind, **kwargs), _features(*_BN_INPUTS[kind]), grad=True)
    assert lowered.has_batch_norm


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("fold", [False, True], ids=["one_by_one", "folded"])
def test_batch_norm_running_stats_after_two_steps(momentum, fold, monkeypatch):
    monkeypatch.setattr(kernels, "folds_particles", lambda h: fold)
    nets = _copies(
        lambda: nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=momentum))
    )
    lowered = lower(nets[0])
    P, B = _stacked(lowered, nets)
    for step in range(2):
        x = _randn(M, 8, 3, seed=step)
        lowered(P, B, x, mode="train", shared_input=False)
        for i, net in enumerate(nets):
            net.train()(x[i])
    for j, name in enumerate(lowered.buffer_names):
        expected = torch.stack([dict(n.named_buffers())[name] for n in nets])
        torch.testing.assert_close(B[j], expected)
    assert B[lowered.buffer_names.index("1.num_batches_tracked")].tolist() == [2] * M


def test_refresh_is_a_cumulative_average():
    nets = _copies(lambda: nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)))
    lowered = lower(nets[0])
    P, B = _stacked(lowered, nets)
    mean, var, count = (
        lowered.buffer_names.index(f"1.{n}")
        for n in ("running_mean", "running_var", "num_batches_tracked")
    )
    B[mean].zero_()
    B[var].fill_(1.0)
    B[count].zero_()
    batches = [_randn(7, 3, seed=s) for s in range(3)]
    with torch.no_grad():
        for x in batches:
            lowered(P, B, x, mode="refresh", shared_input=True)
        hidden = [
            torch.stack([net[0](x) for net in nets]) for x in batches
        ]  # (M, 7, 4) per batch
    means = torch.stack([h.mean(1) for h in hidden]).mean(0)
    variances = torch.stack([h.var(1) for h in hidden]).mean(0)
    torch.testing.assert_close(B[mean], means)
    torch.testing.assert_close(B[var], variances)
    assert B[count].tolist() == [3] * M
    # torch's own BatchNorm with momentum=None, copy by copy
    for i, net in enumerate(nets):
        ref = copy.deepcopy(net)
        ref[1].momentum = None
        ref[1].reset_running_stats()
        with torch.no_grad():
            for x in batches:
                ref.train()(x)
        torch.testing.assert_close(B[mean][i], ref[1].running_mean)
        torch.testing.assert_close(B[var][i], ref[1].running_var)


def test_refresh_has_no_dropout_and_updates_no_autograd_history():
    nets = _copies(
        lambda: nn.Sequential(
            nn.Linear(3, 4), nn.Dropout(0.5), nn.BatchNorm1d(4, momentum=0.3)
        )
    )
    lowered = lower(nets[0])
    P, B = _stacked(lowered, nets)
    x = _randn(6, 3)
    out = lowered(P, B, x, mode="refresh", shared_input=True)
    assert not any(b.requires_grad for b in B)
    h = torch.stack([net[0](x) for net in nets])
    expected = (h - h.mean(1, keepdim=True)) / torch.sqrt(
        h.var(1, unbiased=False, keepdim=True) + 1e-5
    )
    weight, bias = P[2].unsqueeze(1), P[3].unsqueeze(1)
    torch.testing.assert_close(out, expected * weight + bias, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kwargs", [{}, {"elementwise_affine": False}, {"bias": False}])
def test_layer_norm(kwargs):
    _compare(
        lambda: nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6, **kwargs)),
        _features(4),
        grad=True,
    )
    _compare(
        lambda: nn.Sequential(
            nn.Linear(4, 4), nn.Unflatten(-1, (2, 2)), nn.LayerNorm((2, 2), **kwargs)
        ),
        _features(3, 4),
    )


def test_group_norm_and_prelu():
    _compare(
        lambda: nn.Sequential(nn.Conv1d(4, 6, 3), nn.GroupNorm(3, 6), nn.PReLU(6)),
        _features(4, 7),
        grad=True,
    )
    _compare(lambda: nn.Sequential(nn.Linear(4, 6), nn.PReLU()), _features(4))


@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding(padding_idx):
    def factory():
        return nn.Sequential(
            nn.Embedding(10, 4, padding_idx=padding_idx), nn.Flatten(), nn.Linear(12, 2)
        )

    def make_x(seed=1):
        g = torch.Generator().manual_seed(seed)
        return torch.randint(0, 10, (N, 3), generator=g)

    _compare(factory, make_x, grad=True)


def test_embedding_with_max_norm_is_refused():
    with pytest.raises(LoweringError, match="max_norm"):
        lower(nn.Embedding(10, 4, max_norm=1.0))


_ACTIVATIONS = [
    nn.ReLU,
    nn.ReLU6,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.LeakyReLU,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softsign,
    nn.Tanhshrink,
    nn.LogSigmoid,
    nn.Identity,
    lambda: nn.GELU(approximate="tanh"),
    lambda: nn.ELU(alpha=0.5),
    lambda: nn.LeakyReLU(0.2),
    lambda: nn.ReLU(inplace=True),
]


@pytest.mark.parametrize("activation", _ACTIVATIONS)
def test_activation_modules(activation):
    def factory():
        return nn.Sequential(nn.Linear(3, 6), activation(), nn.Linear(6, 2))

    _compare(factory, _features(3), grad=True)


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(8, 3)

    def forward(self, x):
        h = self.a(x)
        h = F.elu(h) + torch.relu(h) * 0.5 - F.leaky_relu(h, 0.1) / 3
        h = torch.tanh(h) + torch.sigmoid(h) + F.gelu(h) + F.silu(h) + F.softplus(h)
        h = h + torch.sin(h) * torch.cos(h) - torch.sqrt(torch.abs(h) + 1.0)
        h = h + torch.log(torch.exp(h.clamp(-3, 3)) + 1) + torch.clamp(h, min=0.0)
        h = h.relu() + h.tanh() + h.sigmoid() + h.exp().log() + h.abs().float()
        h = -h + 2 ** torch.tanh(h) - h**2 / 10 + torch.add(h, h, alpha=0.5)
        h = torch.mul(h, 0.5) + torch.div(h, 2.0) + torch.sub(h, 1.0)
        return self.b(F.relu(h.contiguous().to(torch.float32)))


def test_functional_forward():
    _compare(Functional, _features(4), grad=True)


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.rand(4) + 0.5)
        self.shift = nn.Parameter(torch.randn(4))
        self.gain = nn.Parameter(torch.randn(()))

    def forward(self, x):
        h = x * self.scale + self.shift  # batched (F,) against each copy's x
        h = h + F.elu(self.lin(h))  # residual
        return h * self.gain + self.scale


def test_parameters_used_directly_and_residual():
    _compare(Scaled, _features(4), grad=True)
    _compare(Scaled, _features(2, 4))


class MaxMin(nn.Module):
    """``max`` and ``min`` in each of their forms, also on the input itself."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        first, where = torch.max(x, dim=1)  # (N, 4) of each copy's input
        h = self.lin(x)  # (N, T, 4)
        a, _ = torch.max(h, 1)
        b = h.min(dim=1, keepdim=True).values.squeeze(1)
        c = torch.max(h, torch.tanh(h)).amin(1) + torch.min(h, dim=-1)[0].sum()
        d = h.max() - torch.min(h) + x.max()
        return a + b * c + d + first + where.float()


def test_max_and_min():
    _compare(MaxMin, _features(3, 4), grad=True)


class ResidualBlock(nn.Module):
    """A residual block as torchvision writes it: ``out += identity`` and one
    in-place ReLU module used twice."""

    def __init__(self, channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


def test_residual_block_adds_the_shortcut_in_place():
    _compare(ResidualBlock, _features(3, 5, 5), grad=True)
    # a shortcut that a convolution gives and two layers read: not overwritten
    _compare(
        lambda: nn.Sequential(nn.Conv2d(3, 3, 1), ResidualBlock()), _features(3, 4, 4)
    )


class Shapes(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1)
        self.lin = nn.Linear(4 * 6, 6)

    def forward(self, x):
        h = self.conv(x)  # (N, 4, 6)
        h = h.view(h.size(0), -1)
        h = self.lin(h).reshape(x.shape[0], 2, 3)
        h = h.permute(0, 2, 1).transpose(1, 2).unsqueeze(1).squeeze(1)
        a, b = h.chunk(2, dim=1)
        c, d = torch.split(h, [1, 2], dim=-1)
        parts = torch.cat(
            [a, b, c.expand(-1, -1, 3), d[..., 1:].expand(-1, -1, 3)], dim=1
        )
        parts = parts.flatten(1) + torch.stack([h[:, 0], h[:, 1]], 2).flatten(1).sum(
            1, keepdim=True
        )
        n = parts.dim() + x.size(-1) // 6 + parts.shape[-1] // parts.size(1)
        s = (
            torch.softmax(parts, -1)
            + F.log_softmax(parts, dim=1)
            + parts.mean(1, keepdim=True)
        )
        return (
            s[:, :4] * n + parts.sum() / 100 + torch.flatten(s[:, None, :2], 1).mean()
        )


def test_shapes():
    _compare(Shapes, _features(2, 6), grad=True)


class ClassHeads(nn.Module):
    """Softmaxes over few classes (the CPU's fast form) and over many, along the
    last dim and another, as modules, functions and tensor methods."""

    def __init__(self, n_out):
        super().__init__()
        self.lin = nn.Linear(3, n_out)
        self.log_probs = nn.LogSoftmax(dim=1)

    def forward(self, x):
        z = self.lin(x)  # (N, n_out)
        seq = z.view(z.shape[0], -1, 2)  # (N, n_out / 2, 2): a last dim of 2
        return (
            self.log_probs(z)
            + F.softmax(z, dim=-1)
            + torch.log_softmax(z, 1, dtype=torch.float64).float()
            + z.softmax(0)  # over the rows of each copy
            + seq.log_softmax(-1).flatten(1)
            + torch.softmax(seq, dim=1).flatten(1)
        )


@pytest.mark.parametrize("n_out", [4, 10, 40])
def test_softmax_over_few_and_many_classes(n_out):
    _compare(lambda: ClassHeads(n_out), _features(3), grad=True)


class Containers(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])
        self.heads = nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Linear(4, 2)})
        self.seq = nn.Sequential(
            nn.Sequential(nn.Linear(4, 4), nn.Tanh()), nn.Identity()
        )

    def forward(self, x):
        for block in self.blocks:
            x = x + torch.relu(block(x))
        x = self.seq(x)
        return self.heads["a"](x) * self.heads["b"](x)


def test_containers():
    _compare(Containers, _features(4), grad=True)


class Constants(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.offset = torch.arange(3.0)  # a plain attribute: shared
        self.register_buffer("weights", torch.tensor([1.0, 2.0, 3.0]), persistent=False)

    def forward(self, x):
        return self.lin(x - self.offset) * self.weights


def test_constants_and_non_persistent_buffers():
    lowered = _compare(Constants, _features(3), grad=True)
    assert lowered.buffer_names == ["weights"]


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(torch.tanh(self.a(x))) + x @ self.a.weight.sum(0).unsqueeze(1)


def test_tied_weights():
    class TiedSimple(Tied):
        def forward(self, x):
            return self.b(torch.tanh(self.a(x))) * self.a.weight.sum()

    lowered = _compare(TiedSimple, _features(4), grad=True)
    assert lowered.param_names == ["a.weight", "a.bias", "b.bias"]


def test_dropout_eval_and_functional_dropout_follow_the_mode():
    class FDrop(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 50)

        def forward(self, x):
            return F.dropout(self.lin(x), 0.5, training=self.training)

    def factory():
        return nn.Sequential(
            nn.Linear(3, 50), nn.Dropout(0.5), nn.ReLU(), nn.Linear(50, 2)
        )

    _compare(factory, _features(3), modes=("eval",))
    nets = [net.eval() for net in _copies(FDrop)]
    lowered = lower(nets[0])  # traced with training=False
    P, B = _stacked(lowered, nets)
    out = lowered(P, B, _randn(N, 3), mode="train", shared_input=True)
    assert (out == 0).float().mean() > 0.3  # dropout applied despite the trace


def test_dropout_generators_are_per_copy():
    def factory():
        return nn.Sequential(nn.Linear(3, 20), nn.Dropout(0.5), nn.Linear(20, 2))

    nets = _copies(factory)
    lowered = lower(nets[0])
    P, B = _stacked(lowered, nets)
    x = _randn(N, 3)
    state = torch.random.get_rng_state()
    gens = [torch.Generator().manual_seed(10 + i) for i in range(M)]
    out = lowered(P, B, x, mode="train", shared_input=True, generators=gens)
    assert torch.equal(torch.random.get_rng_state(), state)
    for i in range(M):
        alone = lowered(
            [p[i : i + 1] for p in P],
            [],
            x,
            mode="train",
            shared_input=True,
            generators=[torch.Generator().manual_seed(10 + i)],
        )
        torch.testing.assert_close(alone[0], out[i])
    again = lowered(
        P,
        B,
        x,
        mode="train",
        shared_input=True,
        generators=[torch.Generator().manual_seed(10 + i) for i in range(M)],
    )
    torch.testing.assert_close(again, out)


def test_in_place_activation_leaves_inputs_and_shared_values_alone():
    class Reuse(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            h = self.lin(x)
            return F.elu(h) + h + torch.relu(x)  # h has two users

    lowered = _compare(Reuse, _features(3), grad=True)
    x = _randn(N, 3)
    before = x.clone()
    P, _ = _stacked(lowered, _copies(Reuse))
    lowered(P, [], x, mode="train", shared_input=True)
    assert torch.equal(x, before)


class Flow(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.lin(x)
        return x


class TrainingBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        if self.training:
            x = x + 1.0
        return self.lin(x)


class InPlaceInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        return self.lin(x.relu_())


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x, y):
        return self.lin(x) + y


class Unknown(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        return torch.cumprod(self.lin(x), 1)


@pytest.mark.parametrize(
    "module, match",
    [
        (nn.LSTM(3, 3), "LSTM"),
        (nn.Sequential(nn.Linear(3, 3), nn.Bilinear(3, 3, 3)), "Bilinear"),
        (Flow(), "trace"),
        (TrainingBranch(), "self.training"),
        (InPlaceInput(), "in-place"),
        (TwoInputs(), "one tensor argument"),
        (Unknown(), "cumprod"),
        (nn.Sequential(nn.Linear(3, 3), nn.AlphaDropout(0.1)), "AlphaDropout"),
    ],
)
def test_unsupported_raises(module, match):
    with pytest.raises(LoweringError, match=match):
        lower(module)


def test_unknown_leaf_module(monkeypatch):
    class Leaf(nn.Module):
        def forward(self, x):
            return x * 2

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m, name):
            return isinstance(m, Leaf) or super().is_leaf_module(m, name)

    monkeypatch.setattr(torch.fx, "Tracer", Tracer)
    with pytest.raises(LoweringError, match="unsupported module Leaf"):
        lower(nn.Sequential(nn.Linear(3, 3), Leaf()))


def test_threads_pickle_and_copy():
    nets = _copies(Net)
    lowered = lower(nets[0])
    P, _ = _stacked(lowered, nets)
    xs = [_randn(N, 1, seed=s) for s in range(4)]
    with torch.no_grad():
        expected = [lowered(P, [], x, mode="eval", shared_input=True) for x in xs]
    fresh = pickle.loads(pickle.dumps(lowered))
    results = [None] * 4

    def work(i):
        with torch.no_grad():
            for _ in range(20):
                results[i] = fresh(P, [], xs[i], mode="eval", shared_input=True)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected, strict=True):
        torch.testing.assert_close(got, want)
    clone = copy.deepcopy(lowered)
    torch.testing.assert_close(
        clone(P, [], xs[0], mode="eval", shared_input=True), expected[0]
    )


@pytest.mark.parametrize(
    "factory, shape",
    [(Net, (1,)), (Scaled, (2, 4)), (Functional, (4,)), (Shapes, (2, 6))],
)
def test_graphs_for_unknown_input_rank_agree(factory, shape):
    # The graphs built without knowing the input's rank (as lower() validates
    # them) align operands at run time; they must give the same results.
    nets = _copies(factory)
    lowered = lower(nets[0])
    P, B = _stacked(lowered, nets)
    for shared_input in (True, False):
        x = _randn(N, *shape) if shared_input else _randn(M, N, *shape)
        expected = lowered(P, B, x, mode="eval", shared_input=shared_input)
        generic = lowered._compile(("eval", shared_input, None, x.device))
        torch.testing.assert_close(generic(P, B, x, None), expected)
