"""The posterior predictive: from SWAG moments to mixture components.

Each particle's posterior is sampled ``n_samples`` times with the particle's own
seed (:func:`draw_particle_weights`); the network evaluated at those draws gives
the particle's predictive mean and (epistemic) variance at every row
(:func:`component_moments`). The mixture over particles is
:class:`~sklearn_swag._mixture.NormalMixture`.
"""

from __future__ import annotations

import numpy as np
import torch

from ._stacking import ParticleStack
from ._swag import sample_weights

#: Upper bound on the floats of posterior draws held at once while predicting.
_DRAW_BUDGET = 2**25

#: Rows evaluated at once.
_ROW_CHUNK = 8192


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


def component_moments(
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
) -> tuple[np.ndarray, np.ndarray]:
    """Predictive moments of every particle at every row.

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

    Returns
    -------
    means, variances : ndarray of shape (n_models, n_rows, n_outputs)
        Mean and variance (``ddof=0``) of each particle's network draws.
    """
    n_models, n_params = mean.shape
    per_chunk = max(1, _DRAW_BUDGET // max(1, n_samples * n_params))
    stack = stack.to(device).eval()
    X_t = torch.as_tensor(X, device=device)
    means, variances = [], []
    with torch.no_grad():
        for start in range(0, n_models, per_chunk):
            chunk = range(start, min(n_models, start + per_chunk))
            theta = torch.cat(
                [
                    draw_particle_weights(
                        mean[p], sq_mean[p], deviations[p], n_samples, scale, seeds[p]
                    )
                    for p in chunk
                ]
            ).to(device, torch.float32)
            owners = torch.arange(chunk.start, chunk.stop, device=device)
            owners = owners.repeat_interleave(n_samples)
            out = torch.cat(
                [
                    stack.functional_forward(theta, rows, owners)
                    for rows in torch.split(X_t, _ROW_CHUNK)
                ],
                dim=1,
            ).to(torch.float64)
            out = out.reshape(len(chunk), n_samples, *out.shape[1:])
            # Two passes by hand: much faster than Tensor.var over a middle axis.
            chunk_mean = out.mean(dim=1)
            out -= chunk_mean.unsqueeze(1)
            means.append(chunk_mean.cpu())
            variances.append(out.square_().mean(dim=1).cpu())
    stack.to("cpu")
    return torch.cat(means).numpy(), torch.cat(variances).numpy()
