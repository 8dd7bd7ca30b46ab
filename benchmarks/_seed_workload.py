"""The seed workload shared by the benchmarks: its baselines, network and estimator.

100 toy points, a 1-16-16-1 ELU network, full batch, Adam at lr 0.03,
2000 + 1000 epochs, rank 20.

- :func:`plain_loop`: one network, a hand-written training loop, nothing else;
- :func:`plain_swag_loop`: the same loop that also keeps the SWAG moments at the
  end of each SWAG epoch, as the package does (the fairer baseline);
- :func:`stack_loop`: a hand-written loop over the package's stack of ``P``
  particles (its batched kernels, fused Adam, its SWAG moments) and nothing
  else: what any training loop around these kernels costs at the least;
- :func:`seed_epochs`: the epoch counts, scaled for quick trials;
- :class:`SeedNet`: the network as the seed notebook writes it, a user module;
- :func:`make_regressor`: the seed's estimator, with the built-in network or
  :class:`SeedNet`.
"""

import time

import torch
from _common import PlainMoments, scaled, synchronize
from torch import nn

from sklearn_swag import MultiSWAGRegressor
from sklearn_swag._network.stack import ParticleStack
from sklearn_swag._posterior.swag import SWAGMoments
from sklearn_swag._training.flat import FlatParameters, attached
from sklearn_swag._training.fused_step import fused_step

PRETRAIN, SWAG = 2000, 1000
RANK = 20
MODULES = ("builtin", "user")


def seed_epochs(scale=1.0):
    """The seed's pretraining and SWAG epochs, each times ``scale``, at least 1."""
    return scaled(PRETRAIN, scale), scaled(SWAG, scale)


def seed_sequential():
    """The seed network's layers, 1-16-16-1 with ELU, as one ``nn.Sequential``."""
    return nn.Sequential(
        nn.Linear(1, 16), nn.ELU(), nn.Linear(16, 16), nn.ELU(), nn.Linear(16, 1)
    )


class SeedNet(nn.Module):
    """The seed network as a user writes it: 1-16-16-1 with ELU activations."""

    def __init__(self):
        super().__init__()
        self.net = seed_sequential()

    def forward(self, x):
        return self.net(x)


def _seed_net_and_data(X, y, device, seed):
    with torch.random.fork_rng(devices=[]):  # leave the caller's seed alone
        torch.manual_seed(seed)
        net = seed_sequential()
    net = net.to(device)
    X_t = torch.as_tensor(X, dtype=torch.float32, device=device)
    y_t = torch.as_tensor(y, dtype=torch.float32, device=device).reshape(-1, 1)
    return net, X_t, y_t


def plain_loop(X, y, epochs, device="cpu", seed=0):
    """One network, hand-written full-batch training loop on ``device``.

    Returns the seconds the training loop takes (the set-up is not timed).
    """
    net, X_t, y_t = _seed_net_and_data(X, y, device, seed)
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(epochs):
        opt.zero_grad()
        loss = nn.functional.mse_loss(net(X_t), y_t)
        loss.backward()
        opt.step()
    synchronize(device)
    return time.perf_counter() - start


def plain_swag_loop(X, y, pretrain, swag, rank=RANK, device="cpu", seed=0):
    """The plain loop that also keeps the SWAG moments, as the package does.

    ``pretrain`` epochs of plain training, then ``swag`` epochs at the end of
    each of which the flat weight vector ``theta`` updates a running float64
    mean and mean of squares, and ``theta - mean`` (the mean after the update)
    is written, as float32, into a ring buffer of the last ``rank`` rows.

    Returns the seconds the training loop takes (the set-up is not timed).
    """
    net, X_t, y_t = _seed_net_and_data(X, y, device, seed)
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    moments = PlainMoments(net.parameters(), rank, device)
    synchronize(device)
    start = time.perf_counter()
    for epoch in range(pretrain + swag):
        opt.zero_grad()
        loss = nn.functional.mse_loss(net(X_t), y_t)
        loss.backward()
        opt.step()
        if epoch >= pretrain:
            moments.collect()
    synchronize(device)
    return time.perf_counter() - start


def stack_loop(
    X, y, n_models, pretrain, swag, rank=RANK, device="cpu", seed=0, compiled=False
):
    """``n_models`` copies of :class:`SeedNet` in the package's particle stack.

    The loop the package runs, without skorch, callbacks or checks: the
    particles' networks rewritten into batched operations
    (:class:`~sklearn_swag._network.stack.ParticleStack`), one full-batch step
    per epoch with fused Adam over the stacked weights as one flat tensor
    (:class:`~sklearn_swag._training.flat.FlatParameters`, as the package
    trains where torch allows), stepped by its kernel alone as the package
    steps it (:func:`~sklearn_swag._training.fused_step.fused_step`), the sum
    of the particles' mean squared errors as the loss, and the package's
    :class:`~sklearn_swag._posterior.swag.SWAGMoments` collected at the end of
    each SWAG epoch. With ``compiled``, the forward and the loss go through
    ``torch.compile`` (inductor; its backward too), compiled by one untimed
    forward and backward before the loop. Returns the seconds the loop takes
    (the set-up is not timed).
    """
    torch.manual_seed(seed)
    stack = ParticleStack([SeedNet() for _ in range(n_models)]).to(device)
    X_t = torch.as_tensor(X, dtype=torch.float32, device=device)
    y_t = torch.as_tensor(y, dtype=torch.float32, device=device).reshape(-1, 1)
    params = list(stack.parameters())
    flat = FlatParameters(params) if FlatParameters.applies(params) else None
    opt = torch.optim.Adam(
        params if flat is None else [flat.param], lr=0.03, fused=True
    )
    moments = SWAGMoments(n_models, stack.n_params, rank, device=device)
    if flat is None:
        zero_grad, weights = opt.zero_grad, stack.flat_weights
    else:
        zero_grad, weights = flat.zero_grad, flat.weights

    # The parameters are views of the flat tensor before anything compiles.
    with attached(flat):

        def step_loss():
            return ((stack(X_t) - y_t) ** 2).mean(dim=(1, 2)).sum()

        if compiled:
            # Every run compiles afresh: guards on an earlier run's stack would
            # otherwise pile up until dynamo falls back to eager.
            torch._dynamo.reset()
            step_loss().backward()  # the stack's own graph, built before dynamo sees it
            step_loss = torch.compile(step_loss, dynamic=False)
            step_loss().backward()
        synchronize(device)
        start = time.perf_counter()
        for epoch in range(pretrain + swag):
            zero_grad()
            loss = step_loss()
            loss.backward()
            if not fused_step(opt):  # the kernel alone, as the package steps
                opt.step()
            if epoch >= pretrain:
                moments.collect(weights())
        synchronize(device)
        return time.perf_counter() - start


def make_regressor(
    n_models,
    pretrain=PRETRAIN,
    swag=SWAG,
    device="cpu",
    n_jobs=1,
    *,
    module="builtin",
    normalize_y="auto",
):
    """The seed's MultiSWAG estimator with ``n_models`` particles.

    ``module="builtin"`` is the package's network
    (``module__hidden_layer_sizes=(16, 16), module__activation="elu"``),
    ``module="user"`` is :class:`SeedNet`, passed as a class. Note that
    ``normalize_y="auto"`` standardises the targets for the built-in network
    only: pass ``normalize_y=False`` to train both on the raw targets, as the
    plain loops do.
    """
    if module == "builtin":
        network = dict(module__hidden_layer_sizes=(16, 16), module__activation="elu")
    elif module == "user":
        network = dict(module=SeedNet)
    else:
        raise ValueError(f"module must be one of {MODULES}; got {module!r}.")
    return MultiSWAGRegressor(
        **network,
        n_models=n_models,
        rank=RANK,
        pretrain_epochs=pretrain,
        swag_epochs=swag,
        lr=0.03,
        batch_size=None,
        normalize_y=normalize_y,
        validation_fraction=0,  # all 100 rows, as the plain loop trains on
        noise="homoscedastic",  # one network, as the plain loop's
        swa_lr=None,  # the seed's constant learning rate
        n_jobs=n_jobs,
        device=device,
        random_state=0,
    )
