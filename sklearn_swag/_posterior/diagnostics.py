"""Warnings for fits that went wrong without failing.

A particle whose loss becomes NaN stops the fit with an error
(:class:`~sklearn_swag._training.callbacks.DivergenceCheck`). A particle can also
diverge and stay finite: an optimizer step too large throws its weights far
away, its loss ends orders of magnitude above where it started, and its
predictions are in the thousands where the targets are near 1. The fit then
"succeeds", and what it predicts is wrong. These checks run once the particles
are trained and name the particles they find, with the likely cause, in a
:class:`~sklearn.exceptions.ConvergenceWarning`:

- :func:`exploded_particles`: a training loss that ends more than
  :data:`EXPLODED` times above the particle's loss on its first mini-batch;
- :func:`spiked_particles` and :func:`uninformed_particles`: a training loss
  that rose above ``EXPLODED`` times its start at some epoch, and a particle
  that now predicts no better than the class frequencies (classification:
  a network thrown so far that its units died);
- :func:`misfit_particles`: predictions on the held-out rows (the training
  rows without any) worse than predicting the targets' mean by more than
  :data:`MISFIT` times (regression);
- :func:`collapsed_noise`: a held-out noise variance at its floor while the
  particles disagree more than the targets vary, the sign that their spread,
  not the data, explains the residuals (regression).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

#: How many times its starting loss a particle's final training loss must
#: exceed to count as exploded.
EXPLODED = 10.0

#: How many times the targets' variance a particle's mean squared error must
#: exceed to count as a misfit.
MISFIT = 4.0

#: A noise variance below this fraction of the targets' variance has collapsed.
COLLAPSED = 1e-6

_REMEDY = (
    "Lower `lr`, scale the inputs (a StandardScaler in a pipeline) and "
    "regression targets (normalize_y=True), or choose another optimizer."
)


def exploded_particles(start_loss: np.ndarray, train_loss: np.ndarray) -> list[int]:
    """Particles whose final training loss exceeds ``EXPLODED`` times their start.

    Parameters
    ----------
    start_loss : ndarray of shape (n_models,)
        Each particle's loss on its first mini-batch, before any update.
    train_loss : ndarray of shape (n_models, n_epochs)
        Each epoch's mean training loss; trailing NaN where a particle's group
        ran fewer epochs.

    Returns
    -------
    list of int
    """
    final = last_finite(train_loss)
    start = np.asarray(start_loss, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = (final > EXPLODED * np.abs(start)) & (final > 0) & np.isfinite(start)
    return np.flatnonzero(bad).tolist()


def spiked_particles(start_loss: np.ndarray, train_loss: np.ndarray) -> list[int]:
    """Particles whose loss in some epoch exceeded ``EXPLODED`` times their start.

    Parameters
    ----------
    start_loss : ndarray of shape (n_models,)
    train_loss : ndarray of shape (n_models, n_epochs)

    Returns
    -------
    list of int
    """
    with np.errstate(invalid="ignore"):
        peak = np.nanmax(np.where(np.isnan(train_loss), -np.inf, train_loss), axis=1)
        bad = (peak > EXPLODED * np.abs(start_loss)) & np.isfinite(start_loss)
    return np.flatnonzero(bad).tolist()


def uninformed_particles(
    particle_proba: np.ndarray, y_index: np.ndarray, weights: np.ndarray | None = None
) -> tuple[list[int], np.ndarray, float]:
    """Particles whose log loss is no better than the class frequencies'.

    Parameters
    ----------
    particle_proba : ndarray of shape (n_models, n_rows, n_classes)
        Each particle's predicted probabilities.
    y_index : ndarray of shape (n_rows,)
        Class indices.
    weights : ndarray of shape (n_rows,) or None, default=None

    Returns
    -------
    particles : list of int
    log_loss : ndarray of shape (n_models,)
        Each particle's mean log loss.
    baseline : float
        The mean log loss of predicting the rows' class frequencies.
    """
    y_index = np.asarray(y_index, dtype=np.int64)
    w = np.ones(len(y_index)) if weights is None else np.asarray(weights, np.float64)
    picked = particle_proba[:, np.arange(len(y_index)), y_index]
    log_loss = -np.average(np.log(np.clip(picked, 1e-300, None)), axis=1, weights=w)
    counts = np.bincount(y_index, weights=w, minlength=particle_proba.shape[-1])
    frequency = counts / counts.sum()
    baseline = float(-np.average(np.log(frequency[y_index]), weights=w))
    if len(y_index) < 2:
        return [], log_loss, baseline
    return np.flatnonzero(log_loss >= baseline).tolist(), log_loss, baseline


def misfit_particles(
    means: np.ndarray,
    y: np.ndarray,
    variance: np.ndarray,
    weights: np.ndarray | None = None,
) -> tuple[list[int], np.ndarray]:
    """Particles that predict worse than ``MISFIT`` times the targets' mean would.

    Parameters
    ----------
    means : ndarray of shape (n_models, n_rows, n_outputs)
        Each particle's predictive mean.
    y : ndarray of shape (n_rows, n_outputs)
        The targets, in the same units.
    variance : ndarray of shape (n_outputs,)
        The variance of the training targets (:func:`target_variance`): the
        mean squared error of predicting their mean. (The variance of the
        few rows checked would be a noisy yardstick.)
    weights : ndarray of shape (n_rows,) or None, default=None
        Row weights.

    Returns
    -------
    particles : list of int
    ratio : ndarray of shape (n_models,)
        Each particle's mean squared error over ``variance``, averaged over
        outputs (NaN where the targets do not vary).
    """
    errors = np.average((means - y) ** 2, axis=1, weights=weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(variance > 0, errors / variance, np.nan).mean(axis=1)
    if len(y) < 2:
        return [], ratio
    return np.flatnonzero(ratio > MISFIT).tolist(), ratio


def collapsed_noise(
    noise: np.ndarray,
    means: np.ndarray,
    variance: np.ndarray,
    weights: np.ndarray | None = None,
) -> tuple[bool, np.ndarray, float]:
    """Whether a fitted noise variance collapsed while the particles disagree.

    Parameters
    ----------
    noise : ndarray of shape (n_outputs,)
        The fitted noise variance, in the units of ``y``.
    means : ndarray of shape (n_models, n_rows, n_outputs)
        Each particle's predictive mean.
    variance : ndarray of shape (n_outputs,)
        The variance of the training targets (:func:`target_variance`).
    weights : ndarray of shape (n_rows,) or None, default=None

    Returns
    -------
    collapsed : bool
        The noise is below ``COLLAPSED`` times the targets' variance, and the
        particles' means vary across particles more than the targets do
        (averaged over rows).
    outlying : ndarray of shape (n_models,)
        Each particle's mean squared distance from the median particle, over
        the targets' variance: the particles above 1 are the far ones.
    spread : float
        The variance of the means across particles over the targets'
        variance, averaged over rows and outputs.
    """
    if means.shape[1] < 2 or not np.all(variance > 0):
        return False, np.zeros(len(means)), 0.0
    spread = float(
        (np.average(means.var(axis=0), axis=0, weights=weights) / variance).mean()
    )
    distance = np.average(
        (means - np.median(means, axis=0)) ** 2, axis=1, weights=weights
    )
    outlying = (distance / variance).mean(axis=1)
    collapsed = bool(np.all(noise < COLLAPSED * variance) and spread > 1.0)
    return collapsed, outlying, spread


def warn_exploded(history: dict, first: int = 0) -> list[int]:
    """Warn about particles (from ``first`` on) whose loss exploded.

    Parameters
    ----------
    history : dict
        A fitted ``history_`` (``start_loss`` and ``train_loss``).
    first : int, default=0
        The first particle to check (a warm start checks the new ones).

    Returns
    -------
    list of int
        The particles named.
    """
    start, loss = history["start_loss"][first:], history["train_loss"][first:]
    found = exploded_particles(start, loss)
    if found:
        final = ", ".join(f"{x:.3g}" for x in last_finite(loss)[found])
        begun = ", ".join(f"{x:.3g}" for x in start[found])
        warn_diverged(
            [first + i for i in found],
            f"their training loss ended at {final}, over {EXPLODED:g} times "
            f"their loss on their first mini-batch ({begun}).",
        )
    return [first + i for i in found]


def warn_misfits(
    means: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    noise: np.ndarray,
    variance: np.ndarray,
    rows_are: str,
    known: list[int] = (),
) -> None:
    """Warn about regression particles far worse than the targets' mean.

    Also where the fitted noise collapsed while the particles disagree more
    than the targets vary. All in the units the networks learned.

    Parameters
    ----------
    means : ndarray of shape (n_models, n_rows, n_outputs)
    y : ndarray of shape (n_rows, n_outputs)
    weights : ndarray of shape (n_rows,)
    noise : ndarray of shape (n_outputs,)
        The fitted noise variance.
    variance : ndarray of shape (n_outputs,)
        The training targets' variance.
    rows_are : str
        Which rows these are ("held-out" or "training"), for the message.
    known : sequence of int, default=()
        Particles warned about already, not named again.
    """
    known = set(known)
    misfits, ratio = misfit_particles(means, y, variance, weights)
    misfits = [i for i in misfits if i not in known]
    collapsed, outlying, spread = collapsed_noise(noise, means, variance, weights)
    findings = []
    if misfits:
        errors = ", ".join(f"{ratio[i]:.3g}" for i in misfits)
        findings.append(
            f"on the {rows_are} rows the mean squared error of their "
            f"predictions is {errors} times the training targets' variance "
            "(predicting their mean scores about 1)."
        )
    if collapsed:
        far = set(np.flatnonzero(outlying > 1.0).tolist()) - known
        misfits = sorted(set(misfits) | far)
        findings.append(
            f"the noise variance fitted on the {rows_are} rows collapsed to "
            f"{', '.join(f'{v:.3g}' for v in np.atleast_1d(noise))} while the "
            f"particles' predictions vary across particles {spread:.3g} times "
            "as much as the targets do."
        )
    if misfits:
        warn_diverged(misfits, " Also, ".join(findings))


def warn_uninformed(
    history: dict,
    particle_proba,
    y_index: np.ndarray,
    weights: np.ndarray,
    rows_are: str,
    known: list[int] = (),
) -> None:
    """Warn about classification particles that blew up and learned nothing.

    Parameters
    ----------
    history : dict
        A fitted ``history_``.
    particle_proba : callable
        ``particle_proba(particles)``: their probabilities on the rows
        checked, shape (len(particles), n_rows, n_classes); called only for
        particles whose loss spiked.
    y_index : ndarray of shape (n_rows,)
    weights : ndarray of shape (n_rows,)
    rows_are : str
        Which rows these are, for the message.
    known : sequence of int, default=()
        Particles warned about already, not named again.
    """
    spiked = spiked_particles(history["start_loss"], history["train_loss"])
    spiked = [i for i in spiked if i not in set(known)]
    if not spiked:
        return
    bad, log_loss, baseline = uninformed_particles(
        particle_proba(spiked), y_index, weights
    )
    if bad:
        named = [spiked[i] for i in bad]
        peaks = ", ".join(
            f"{p:.3g}" for p in np.nanmax(history["train_loss"][named], axis=1)
        )
        losses = ", ".join(f"{log_loss[i]:.3g}" for i in bad)
        warn_diverged(
            named,
            f"their training loss rose to {peaks}, over {EXPLODED:g} times their "
            f"loss on their first mini-batch, and on the {rows_are} rows their "
            f"log loss ({losses}) is no better than predicting the class "
            f"frequencies ({baseline:.3g}).",
        )


def warn_diverged(particles: list[int], finding: str) -> None:
    """One warning naming ``particles`` and what was found, with the remedy."""
    warnings.warn(
        f"Particle(s) {particles} look diverged, though their loss never "
        f"became NaN: {finding} {_REMEDY}",
        ConvergenceWarning,
        stacklevel=5,
    )


def last_finite(values: np.ndarray) -> np.ndarray:
    """Each row's last non-NaN value (NaN for a row without one)."""
    values = np.asarray(values, dtype=np.float64)
    last = np.full(len(values), np.nan)
    for i, row in enumerate(values):
        finite = row[~np.isnan(row)]
        if len(finite):
            last[i] = finite[-1]
    return last


def target_variance(y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The weighted variance of each column of ``y``."""
    mean = np.average(y, axis=0, weights=weights)
    return np.average((y - mean) ** 2, axis=0, weights=weights)
