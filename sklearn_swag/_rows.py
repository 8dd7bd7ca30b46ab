"""The training rows, as the particles see them.

The inputs as float32 (:func:`as_float32`), identical rows merged into one of
their summed weight (:func:`_merge_identical_rows`), the held-out split
(:func:`_validation_split`, stratified by class for a classifier), the row
weights as a last target column (:func:`_with_weights`), the rows on which
prediction recomputes BatchNorm statistics (:func:`_bn_update_rows`), and the
digest by which a warm start knows the data again (:func:`_fingerprint`), and
the regression targets standardised (:func:`target_scaling`).
"""

from __future__ import annotations

import hashlib

import joblib
import numpy as np

from ._network.losses import elementwise_loss


def as_float32(values: np.ndarray, name: str) -> np.ndarray:
    """``values`` as float32 (no copy if they are), or a clear error.

    The networks compute in float32: a value beyond its range (about 3.4e38)
    would become infinite and every prediction would fail, so it is refused
    here, naming the columns (for samples of more than one axis, the
    positions within a sample).
    """
    if values.dtype != np.float32:
        big = np.abs(values) > np.finfo(np.float32).max
        if big.any():
            columns = np.flatnonzero(big.reshape(len(values), -1).any(axis=0))
            where = f"column(s) {columns[:10].tolist()}"
            if values.ndim > 2:
                places = np.stack(np.unravel_index(columns[:10], values.shape[1:]))
                where = f"sample position(s) {[tuple(p) for p in places.T.tolist()]}"
            raise ValueError(
                f"{name} has values beyond the float32 range (|value| > 3.4e38) in "
                f"{where}; the networks compute in "
                "float32. Rescale these columns (for example with StandardScaler "
                "in a Pipeline) or divide them by a constant."
            )
    return values.astype(np.float32, copy=False)


def _weighs_rows(criterion, routed: dict) -> bool:
    """Whether the criterion can weight rows (it has elementwise values)."""
    if isinstance(criterion, type):
        try:
            criterion = criterion(**routed)
        except Exception:  # noqa: BLE001 - fit reports a bad criterion later
            return False
    return elementwise_loss(criterion) is not None


def _merge_identical_rows(
    X: np.ndarray, y: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per distinct ``(x, y)``, with the summed weight; weight 0 dropped.

    The rows come out sorted, so the training set does not depend on the
    order of the input rows either. A sample of any shape (an image, say) is
    compared as one flattened row, and comes back in its shape.
    """
    flat = X.reshape(len(X), -1)  # a sample of any shape as one row
    rows = np.concatenate([flat.astype(np.float64), y], axis=1)
    unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    summed = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(unique))
    keep = summed > 0
    n_values = flat.shape[1]
    return (
        unique[keep, :n_values].astype(np.float32).reshape(-1, *X.shape[1:]),
        unique[keep, n_values:],
        summed[keep],
    )


def _validation_split(
    X: np.ndarray,
    fraction: float,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
    classes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out rows, about ``fraction`` of the weight held out.

    Rows with identical features are kept on one side: a copy of a training
    row is no new data, and holding it out would make the noise look smaller
    than it is. Groups of identical rows are held out in random order until
    at least ``fraction`` of the total weight (of the rows, without weights)
    is.

    With ``classes`` (a class index per row), the split is stratified by
    class instead (:func:`_stratified_groups`): each class holds out about
    ``fraction`` of its own weight.
    """
    n_rows = len(X)
    if fraction == 0:
        return np.arange(n_rows), np.arange(0)
    weights = np.ones(n_rows) if weights is None else np.asarray(weights, float)
    _, group = np.unique(X.reshape(n_rows, -1), axis=0, return_inverse=True)
    group = group.reshape(-1)
    n_groups = int(group.max()) + 1
    if classes is not None:
        taken = _stratified_groups(group, n_groups, classes, weights, fraction, rng)
        held = np.isin(group, taken)
        return np.flatnonzero(~held), np.flatnonzero(held)
    sizes = np.bincount(group, weights=weights, minlength=n_groups)
    order = rng.permutation(n_groups)
    wanted = fraction * weights.sum()
    n_taken = int(np.searchsorted(np.cumsum(sizes[order]), wanted) + 1)
    if n_taken >= n_groups:
        raise ValueError(
            f"validation_fraction={fraction} holds out at least "
            f"{int(np.ceil(fraction * n_rows))} of n_samples={n_rows} row(s) "
            f"({n_groups} distinct), which leaves no row to train on; lower "
            "validation_fraction or set it to 0."
        )
    held = np.isin(group, order[:n_taken])
    return np.flatnonzero(~held), np.flatnonzero(held)


def _stratified_groups(
    group: np.ndarray,
    n_groups: int,
    classes: np.ndarray,
    weights: np.ndarray,
    fraction: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """The groups of identical rows that a split stratified by class holds out.

    Each group belongs to the class of most weight in it (the lowest on a
    tie; a group is one class unless identical inputs have other labels).
    In one random order of all groups, each class holds out its first groups,
    as many as bring its held-out weight closest to ``fraction`` of the
    weight of its groups: at least one, and never all, so that every class
    keeps rows to train on. A class whose rows lie in one group holds out
    none. A class that would lose all its training rows to groups of other
    classes gets back its heaviest held-out group.
    """
    classes = np.asarray(classes).reshape(-1).astype(np.intp)
    n_classes = int(classes.max()) + 1
    mass = np.zeros((n_groups, n_classes))
    np.add.at(mass, (group, classes), weights)
    owner = mass.argmax(axis=1)
    order = rng.permutation(n_groups)
    taken = []
    for label in range(n_classes):
        own = order[owner[order] == label]
        if len(own) < 2:
            continue
        held_weight = np.cumsum(mass[own, label])
        wanted = fraction * held_weight[-1]
        n_taken = int(np.argmin(np.abs(held_weight[:-1] - wanted))) + 1
        taken.append(own[:n_taken])
    held = np.zeros(n_groups, dtype=bool)
    held[np.concatenate(taken) if taken else []] = True
    for label in range(n_classes):
        if mass[:, label].any() and not mass[~held, label].any():
            held[np.flatnonzero(held)[np.argmax(mass[held, label])]] = False
    if not held.any():
        raise ValueError(
            f"validation_fraction={fraction} cannot hold out rows stratified by "
            f"class: no class has two distinct rows ({n_groups} distinct "
            f"row(s) in n_samples={len(group)}), so any held-out row would "
            "leave its class without a row to train on; set "
            "validation_fraction=0."
        )
    return np.flatnonzero(held)


def _with_weights(y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Targets with a last column of row weights, as the particle loss reads them."""
    return np.concatenate([y, weights[:, None].astype(np.float32)], axis=1)


def _training_rows(
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    train: np.ndarray,
    held_out: np.ndarray,
    weighted: bool,
    early_stopping: bool,
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """The rows and targets the particles train on, and the held-out ones.

    With ``weighted``, the row weights, scaled to a mean of 1 on the training
    rows, travel as a last target column (:func:`_with_weights`).

    Returns
    -------
    X_train, y_train : ndarray
        The training rows and their targets.
    validation : tuple of ndarray or None
        The held-out rows and their targets, for early stopping; None
        without ``early_stopping``.
    """
    X_train, y_fit = X[train], y[train]
    y_val = y[held_out]
    if weighted:
        scale = weights[train].mean()
        y_fit = _with_weights(y_fit, weights[train] / scale)
        y_val = _with_weights(y_val, weights[held_out] / scale)
    validation = (X[held_out], y_val) if early_stopping else None
    return X_train, y_fit, validation


def _bn_update_rows(
    X_train: np.ndarray,
    n_rows: int | None,
    rng: np.random.Generator,
    weights: np.ndarray,
) -> np.ndarray | None:
    """The training rows on which prediction recomputes BatchNorm statistics.

    In random order, as a shuffled loader would give them: where the
    statistics are averaged over batches of consecutive rows, the data's own
    order (sorted by time or by target, say) would not give samples of it.
    ``n_rows=None`` gives every training row: a row that identical rows were
    merged into (an integer weight, :func:`_merge_identical_rows`) comes
    back as many times, so the statistics are those of the rows as given.
    """
    if n_rows == 0:
        return None
    whole = np.round(weights)
    if n_rows is None and np.array_equal(weights, whole) and whole.min() >= 1:
        return X_train[
            rng.permutation(np.repeat(np.arange(len(X_train)), whole.astype(int)))
        ]
    size = len(X_train) if n_rows is None else min(n_rows, len(X_train))
    p = weights / weights.sum()
    return X_train[rng.choice(len(X_train), size=size, replace=False, p=p)]


def _fingerprint(X: np.ndarray, y: np.ndarray, weights: np.ndarray) -> str:
    """A digest of the training data, to tell a warm start the data are the same.

    The arrays are made C-contiguous first: :func:`joblib.hash` tells memory
    layouts apart, and the same values in another layout are the same data.
    """
    return joblib.hash([np.ascontiguousarray(a) for a in (X, y, weights)])


def _same_data(
    saved: str | None,
    fingerprint: str,
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
) -> bool:
    """Whether ``saved``, a fitted model's digest, is that of these data.

    ``fingerprint`` is their digest (:func:`_fingerprint`).
    A model saved before :func:`_fingerprint` used :func:`joblib.hash` holds
    the SHA-256 digest of the arrays' shapes and bytes (64 hex digits), which
    is compared as it was made, so that a warm start of such a model still
    knows its data.
    """
    if saved is None or len(saved) != 64:
        return saved == fingerprint
    digest = hashlib.sha256()
    for array in (X, y, weights):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return saved == digest.hexdigest()


def target_scaling(
    y: np.ndarray, normalize: bool, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and scale of each target; zeros and ones without scaling.

    A constant target is centred, not divided; a target whose variance
    overflows float64 is an error naming its column.
    """
    n_outputs = y.shape[1]
    if not normalize:
        return np.zeros(n_outputs), np.ones(n_outputs)
    # An overflow gives an infinite scale: an error naming the targets.
    with np.errstate(over="ignore", invalid="ignore"):
        mean = np.average(y, axis=0, weights=weights)
        scale = np.sqrt(np.average((y - mean) ** 2, axis=0, weights=weights))
    # A constant target (up to rounding) is centred, not divided by ~0.
    constant = scale <= 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))
    if not np.all(np.isfinite(scale)):
        columns = np.flatnonzero(~np.isfinite(scale)).tolist()
        raise ValueError(
            f"The targets in column(s) {columns} are too large to standardise "
            "(their variance overflows float64); divide them by a constant "
            "before fitting."
        )
    return mean, np.where(constant, 1.0, scale)
