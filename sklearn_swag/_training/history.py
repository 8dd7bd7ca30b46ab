"""The groups' results joined, with the particles' history epoch by epoch.

Each group's runs become per-particle arrays (:func:`_group_history`); the
groups' results are joined in particle order (:func:`merge_groups`), their
histories padded to the longest group (:func:`join_histories`).
"""

from __future__ import annotations

import numpy as np

from .._network.stack import ParticleStack


def _group_history(runs: list, n_particles: int) -> dict:
    """The group's runs as per-particle arrays, epoch after epoch.

    A run that trained some of the particles (pretraining goes on without
    those that stopped) leaves the others' losses NaN in its epochs.
    """
    losses, valid, rates, phases, records = [], [], [], [], []
    start_loss = np.full(n_particles, np.nan)
    for phase, history, net, members, scores in runs:
        arrays = history.as_arrays()
        n_epochs = len(arrays["lr"])
        rows = members.numpy()
        loss = np.full((n_particles, n_epochs), np.nan)
        if arrays["train_loss"] is not None:
            loss[rows] = arrays["train_loss"]
        losses.append(loss)
        held_out = np.full((n_particles, n_epochs), np.nan)
        if scores is not None:
            held_out[rows, : scores.shape[1]] = scores
        valid.append(held_out)
        if np.isnan(start_loss).all() and arrays["start_loss"] is not None:
            start_loss[rows] = arrays["start_loss"]
        rates.append(arrays["lr"])
        if phase == "both":
            start = history.start_epoch
            phases.append(np.where(np.arange(n_epochs) < start, "pretrain", "swag"))
        else:
            phases.append(np.full(n_epochs, phase))
        records += [
            {k: v for k, v in row.items() if k != "batches"} for row in net.history
        ]
    return {
        "train_loss": np.concatenate(losses, axis=1),
        "valid_loss": np.concatenate(valid, axis=1),
        "lr": np.concatenate(rates),
        "phase": np.concatenate(phases),
        "start_loss": start_loss,
        "groups": [records],
    }


def merge_groups(results: list[dict]) -> dict:
    """Join the results of :func:`fit_group` in particle order."""
    keys = (
        "mean",
        "sq_mean",
        "deviations",
        "n_snapshots",
        "train_loss",
        "pretrain_epochs",
    )
    if len(results) == 1:  # no copy: the deviations can be most of the memory
        merged = {key: results[0][key] for key in keys}
    else:
        merged = {key: np.concatenate([r[key] for r in results]) for key in keys}
    merged["stack"] = ParticleStack.concatenate([r["stack"] for r in results])
    merged["history"] = join_histories(
        [r["history"] for r in results], [len(r["mean"]) for r in results]
    )
    return merged


def join_histories(histories: list[dict], sizes: list[int]) -> dict:
    """Per-particle histories of groups, padded to the longest group.

    Groups that stop pretraining early run fewer epochs; their particles'
    rows end in NaN (losses, learning rates) and "" (phases).
    """
    n_epochs = max(h["train_loss"].shape[1] for h in histories)

    def pad(values, size, fill):
        values = np.asarray(values)
        if values.ndim == 1:  # one row for every particle of the group
            values = np.broadcast_to(values, (size, len(values)))
        out = np.full((size, n_epochs), fill, dtype=values.dtype)
        out[:, : values.shape[1]] = values
        return out

    joined = {}
    for key, fill in (
        ("train_loss", np.nan),
        ("valid_loss", np.nan),
        ("lr", np.nan),
        ("phase", ""),
    ):
        joined[key] = np.concatenate(
            [pad(h[key], n, fill) for h, n in zip(histories, sizes, strict=True)]
        )
    joined["start_loss"] = np.concatenate(  # absent from models saved before it
        [
            h.get("start_loss", np.full(n, np.nan))
            for h, n in zip(histories, sizes, strict=True)
        ]
    )
    joined["groups"] = [group for h in histories for group in h["groups"]]
    return joined
