"""Predictive distribution of MultiSWAG: a batch of equal-weight Gaussian mixtures.

:class:`NormalMixture` is what ``MultiSWAGRegressor.predict_dist`` returns. It holds
one finite mixture of Gaussians per (point, output), with one component per trained
particle, and exposes the method names of :mod:`scipy.stats` distributions
(``mean``, ``var``, ``std``, ``logpdf``, ``cdf``, ``ppf``, ``interval``, ``rvs``, ...)
and the closed-form continuous ranked probability score, :meth:`NormalMixture.crps`.

This module only depends on numpy, scipy.special and scikit-learn's
``check_random_state``; it knows nothing about torch.
"""

import math
import numbers

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import log_ndtr, logsumexp, ndtr
from sklearn.utils import check_random_state

from .crps import mixture_crps
from .quantiles import mixture_quantile

__all__ = ["NormalMixture"]

_LOG_2PI = math.log(2.0 * math.pi)


def _as_float64(value: ArrayLike, name: str, *, copy: bool = False) -> NDArray:
    """Convert ``value`` to a float64 array, raising a ValueError on failure."""
    try:
        if copy:
            return np.array(value, dtype=np.float64)
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of real numbers.") from exc


def _read_only(array: NDArray) -> NDArray:
    """Mark an array (owned by the caller of this helper) as read-only."""
    array.flags.writeable = False
    return array


class NormalMixture:
    """Batch of equal-weight Gaussian mixtures, the MultiSWAG predictive.

    There is one mixture per point and output, each with ``n_components``
    components of equal weight: one component per MultiSWAG particle. The
    methods follow the names and semantics of :mod:`scipy.stats` distributions.

    Parameters
    ----------
    means : array-like of shape (n_components, n_points, n_outputs)
        Mean of each component: the average prediction of the network draws of
        one particle.

    variances : array-like of shape (n_components, n_points, n_outputs)
        Epistemic variance of each component: the spread of the predictions of
        the network draws of one particle. May be exactly zero.

    noise_variance : float or array-like, default=0.0
        Aleatoric (observation-noise) variance, added to the epistemic variance
        of the components. Either shared by all components: a scalar, an array
        of shape (n_outputs,) or an array of shape (n_points, n_outputs), and,
        if ``single_output`` is True, an array of shape (n_points,) as well; or
        given per component: any three-dimensional array broadcastable to
        (n_components, n_points, n_outputs), as predicted by heteroscedastic
        networks where each particle has its own noise model.

    single_output : bool, default=True
        If True, ``n_outputs`` must be 1, every method returns arrays of shape
        (n_points,) instead of (n_points, n_outputs), and arguments ``y``, ``q``
        and ``confidence`` are given with shape (n_points,) (or broadcastable to
        it).

    Attributes
    ----------
    means : ndarray of shape (n_components, n_points, n_outputs)
        Component means, read-only.

    variances : ndarray of shape (n_components, n_points, n_outputs)
        Epistemic component variances, without the noise, read-only.

    noise_variance : ndarray of shape (n_points, n_outputs) or \
            (n_components, n_points, n_outputs)
        Aleatoric variance, read-only: of shape (n_points, n_outputs) when it is
        shared by the components, of shape (n_components, n_points, n_outputs)
        when a three-dimensional ``noise_variance`` gave each component its
        own.

    single_output : bool
        Whether the output axis is dropped from results and arguments.

    n_components : int
        Number of mixture components (particles).

    n_points : int
        Number of points, e.g. rows of the ``X`` passed to ``predict_dist``.

    n_outputs : int
        Number of regression targets.

    weights : ndarray of shape (n_components,)
        Component weights, all equal to ``1 / n_components``.

    See Also
    --------
    scipy.stats.norm : The one-component case, without batching.

    Notes
    -----
    Below, the "batch shape" is (n_points,) if ``single_output`` is True and
    (n_points, n_outputs) otherwise. For one point and output, with component
    means :math:`\\mu_k`, epistemic variances :math:`v_k` and noise variances
    :math:`\\sigma^2_k` (all equal to :math:`\\sigma^2` when the noise is
    shared), the density is

    .. math::

        p(y) = \\frac{1}{K} \\sum_{k=1}^K \\mathcal{N}(y; \\mu_k, s_k^2),
        \\qquad s_k^2 = v_k + \\sigma^2_k.

    Every method uses the total variance :math:`s_k^2` of each component. The
    weights are equal because each particle is an independent SWAG run, a
    sample of equal standing from the (multi-modal) posterior over weights. By
    the law of total variance, with :math:`\\bar\\mu = \\frac{1}{K}\\sum_k \\mu_k`,

    .. math::

        \\operatorname{Var}[y]
        = \\underbrace{\\frac{1}{K}\\sum_k v_k
          + \\frac{1}{K}\\sum_k (\\mu_k - \\bar\\mu)^2}_{\\text{epistemic}}
        + \\underbrace{\\frac{1}{K}\\sum_k \\sigma^2_k}_{\\text{aleatoric}}.

    The epistemic part measures the uncertainty about the network weights, both
    within a particle (:math:`v_k`) and between particles (the spread of the
    :math:`\\mu_k`); it shrinks with more data. The aleatoric part is the noise
    of the observations and does not.

    :meth:`logpdf` and :meth:`pdf` of a multi-output mixture give the joint
    density over the outputs of each point: the outputs of one network draw are
    joint, so the component is shared and
    :math:`p(y) = \\frac{1}{K}\\sum_k \\prod_o \\mathcal{N}(y_o; \\mu_{ko},
    s^2_{ko})`, of shape (n_points,). :meth:`cdf`, :meth:`sf`,
    :meth:`logcdf`, :meth:`logsf`, :meth:`ppf`, :meth:`isf`, :meth:`median`,
    :meth:`interval` and :meth:`crps` are marginal, per output.

    The continuous ranked probability score of :meth:`crps` has a closed form
    for a Gaussian mixture [3]_. With
    :math:`A(m, s^2) = \\mathbb{E}|Z|` for :math:`Z \\sim \\mathcal{N}(m, s^2)`,
    that is :math:`A(m, s^2) = m\\,(2\\Phi(m/s) - 1) + 2s\\,\\varphi(m/s)`,

    .. math::

        \\operatorname{CRPS}(F, y) = \\int (F(x) - \\mathbb{1}\\{x \\ge y\\})^2 dx
        = \\frac{1}{K}\\sum_k A(y - \\mu_k, s_k^2)
        - \\frac{1}{2K^2}\\sum_{j,k} A(\\mu_j - \\mu_k, s_j^2 + s_k^2).

    The quantile function has no closed form: :meth:`ppf` finds it with a
    vectorised safeguarded Newton iteration on the log tail probability
    (:mod:`sklearn_swag._posterior.quantiles`).

    References
    ----------
    .. [1] W. J. Maddox, T. Garipov, P. Izmailov, D. Vetrov and A. G. Wilson,
       "A Simple Baseline for Bayesian Uncertainty in Deep Learning", NeurIPS
       2019.
    .. [2] A. G. Wilson and P. Izmailov, "Bayesian Deep Learning and a
       Probabilistic Perspective of Generalization", NeurIPS 2020.
    .. [3] E. P. Grimit, T. Gneiting, V. J. Berrocal and N. A. Johnson, "The
       continuous ranked probability score for circular variables and its
       application to mesoscale forecast ensemble verification", Quarterly
       Journal of the Royal Meteorological Society 132, 2006.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_swag._posterior.normal_mixture import NormalMixture
    >>> means, variances = np.zeros((4, 3, 1)), np.ones((4, 3, 1))
    >>> dist = NormalMixture(means, variances, noise_variance=0.1)
    >>> dist
    NormalMixture(n_points=3, n_outputs=1, n_components=4)
    >>> dist.mean().shape
    (3,)
    >>> lower, upper = dist.interval(0.9)
    >>> lower.shape, upper.shape
    ((3,), (3,))
    >>> dist.rvs(size=10, random_state=0).shape
    (10, 3)
    >>> multi = NormalMixture(
    ...     np.zeros((4, 3, 2)), np.ones((4, 3, 2)), single_output=False
    ... )
    >>> multi.var().shape
    (3, 2)
    >>> multi.logpdf(np.zeros((3, 2))).shape
    (3,)
    >>> multi.crps(np.zeros((3, 2))).shape
    (3, 2)

    Heteroscedastic particles give each component its own noise variance:

    >>> noise = np.full((4, 3, 1), 0.5)
    >>> noisy = NormalMixture(means, variances, noise_variance=noise)
    >>> noisy.noise_variance.shape, noisy.aleatoric_var().shape
    ((4, 3, 1), (3,))
    """

    def __init__(
        self,
        means: ArrayLike,
        variances: ArrayLike,
        noise_variance: ArrayLike = 0.0,
        *,
        single_output: bool = True,
    ) -> None:
        means = _as_float64(means, "means", copy=True)
        variances = _as_float64(variances, "variances", copy=True)
        noise = _as_float64(noise_variance, "noise_variance")

        if means.ndim != 3:
            raise ValueError(
                "means must have shape (n_components, n_points, n_outputs); got "
                f"an array of shape {means.shape}."
            )
        if variances.shape != means.shape:
            raise ValueError(
                f"variances must have the shape of means, {means.shape}; got "
                f"{variances.shape}."
            )
        n_components, n_points, n_outputs = means.shape
        if n_components < 1:
            raise ValueError("NormalMixture needs at least one component.")
        if n_outputs < 1:
            raise ValueError("NormalMixture needs at least one output.")
        if single_output and n_outputs != 1:
            raise ValueError(
                f"single_output=True needs n_outputs == 1; got n_outputs={n_outputs}."
            )
        if not np.all(np.isfinite(means)):
            raise ValueError("means must be finite (no NaN or infinity).")
        if not np.all(np.isfinite(variances)):
            raise ValueError("variances must be finite (no NaN or infinity).")
        if np.any(variances < 0):
            raise ValueError("variances must be non-negative.")

        per_component = noise.ndim == 3
        if per_component:
            target_name = "(n_components, n_points, n_outputs)"
            target_shape = (n_components, n_points, n_outputs)
        else:
            target_name = "(n_points, n_outputs)"
            target_shape = (n_points, n_outputs)
            if single_output and noise.shape == (n_points,):
                noise = noise[:, np.newaxis]
        try:
            noise = np.array(np.broadcast_to(noise, target_shape))
        except ValueError:
            raise ValueError(
                f"noise_variance of shape {noise.shape} cannot be broadcast to "
                f"{target_name} = {target_shape}."
            ) from None
        if not np.all(np.isfinite(noise)):
            raise ValueError("noise_variance must be finite (no NaN or infinity).")
        if np.any(noise < 0):
            raise ValueError("noise_variance must be non-negative.")

        total_var = variances + noise
        if not np.all(total_var > 0):
            raise ValueError(
                "The total variance variances + noise_variance must be positive "
                f"everywhere; it is zero in {int(np.sum(total_var <= 0))} entries. "
                "Pass a positive noise_variance when components are point masses."
            )

        self.means = _read_only(means)
        self.variances = _read_only(variances)
        self.noise_variance = _read_only(noise)
        self.single_output = bool(single_output)
        self._per_component_noise = per_component
        self._scale = np.sqrt(total_var)
        self._log_scale = np.log(self._scale)

    # ------------------------------------------------------------------ shapes

    @property
    def n_components(self) -> int:
        """Number of mixture components (particles)."""
        return self.means.shape[0]

    @property
    def n_points(self) -> int:
        """Number of points."""
        return self.means.shape[1]

    @property
    def n_outputs(self) -> int:
        """Number of outputs."""
        return self.means.shape[2]

    @property
    def weights(self) -> NDArray:
        """Component weights, all equal to ``1 / n_components``."""
        return np.full(self.n_components, 1.0 / self.n_components)

    @property
    def _batch_shape(self) -> tuple[int, ...]:
        if self.single_output:
            return (self.n_points,)
        return (self.n_points, self.n_outputs)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_points={self.n_points}, "
            f"n_outputs={self.n_outputs}, n_components={self.n_components})"
        )

    def _to_internal(self, value: ArrayLike, name: str) -> NDArray:
        """Broadcast an argument of the batch shape to (n_points, n_outputs)."""
        array = _as_float64(value, name)
        try:
            array = np.broadcast_to(array, self._batch_shape)
        except ValueError:
            raise ValueError(
                f"{name} of shape {array.shape} cannot be broadcast to the batch "
                f"shape {self._batch_shape}."
            ) from None
        if self.single_output:
            array = array[:, np.newaxis]
        return array

    def _to_public(self, array: NDArray) -> NDArray:
        """Drop the output axis of an (n_points, n_outputs) result if needed."""
        if self.single_output:
            return array[:, 0]
        return array

    def _check_probability(self, value: ArrayLike, name: str) -> NDArray:
        """Broadcast a probability argument and check that it lies in [0, 1]."""
        array = self._to_internal(value, name)
        if not np.all((array >= 0) & (array <= 1)):
            raise ValueError(f"{name} must lie in [0, 1] (and not be NaN).")
        return array

    def _standardize(self, y: NDArray) -> NDArray:
        """Per-component z-scores of y, of shape (n_components, n_points, n_outputs)."""
        return (y - self.means) / self._scale

    # ------------------------------------------------------------------ moments

    def mean(self) -> NDArray:
        """Mean of the mixture: the average of the component means.

        Returns
        -------
        mean : ndarray of the batch shape
            Predictive mean.
        """
        return self._to_public(self.means.mean(axis=0))

    def epistemic_var(self) -> NDArray:
        """Epistemic part of the variance, from the uncertainty about the weights.

        It is the mean of the component variances plus the variance of the
        component means, without the noise variance.

        Returns
        -------
        epistemic_var : ndarray of the batch shape
            Epistemic variance.
        """
        center = self.means.mean(axis=0)
        spread = np.mean((self.means - center) ** 2, axis=0)
        return self._to_public(self.variances.mean(axis=0) + spread)

    def aleatoric_var(self) -> NDArray:
        """Aleatoric part of the variance: the mean noise variance.

        It is the noise variance when the components share it, and the mean of
        the component noise variances when each has its own.

        Returns
        -------
        aleatoric_var : ndarray of the batch shape
            Noise variance, broadcast to all points.
        """
        if self._per_component_noise:
            return self._to_public(self.noise_variance.mean(axis=0))
        return self._to_public(self.noise_variance.copy())

    def var(self) -> NDArray:
        """Total variance, by the law of total variance.

        It is the sum of :meth:`epistemic_var` and :meth:`aleatoric_var`.

        Returns
        -------
        var : ndarray of the batch shape
            Predictive variance.
        """
        return self.epistemic_var() + self.aleatoric_var()

    def std(self) -> NDArray:
        """Standard deviation, the square root of :meth:`var`.

        Returns
        -------
        std : ndarray of the batch shape
            Predictive standard deviation.
        """
        return np.sqrt(self.var())

    # ------------------------------------------------------------------ densities

    def logpdf(self, y: ArrayLike) -> NDArray:
        """Log of the probability density at ``y``.

        For several outputs (``single_output=False``) it is the joint log
        density over the outputs of each point, the component being shared by
        the outputs of a point.

        Parameters
        ----------
        y : array-like of the batch shape
            Values, or an array broadcastable to the batch shape.

        Returns
        -------
        logpdf : ndarray of shape (n_points,)
            Log density, computed with ``logsumexp`` so that it stays finite far
            in the tails.
        """
        y = self._to_internal(y, "y")
        z = self._standardize(y)
        log_components = -0.5 * z**2 - self._log_scale - 0.5 * _LOG_2PI
        joint = log_components.sum(axis=-1)
        return logsumexp(joint, axis=0) - math.log(self.n_components)

    def pdf(self, y: ArrayLike) -> NDArray:
        """Probability density at ``y``.

        For several outputs it is the joint density over the outputs of each
        point, see :meth:`logpdf`.

        Parameters
        ----------
        y : array-like of the batch shape
            Values, or an array broadcastable to the batch shape.

        Returns
        -------
        pdf : ndarray of shape (n_points,)
            Density.
        """
        return np.exp(self.logpdf(y))

    def cdf(self, y: ArrayLike) -> NDArray:
        """Marginal cumulative distribution function at ``y``, per output.

        Parameters
        ----------
        y : array-like of the batch shape
            Values, or an array broadcastable to the batch shape.

        Returns
        -------
        cdf : ndarray of the batch shape
            Probability of a draw below ``y``.
        """
        z = self._standardize(self._to_internal(y, "y"))
        return self._to_public(ndtr(z).mean(axis=0))

    def sf(self, y: ArrayLike) -> NDArray:
        """Marginal survival function ``1 - cdf(y)``, per output.

        Parameters
        ----------
        y : array-like of the batch shape
            Values, or an array broadcastable to the batch shape.

        Returns
        -------
        sf : ndarray of the batch shape
            Probability of a draw above ``y``, accurate in the upper tail.
        """
        z = self._standardize(self._to_internal(y, "y"))
        return self._to_public(ndtr(-z).mean(axis=0))

    def logcdf(self, y: ArrayLike) -> NDArray:
        """Log of the marginal cumulative distribution function, per output.

        Parameters
        ----------
        y : array-like of the batch shape
            Values, or an array broadcastable to the batch shape.

        Returns
        -------
        logcdf : ndarray of the batch shape
            Log probability of a draw below ``y``, finite far in the lower tail.
        """
        z = self._standardize(self._to_internal(y, "y"))
        log_cdf = logsumexp(log_ndtr(z), axis=0) - math.log(self.n_components)
        return self._to_public(log_cdf)

    def logsf(self, y: ArrayLike) -> NDArray:
        """Log of the marginal survival function, per output.

        Parameters
        ----------
        y : array-like of the batch shape
            Values, or an array broadcastable to the batch shape.

        Returns
        -------
        logsf : ndarray of the batch shape
            Log probability of a draw above ``y``, finite far in the upper tail.
        """
        z = self._standardize(self._to_internal(y, "y"))
        log_sf = logsumexp(log_ndtr(-z), axis=0) - math.log(self.n_components)
        return self._to_public(log_sf)

    # ------------------------------------------------------------------ scores

    def crps(self, y: ArrayLike) -> NDArray:
        """Continuous ranked probability score at ``y``, marginal per output.

        The CRPS :math:`\\int (F(x) - \\mathbb{1}\\{x \\ge y\\})^2 dx` compares
        the whole predictive distribution with an observation, in the units of
        ``y``; lower is better, and it reduces to the absolute error for a
        point prediction. It is computed in closed form (see Notes), in chunks
        of points so that the memory stays bounded for many components.

        Parameters
        ----------
        y : array-like of the batch shape
            Observed values, or an array broadcastable to the batch shape.

        Returns
        -------
        crps : ndarray of the batch shape
            Score of each point (and output), non-negative.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_swag._posterior.normal_mixture import NormalMixture
        >>> dist = NormalMixture(np.zeros((5, 3, 1)), np.ones((5, 3, 1)))
        >>> dist.crps(np.array([0.0, 1.0, -2.0])).shape
        (3,)
        """
        y = self._to_internal(y, "y")
        return self._to_public(mixture_crps(y, self.means, self._scale))

    # ------------------------------------------------------------------ quantiles

    def ppf(self, q: ArrayLike) -> NDArray:
        """Marginal quantile function (inverse of :meth:`cdf`), per output.

        Parameters
        ----------
        q : float or array-like of the batch shape
            Lower-tail probabilities in [0, 1], broadcastable to the batch shape.

        Returns
        -------
        ppf : ndarray of the batch shape
            Quantiles: ``-inf`` where ``q == 0`` and ``inf`` where ``q == 1``.
        """
        q = self._check_probability(q, "q")
        # 1 - q is exact for q >= 0.5, the only values where it is used.
        return self._to_public(self._quantile(q, 1.0 - q))

    def isf(self, q: ArrayLike) -> NDArray:
        """Marginal inverse survival function, ``ppf(1 - q)``, per output.

        Parameters
        ----------
        q : float or array-like of the batch shape
            Upper-tail probabilities in [0, 1], broadcastable to the batch shape.

        Returns
        -------
        isf : ndarray of the batch shape
            Values with probability ``q`` of a draw above them, accurate for
            small ``q``.
        """
        q = self._check_probability(q, "q")
        return self._to_public(self._quantile(1.0 - q, q))

    def median(self) -> NDArray:
        """Marginal median, ``ppf(0.5)``, per output.

        Returns
        -------
        median : ndarray of the batch shape
            Median.
        """
        return self.ppf(0.5)

    def interval(self, confidence: ArrayLike) -> tuple[NDArray, NDArray]:
        """Equal-tailed interval with the given probability mass, per output.

        Parameters
        ----------
        confidence : float or array-like of the batch shape
            Probability mass in [0, 1] between the end points, broadcastable to
            the batch shape.

        Returns
        -------
        lower : ndarray of the batch shape
            ``ppf((1 - confidence) / 2)``.

        upper : ndarray of the batch shape
            ``ppf((1 + confidence) / 2)``.
        """
        confidence = self._check_probability(confidence, "confidence")
        alpha = 0.5 * (1.0 - confidence)
        lower = self._quantile(alpha, 1.0 - alpha)
        upper = self._quantile(1.0 - alpha, alpha)
        return self._to_public(lower), self._to_public(upper)

    def _quantile(self, lower_tail: NDArray, upper_tail: NDArray) -> NDArray:
        """Value x with cdf(x) = lower_tail and sf(x) = upper_tail."""
        return mixture_quantile(
            lower_tail, upper_tail, self.means, self._scale, self._log_scale
        )

    # ------------------------------------------------------------------ sampling

    def rvs(
        self,
        size: int | tuple[int, ...] | None = None,
        random_state: int | np.random.RandomState | None = None,
    ) -> NDArray:
        """Draw random samples.

        For each draw and point a component is chosen uniformly at random, then
        a normal value is drawn with its mean and total variance. With several
        outputs the component is shared by all the outputs of a point, as the
        outputs of one network draw are joint.

        Parameters
        ----------
        size : int or tuple of int, default=None
            Sample shape. None gives one draw of the batch shape, an int ``n``
            gives shape (n, \\*batch_shape), a tuple gives
            (\\*size, \\*batch_shape).

        random_state : int, RandomState instance or None, default=None
            Controls the draws. Pass an int for reproducible output across
            calls.

        Returns
        -------
        samples : ndarray of shape (\\*size, \\*batch_shape)
            Random draws.
        """
        rng = check_random_state(random_state)
        if size is None:
            sample_shape: tuple[int, ...] = ()
        elif isinstance(size, numbers.Integral):
            sample_shape = (int(size),)
        else:
            sample_shape = tuple(int(n) for n in size)
        if any(n < 0 for n in sample_shape):
            raise ValueError(f"size must be non-negative; got {size!r}.")

        n_points, n_outputs = self.n_points, self.n_outputs
        component = rng.randint(self.n_components, size=(*sample_shape, n_points))
        points = np.arange(n_points)
        loc = self.means[component, points]
        scale = self._scale[component, points]
        noise = rng.standard_normal(size=(*sample_shape, n_points, n_outputs))
        samples = loc + scale * noise
        if self.single_output:
            return samples[..., 0]
        return samples
