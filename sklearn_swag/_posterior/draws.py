"""The posterior predictive: from SWAG moments to mixture components.

Each particle's posterior is sampled ``n_samples`` times with the particle's own
seed (:func:`draw_particle_weights`); the network evaluated at those draws
(:func:`particle_outputs`) gives, per particle and row, the predictive mean and
(epistemic) variance of a regression network (:func:`output_moments`) or the
class probabilities and expected entropy of a classification network
(:func:`class_probabilities`). The mixtures over particles are
:class:`~sklearn_swag._posterior.normal_mixture.NormalMixture` and
:class:`~sklearn_swag._posterior.categorical_mixture.CategoricalMixture`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from .._network.softmax import log_softmax_classes
from .._network.stack import ParticleStack
from .._posterior.noise import split_mean_variance
from .._posterior.swag import sample_weights
from .._training.threads import ThreadChooser, in_main_thread, threads_restored

#: Upper bound on the floats of posterior draws held at once while predicting.
_DRAW_BUDGET = 2**25

#: Most rows evaluated at once.
_ROW_CHUNK = 8192

#: Upper bound on the floats that the outputs of one block of rows, at every
#: weight vector of a block of particles, may take (see
#: ``_Network.rows_per_block``): what prediction holds beyond its results.
_OUTPUT_FLOATS = 2**22


def draw_particle_weights(
    mean: np.ndarray,
    sq_mean: np.ndarray,
    deviations: np.ndarray,
    n_draws: int,
    scale: float,
    seed: int,
) -> torch.Tensor:
    """``n_draws`` weight vectors from one particle's SWAG posterior.

    The same arguments give the same draws on every call and every machine:
    the draws come from a CPU generator seeded with ``seed``.

    Returns
    -------
    torch.Tensor of shape (n_draws, n_params), float64
    """
    generator = torch.Generator().manual_seed(int(seed))
    return sample_weights(
        torch.from_numpy(mean),
        torch.from_numpy(sq_mean),
        torch.from_numpy(deviations),
        n_draws,
        scale=scale,
        generator=generator,
    )


class _Network:
    """The fitted network on a device: posterior draws in, outputs out.

    Holds what every block of draws needs: a :class:`StackInference` (private
    copies, so predictions may run in parallel threads) and, for networks
    with normalisation statistics, the rows to recompute them on.
    """

    def __init__(self, stack, device, bn_rows, bn_batch_size) -> None:
        self.inference = stack.inference(device)
        self.device = device
        self.bn_rows = (
            None
            if bn_rows is None or not stack.has_batch_norm
            else torch.as_tensor(bn_rows, device=device)
        )
        self.bn_batch_size = bn_batch_size

    def blocks(
        self, theta: torch.Tensor, owners: torch.Tensor, X: torch.Tensor
    ) -> Iterator[torch.Tensor]:
        """Outputs ``(M, n_block_rows, n_outputs)``, one block of rows at a time.

        The normalisation statistics (if any) are recomputed once for the
        weight vectors; the rows then go through the network in blocks of
        :meth:`rows_per_block`, so that only one block's outputs of every
        weight vector exist at once.
        """
        theta = theta.to(self.device, torch.float32)
        owners = owners.to(self.device)
        if self.bn_rows is None:
            buffers = self.inference.buffers_of(owners)
        else:
            buffers = self.inference.refreshed_buffers(
                theta, owners, self.bn_rows, self.bn_batch_size
            )
        for rows in torch.split(X, self.rows_per_block(len(theta), X)):
            yield self.inference(theta, rows, buffers)

    def rows_per_block(self, n_weights: int, X: torch.Tensor) -> int:
        """Rows whose outputs at ``n_weights`` weight vectors fit the budget.

        The widest layer bounds the width of the outputs:
        ``n_weights * rows * widest`` stays within ``_OUTPUT_FLOATS``, and at
        most ``_ROW_CHUNK`` rows go in one block.
        """
        widest = self.inference.widest(X)
        return max(1, min(_ROW_CHUNK, _OUTPUT_FLOATS // max(1, n_weights * widest)))

    def __call__(
        self, theta: torch.Tensor, owners: torch.Tensor, X: torch.Tensor
    ) -> torch.Tensor:
        """Outputs ``(M, n_rows, n_outputs)`` of every row at once."""
        return torch.cat(list(self.blocks(theta, owners, X)), dim=1)


def particle_outputs(
    stack: ParticleStack,
    mean: np.ndarray,
    sq_mean: np.ndarray,
    deviations: np.ndarray,
    seeds: np.ndarray,
    X: np.ndarray,
    *,
    n_samples: int,
    scale: float,
    device: torch.device,
    reduce: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
    bn_rows: np.ndarray | None = None,
    bn_batch_size: int | None = None,
) -> tuple[np.ndarray, ...]:
    """Every particle's draws at every row, summarised per particle.

    The draws are taken a block of particles at a time, so that no more than
    about ``_DRAW_BUDGET`` weights are held at once, and evaluated a block of
    rows at a time (``_Network.rows_per_block``); each block's outputs go
    through ``reduce`` at once, so that the memory prediction takes beyond
    its results does not grow with the number of rows.

    Parameters
    ----------
    stack : ParticleStack
        The network structure (and each particle's buffers).
    mean, sq_mean : ndarray of shape (n_models, n_params)
    deviations : ndarray of shape (n_models, K, n_params)
    seeds : ndarray of shape (n_models,)
        Each particle's sampling seed.
    X : ndarray of shape (n_rows, n_features), float32
    n_samples : int
        Draws per particle.
    scale : float
        Posterior scale.
    device : torch.device
        Where to evaluate the network.
    reduce : callable
        Maps the outputs of a block of particles and rows, a tensor of shape
        (n_block, n_samples, n_block_rows, n_outputs), to a tuple of
        per-particle tensors of shape (n_block, n_block_rows, ...): the
        particles first, the rows second.
    bn_rows : ndarray of shape (n_bn_rows, n_features) or None, default=None
        Training rows on which the normalisation statistics of every draw are
        recomputed (networks with ``BatchNorm``); None uses the statistics
        the particles left at the end of training.
    bn_batch_size : int or None, default=None
        Rows per batch of that recomputation; None is one batch.

    Returns
    -------
    tuple of ndarray
        What ``reduce`` returns, joined over the particles (leading axis
        n_models), on the CPU.
    """
    n_models, n_params = mean.shape
    per_chunk = max(1, _DRAW_BUDGET // max(1, n_samples * n_params))
    network = _Network(stack, device, bn_rows, bn_batch_size)
    X_t = torch.as_tensor(X, device=device)
    results: list[torch.Tensor] | None = None
    chooser = _prediction_threads(device)
    with torch.no_grad(), threads_restored():
        if chooser is not None:
            chooser.start()
        for start in range(0, n_models, per_chunk):
            chunk = range(start, min(n_models, start + per_chunk))
            theta = torch.cat(
                [
                    draw_particle_weights(
                        mean[p], sq_mean[p], deviations[p], n_samples, scale, seeds[p]
                    )
                    for p in chunk
                ]
            )
            owners = torch.arange(chunk.start, chunk.stop).repeat_interleave(n_samples)
            row = 0
            for out in _timed(network.blocks(theta, owners, X_t), chooser):
                # Each block of rows is reduced as soon as it is evaluated and
                # written into arrays allocated once: memory does not grow with
                # the rows beyond the results (and no small pieces kept between
                # the blocks' temporaries fragment the heap).
                n_block = out.shape[1]
                reduced = reduce(out.reshape(len(chunk), n_samples, *out.shape[1:]))
                if results is None:
                    results = [
                        torch.empty((n_models, len(X), *t.shape[2:]), dtype=t.dtype)
                        for t in reduced
                    ]
                for target, t in zip(results, reduced, strict=True):
                    target[chunk.start : chunk.stop, row : row + n_block] = t
                row += n_block
    return tuple(t.numpy() for t in results)


def _prediction_threads(device: torch.device) -> ThreadChooser | None:
    """A chooser of torch threads for prediction on a CPU, or None.

    Prediction starts on one thread and tries the process's thread count
    after a block, keeping it only where it pays (see
    :class:`~sklearn_swag._training.threads.ThreadChooser`): a small network on a
    machine where other processes hold cores is many times slower on several
    threads. Not in a thread other than the main one, where the count is the
    process's to share.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads < 2 or not in_main_thread():
        return None
    return ThreadChooser(threads, trial_steps=2, warmup_steps=1, retry_after=50)


def _timed(blocks: Iterator, chooser: ThreadChooser | None) -> Iterator:
    """``blocks``, each timed from its evaluation to the end of its use."""
    if chooser is None:
        yield from blocks
        return
    blocks = iter(blocks)
    while True:
        chooser.begin_step()
        try:
            block = next(blocks)
        except StopIteration:
            return
        yield block
        chooser.end_step()


def output_moments(
    out: torch.Tensor, heteroscedastic: bool = False
) -> tuple[torch.Tensor, ...]:
    """Mean and variance (``ddof=0``) over the draws of a regression network.

    Parameters
    ----------
    out : torch.Tensor of shape (n_block, n_samples, n_rows, n_columns)
    heteroscedastic : bool, default=False
        Whether the network returns a mean and a variance per output (see
        :func:`~sklearn_swag._posterior.noise.split_mean_variance`).

    Returns
    -------
    means, variances : torch.Tensor of shape (n_block, n_rows, n_outputs)
        float64 moments of the (mean) output.
    noise : torch.Tensor of the same shape
        Only with ``heteroscedastic``: the predicted noise variance averaged
        over the draws.
    """
    noise = None
    if heteroscedastic:
        out, noise = split_mean_variance(out)
        noise = noise.to(torch.float64).mean(dim=1)
    out = out.to(torch.float64)
    # Two passes by hand: much faster than Tensor.var over a middle axis.
    mean = out.mean(dim=1)
    out -= mean.unsqueeze(1)
    variance = out.square_().mean(dim=1)
    return (mean, variance) if noise is None else (mean, variance, noise)


def class_probabilities(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each particle's class probabilities and the mean entropy of its draws.

    Parameters
    ----------
    out : torch.Tensor of shape (n_block, n_samples, n_rows, n_classes)
        Logits of every draw.

    Returns
    -------
    log_proba : torch.Tensor of shape (n_block, n_rows, n_classes)
        Log of the mean over the draws of their softmax probabilities
        (log-sum-exp of the log-softmax, float64): the probabilities are
        averaged, never the logits.
    expected_entropy : torch.Tensor of shape (n_block, n_rows)
        Mean over the draws of the entropy of their probabilities, in nats.
    """
    log_p = log_softmax_classes(out.to(torch.float64))
    n_samples = out.shape[1]
    log_proba = torch.logsumexp(log_p, dim=1) - np.log(n_samples)
    entropy = torch.special.entr(torch.exp(log_p)).sum(dim=-1)
    return log_proba, entropy.mean(dim=1)


def function_draws(
    stack: ParticleStack,
    mean: np.ndarray,
    sq_mean: np.ndarray,
    deviations: np.ndarray,
    owners: np.ndarray,
    seeds: np.ndarray,
    X: np.ndarray,
    *,
    scale: float,
    device: torch.device,
    heteroscedastic: bool = False,
    bn_rows: np.ndarray | None = None,
    bn_batch_size: int | None = None,
) -> np.ndarray:
    """The network at posterior draws: draw ``j`` from particle ``owners[j]``.

    Parameters
    ----------
    stack : ParticleStack
    mean, sq_mean : ndarray of shape (n_models, n_params)
    deviations : ndarray of shape (n_models, K, n_params)
    owners : ndarray of shape (n_draws,)
        The particle of each draw.
    seeds : ndarray of shape (n_models,)
        Seed of each particle's draws.
    X : ndarray of shape (n_rows, n_features), float32
    scale : float
        Posterior scale.
    device : torch.device
        Where to evaluate the network.
    heteroscedastic : bool, default=False
        Keep only the mean output of a mean-and-variance network.
    bn_rows, bn_batch_size
        As for :func:`particle_outputs`.

    Returns
    -------
    ndarray of shape (n_draws, n_rows, n_outputs), float64
    """
    owners = np.asarray(owners)
    theta = torch.empty(len(owners), mean.shape[1], dtype=torch.float64)
    for p in np.unique(owners):
        rows = np.flatnonzero(owners == p)
        theta[torch.from_numpy(rows)] = draw_particle_weights(
            mean[p], sq_mean[p], deviations[p], len(rows), scale, seeds[p]
        )
    network = _Network(stack, device, bn_rows, bn_batch_size)
    with torch.no_grad():
        out = network(theta, torch.as_tensor(owners), torch.as_tensor(X, device=device))
    if heteroscedastic:
        out, _ = split_mean_variance(out)
    return out.to(torch.float64).cpu().numpy()


def finite_outputs(
    reduce: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], X: np.ndarray
) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    """``reduce`` for :func:`particle_outputs`, refusing non-finite outputs.

    Rows far outside the training data can overflow the network: its
    outputs become infinite or NaN, and whatever the predictions made of
    them would be meaningless. Such outputs are a clear error naming the
    cause, before ``reduce`` sees them.

    Parameters
    ----------
    reduce : callable
        The reduction of :func:`particle_outputs`.
    X : ndarray of shape (n_rows, n_features)
        The rows predicted, named in the error.

    Returns
    -------
    callable
        ``reduce``, after a check of its input.
    """

    def checked(out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        finite = torch.isfinite(out)
        if not bool(finite.all()):
            rows = (~finite).movedim(2, 0).reshape(out.shape[2], -1).any(1)
            n_bad = int(rows.sum())
            raise ValueError(
                f"The network's outputs overflowed (are not finite) on {n_bad} "
                f"of {out.shape[2]} rows evaluated together; the inputs reach "
                f"{float(np.abs(X).max()):.3g} in absolute value. Scale the "
                "inputs as the training data were (for instance with a "
                "StandardScaler before the estimator in a pipeline), or drop "
                "rows far outside them."
            )
        return reduce(out)

    return checked
