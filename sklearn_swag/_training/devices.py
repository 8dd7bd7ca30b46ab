"""Devices: which device each group of particles trains on.

The particles are split into one contiguous group per joblib worker
(:func:`partition`), and each group is bound to a device
(:func:`group_devices`), round robin over those the ``device`` parameter names
(:func:`resolve_devices`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def partition(n_models: int, n_jobs: int) -> list[np.ndarray]:
    """Split the particles into at most ``n_jobs`` contiguous, even groups."""
    n_groups = max(1, min(n_models, n_jobs))
    return [g for g in np.array_split(np.arange(n_models), n_groups) if len(g)]


def check_device(device: Any) -> torch.device:
    """Parse ``device`` and make sure torch can use it here.

    Raises
    ------
    ValueError
        If ``device`` is not a device name or the device is not available.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a torch device; use 'cpu', 'cuda' or "
            "'cuda:<index>'."
        ) from exc
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available; "
                "use device='cpu'."
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} does not exist: "
                f"{torch.cuda.device_count()} CUDA device(s) are visible."
            )
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(
                f"device={device!r} was requested but MPS is not available."
            )
    elif parsed.type != "cpu":
        raise ValueError(f"device={device!r} is not supported; use 'cpu' or 'cuda'.")
    return parsed


def resolve_devices(device: Any) -> list[torch.device]:
    """The devices the particle groups cycle through.

    ``"cuda"`` (without an index) stands for every visible GPU; a list or
    tuple names the devices one by one. Each is checked with
    :func:`check_device`.
    """
    names = list(device) if isinstance(device, (list, tuple)) else [device]
    if not names:
        raise ValueError("device must name at least one device, got an empty list.")
    devices: list[torch.device] = []
    for name in names:
        parsed = check_device(name)
        if parsed.type == "cuda" and parsed.index is None:
            devices += [
                torch.device("cuda", i) for i in range(torch.cuda.device_count())
            ]
        else:
            devices.append(parsed)
    return devices


def group_devices(devices: list[torch.device], n_groups: int) -> list[torch.device]:
    """The device of each group: round robin over ``devices``."""
    return [devices[i % len(devices)] for i in range(n_groups)]
