"""``gpu_check.py``'s ResNet-18 section: image particles per second on a device.

ResNet-18 (torchvision's ``ResNet`` with ``BasicBlock`` and ``[2, 2, 2, 2]``
where torchvision is installed, else the same layout from
``tests/image_networks.py``) with 10 classes (``--resnet-width`` other than
64 narrows every stage, for quick dry runs), on random CIFAR-shaped images
(``--resnet-rows`` of 3x32x32, default 2,048 on CUDA, 64 on the CPU) and the
labels 0-9 in turn: ``MultiSWAGClassifier(n_models=P, pretrain_epochs=1, swag_epochs=1,
batch_size=128, validation_fraction=0, n_samples=2)`` for each ``P`` of
``--resnet-particles`` (default 1, 8, 32), timed against a plain PyTorch loop
that trains one ResNet-18 for the same two epochs (Adam at the package's
``lr``, the same batches' size) and keeps its SWAG moments at the end of the
second (the baseline, re-measured before every row). ``x one`` is the fit's
seconds over ``P`` times the baseline's: the cost of a particle against one
network trained alone (below 1: particles are cheaper batched).

For ``P`` of at least 8 the fit is repeated with the convolutions and
BatchNorms run copy by copy (``kernels.folds_particles`` forced off; on CUDA
the default folds the particles into the channels: one grouped convolution):
``grouped / one by one`` is the ratio of their seconds, the measurement behind
the package's choice of form on the device.
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import PlainMoments, particles_folded, synchronize

REPO_ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 2
BATCH = 128


def resnet18_class(width=64):
    """``(class, kwargs, source)`` of ResNet-18 with 10 classes.

    ``width``: the channels of the first stage (64 in ResNet-18; another
    width, for quick dry runs, takes the definition of ``tests``).
    """
    if width == 64:
        try:
            from torchvision.models.resnet import BasicBlock, ResNet
        except Exception:  # noqa: BLE001 - optional; a CUDA build may not load
            pass
        else:
            kwargs = {"block": BasicBlock, "layers": [2, 2, 2, 2], "num_classes": 10}
            return ResNet, kwargs, "torchvision"
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from image_networks import ResNet

    kwargs = {"layers": (2, 2, 2, 2), "num_classes": 10, "width": width}
    return ResNet, kwargs, "tests/image_networks.py"


def plain_seconds(cls, kwargs, X, y, device, lr):
    """Seconds of a plain loop training one network for ``EPOCHS`` epochs."""
    torch.manual_seed(0)
    net = cls(**kwargs).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    moments = PlainMoments(net.parameters(), rank=20, device=device)
    Xt, yt = torch.as_tensor(X, device=device), torch.as_tensor(y, device=device)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        order = torch.randperm(len(Xt), device=device)
        for i in range(0, len(Xt), BATCH):
            idx = order[i : i + BATCH]
            loss = F.cross_entropy(net(Xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    moments.collect()
    synchronize(device)
    return time.perf_counter() - start


def fit_seconds(cls, kwargs, X, y, device, particles, fold=None):
    """Seconds of the estimator's fit; ``fold`` forces the convolutions' form."""
    from sklearn_swag import MultiSWAGClassifier

    clf = MultiSWAGClassifier(
        cls,
        **{f"module__{k}": v for k, v in kwargs.items()},
        n_models=particles,
        pretrain_epochs=EPOCHS - 1,
        swag_epochs=1,
        batch_size=BATCH,
        validation_fraction=0,
        n_samples=2,
        device=device,
        random_state=0,
    )
    with particles_folded(fold):
        synchronize(device)
        start = time.perf_counter()
        clf.fit(X, y)
        synchronize(device)
    return time.perf_counter() - start, clf


def resnet_section(run, args):
    """Section 5: ResNet-18 particles per second against one network."""
    from sklearn_swag import MultiSWAGClassifier

    on_cuda = torch.device(args.device).type == "cuda"
    n_rows = args.resnet_rows or (2048 if on_cuda else 64)
    cls, kwargs, source = resnet18_class(args.resnet_width)
    header = (
        f"{'particles':>9} {'fit s':>8} {'one net s':>9} {'x one':>6} "
        f"{'particle-epochs/s':>17} {'grouped / one by one':>20}"
    )
    lines, may_run = run.table(
        f"ResNet-18 ({source}, width {args.resnet_width}), {n_rows} random "
        f"3x32x32 images, 10 classes, {EPOCHS - 1} + 1 epochs, batch {BATCH}",
        header,
    )
    if not may_run:
        return lines
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_rows, 3, 32, 32), dtype=np.float32)
    y = np.arange(n_rows) % 10  # every class in any 10 rows in a row
    lr = MultiSWAGClassifier().lr
    # warm-up: CUDA context, cuDNN's choice of algorithms, skorch
    plain_seconds(cls, kwargs, X[:BATCH], y[:BATCH], args.device, lr)
    fit_seconds(cls, kwargs, X[:BATCH], y[:BATCH], args.device, 2)
    for particles in args.resnet_particles:
        skip = run.over_budget()
        if skip:
            lines.append(f"{particles:>9} {skip}")
            continue
        one = plain_seconds(cls, kwargs, X, y, args.device, lr)
        seconds, clf = fit_seconds(cls, kwargs, X, y, args.device, particles)
        if not np.all(np.isfinite(clf.predict_proba(X[:256]))):
            run.failures.append(f"ResNet-18, {particles} particles: NaN probabilities")
        forms = "-"
        if particles >= 8 and on_cuda and not run.over_budget():
            # the form CUDA does not use by default, for the comparison
            unfolded, _ = fit_seconds(
                cls, kwargs, X, y, args.device, particles, fold=False
            )
            forms = f"{seconds / unfolded:.2f}"
        lines.append(
            f"{particles:>9} {seconds:>8.2f} {one:>9.2f} "
            f"{seconds / (particles * one):>6.2f} "
            f"{particles * EPOCHS / seconds:>17.2f} {forms:>20}"
        )
        print(lines[-1], flush=True)
    return lines
