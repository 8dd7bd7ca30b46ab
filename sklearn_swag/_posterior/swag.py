"""SWAG moments and posterior sampling on flat parameter vectors.

This module is the mathematics of SWAG (Maddox et al., 2019) and nothing else:
it knows flat weight vectors, never networks. Every tensor carries a leading
particle axis, so one call serves a whole group of independent particles; no
quantity is ever shared between two particles.

For one particle with snapshots :math:`\\theta_1, \\dots, \\theta_T` collected
at the end of SWAG epochs:

* first moment :math:`\\bar\\theta = \\frac1T \\sum_t \\theta_t` and second moment
  :math:`\\overline{\\theta^2} = \\frac1T \\sum_t \\theta_t^2`, both running means;
* diagonal variance :math:`\\sigma^2 = \\max(\\overline{\\theta^2} -
  \\bar\\theta^2, \\epsilon)`;
* deviation rows :math:`d_t = \\theta_t - \\bar\\theta^{(t)}`, with
  :math:`\\bar\\theta^{(t)}` the running mean *after* adding :math:`\\theta_t`,
  of which the last ``rank`` are kept as the rows of :math:`D` (:math:`K`
  rows);
* a posterior draw

  .. math::

     \\theta = \\bar\\theta + \\sqrt{s}\\left(\\frac{\\sigma \\odot z_1}{\\sqrt2}
     + \\frac{D^\\top z_2}{\\sqrt{2 (K - 1)}}\\right),
     \\quad z_1 \\sim N(0, I_P),\\ z_2 \\sim N(0, I_K),

  with :math:`s` the posterior ``scale``. Without deviations (``rank=0``,
  SWAG-Diagonal) the draw is :math:`\\bar\\theta + \\sqrt{s}\\,\\sigma \\odot z_1`,
  and with a single deviation row the divisor :math:`K - 1` is taken as 1.
"""

from __future__ import annotations

import math

import torch

#: Smallest diagonal variance a draw uses; guards against the round-off of
#: ``sq_mean - mean**2`` going negative for weights that barely move.
VAR_CLAMP = 1e-30


class SWAGMoments:
    """Running SWAG statistics of a group of particles.

    Parameters
    ----------
    n_particles : int
        Number of independent particles in the group.
    n_params : int
        Length of each particle's flat weight vector.
    rank : int
        Maximum number of deviation rows kept per particle.
    device : str or torch.device, default="cpu"
        Where the statistics live while they are being collected.
    deviation_dtype : torch.dtype, default=torch.float32
        Storage type of the deviation rows. The moments are always kept in
        float64 so that ``sq_mean - mean**2`` keeps its precision.

    Attributes
    ----------
    mean : torch.Tensor of shape (n_particles, n_params)
        Running first moment.
    sq_mean : torch.Tensor of shape (n_particles, n_params)
        Running second moment.
    n_snapshots : torch.Tensor of shape (n_particles,)
        Snapshots collected by each particle.
    """

    def __init__(
        self,
        n_particles: int,
        n_params: int,
        rank: int,
        *,
        device: str | torch.device = "cpu",
        deviation_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.rank = int(rank)
        self.mean = torch.zeros(
            n_particles, n_params, dtype=torch.float64, device=device
        )
        self.sq_mean = torch.zeros_like(self.mean)
        self._deviations = torch.zeros(
            n_particles, self.rank, n_params, dtype=deviation_dtype, device=device
        )
        # Every collect adds one snapshot to every particle: one count serves.
        self._n_written = 0

    @property
    def n_snapshots(self) -> torch.Tensor:
        return torch.full(
            self.mean.shape[:1],
            self._n_written,
            dtype=torch.int64,
            device=self.mean.device,
        )

    def collect(self, theta: torch.Tensor) -> None:
        """Add one snapshot per particle.

        Parameters
        ----------
        theta : torch.Tensor of shape (n_particles, n_params)
            The current flat weights of each particle.
        """
        theta = theta.detach().to(self.mean.device, torch.float64)
        if theta.shape != self.mean.shape:
            raise ValueError(
                f"Expected a snapshot of shape {tuple(self.mean.shape)}, "
                f"got {tuple(theta.shape)}."
            )
        # Running means: mean += (theta - mean) / n, as one lerp each (a
        # snapshot costs a few operations, taken as often as every step).
        weight = 1.0 / (self._n_written + 1)
        self.mean.lerp_(theta, weight)
        self.sq_mean.lerp_(theta * theta, weight)
        if self.rank > 0:
            slot = self._n_written % self.rank
            self._deviations[:, slot] = theta - self.mean
        self._n_written += 1

    @property
    def deviations(self) -> torch.Tensor:
        """Deviation rows held, oldest first, shape ``(n_particles, K, n_params)``."""
        held = min(self._n_written, self.rank)
        if self._n_written <= self.rank or self.rank == 0:
            return self._deviations[:, :held]
        start = self._n_written % self.rank
        order = [(start + i) % self.rank for i in range(self.rank)]
        return self._deviations[:, order]


def diagonal_variance(
    mean: torch.Tensor, sq_mean: torch.Tensor, var_clamp: float = VAR_CLAMP
) -> torch.Tensor:
    """Diagonal SWAG variance ``max(sq_mean - mean**2, var_clamp)``.

    Parameters
    ----------
    mean, sq_mean : torch.Tensor of shape (..., n_params)
        First and second moments.
    var_clamp : float, default=1e-30
        Smallest variance returned.

    Returns
    -------
    torch.Tensor of shape (..., n_params)
    """
    return (sq_mean - mean * mean).clamp_min(var_clamp)


def sample_weights(
    mean: torch.Tensor,
    sq_mean: torch.Tensor,
    deviations: torch.Tensor,
    n_draws: int,
    *,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
    var_clamp: float = VAR_CLAMP,
) -> torch.Tensor:
    """Draw weight vectors from one particle's SWAG posterior.

    Parameters
    ----------
    mean, sq_mean : torch.Tensor of shape (n_params,)
        The particle's first and second moments.
    deviations : torch.Tensor of shape (K, n_params)
        Its deviation rows (``K`` may be 0).
    n_draws : int
        Number of draws.
    scale : float, default=1.0
        Posterior scale :math:`s`; 0 returns the mean ``n_draws`` times.
    generator : torch.Generator, default=None
        Source of the normal variates, on the device of ``mean``.
    var_clamp : float, default=1e-30
        Smallest diagonal variance used.

    Returns
    -------
    torch.Tensor of shape (n_draws, n_params)
        Draws in the dtype of ``mean``.
    """
    n_params = mean.shape[-1]
    k = deviations.shape[0]
    std = diagonal_variance(mean, sq_mean, var_clamp).sqrt_()
    z1 = torch.randn(
        n_draws, n_params, generator=generator, dtype=mean.dtype, device=mean.device
    )
    if k == 0:
        return torch.addcmul(mean, std, z1, value=math.sqrt(scale))
    z2 = torch.randn(
        n_draws, k, generator=generator, dtype=mean.dtype, device=mean.device
    )
    draws = torch.addcmul(mean, std, z1, value=math.sqrt(scale / 2.0))
    low_rank_scale = math.sqrt(scale / (2.0 * max(k - 1, 1)))
    return draws.addmm_(z2, deviations.to(mean.dtype), alpha=low_rank_scale)


def posterior_covariance(
    mean: torch.Tensor,
    sq_mean: torch.Tensor,
    deviations: torch.Tensor,
    *,
    scale: float = 1.0,
    var_clamp: float = VAR_CLAMP,
) -> torch.Tensor:
    """Dense covariance of one particle's SWAG posterior (small models only).

    ``scale * (diag(var) / 2 + D^T D / (2 (K - 1)))``, or ``scale * diag(var)``
    without deviation rows. Meant for inspection and tests; it is quadratic in
    the number of weights.

    Returns
    -------
    torch.Tensor of shape (n_params, n_params)
    """
    var = diagonal_variance(mean, sq_mean, var_clamp)
    k = deviations.shape[0]
    if k == 0:
        return scale * torch.diag(var)
    dev = deviations.to(mean.dtype)
    return scale * (torch.diag(var) / 2.0 + dev.T @ dev / (2.0 * max(k - 1, 1)))
