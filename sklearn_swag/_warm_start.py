"""Warm starts: which fitted particles a fit keeps, and the new ones joined to them.

With ``warm_start=True`` a fit on the same data keeps the particles fitted
before and trains only those that ``n_models`` adds; they must be copies of
the same network (:mod:`~sklearn_swag._training.network_spec` checks that).
"""

from __future__ import annotations

from ._rows import _same_data
from ._training.history import merge_groups


def kept_particles(est, fingerprint: str, X, y, weights) -> int:
    """How many fitted particles of ``est`` a warm start keeps (0 for a fresh fit).

    ``fingerprint`` is the digest of the data ``X, y, weights``
    (:func:`~sklearn_swag._rows._fingerprint`); a warm start needs the
    data fitted before.
    """
    if not est.warm_start or "swag_mean_" not in vars(est):
        return 0
    kept = len(est.swag_mean_)
    if est.n_models < kept:
        raise ValueError(
            f"warm_start=True keeps the {kept} fitted particles: n_models="
            f"{est.n_models} must be at least that; set warm_start=False to "
            "fit fewer."
        )
    if not _same_data(vars(est).get("_fingerprint"), fingerprint, X, y, weights):
        raise ValueError(
            "warm_start=True adds particles to a fit on the same data, but "
            "these data differ from the data fitted before; set "
            "warm_start=False to fit them afresh."
        )
    return kept


def with_fitted_particles(est, new: dict) -> dict:
    """The fitted particles of ``est`` followed by the ``new`` ones."""
    old_k, new_k = est.swag_deviations_.shape[1], new["deviations"].shape[1]
    if old_k != new_k:
        raise ValueError(
            "warm_start=True adds particles like the fitted ones: the new "
            f"ones hold {new_k} deviations, the fitted {old_k}; keep rank, "
            "swag_epochs and swag_every, or set warm_start=False."
        )
    fitted = {
        "stack": est.particles_,
        "mean": est.swag_mean_,
        "sq_mean": est.swag_sq_mean_,
        "deviations": est.swag_deviations_,
        "n_snapshots": est.n_snapshots_,
        "train_loss": est.train_loss_,
        "pretrain_epochs": est.pretrain_epochs_,
        "history": {k: v for k, v in est.history_.items() if k != "epoch"},
    }
    return merge_groups([fitted, new])
