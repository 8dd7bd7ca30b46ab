"""The MultiSWAG regressor."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import RegressorMixin

from ._base import MultiSWAGBase, as_float32
from ._inputs import fit_inputs
from ._network.mlp import regressor_mlp_defaults
from ._posterior.diagnostics import target_variance, warn_misfits
from ._posterior.draws import output_moments
from ._posterior.noise import GaussianNLL, check_output_width, fitted_noise_factor
from ._posterior.normal_mixture import NormalMixture
from ._rows import target_scaling
from ._sklearn_compat import StrOptions, _fit_context


class MultiSWAGRegressor(RegressorMixin, MultiSWAGBase):
    """Neural-network regression with MultiSWAG predictive uncertainty.

    ``n_models`` independent networks ("particles") are trained with skorch.
    Each first trains for ``pretrain_epochs`` epochs, then for ``swag_epochs``
    more during which, at the end of every epoch, its weights are added to a
    Gaussian fit of the weights it visits: a running mean, a running mean of
    squares and the last ``rank`` deviation vectors (SWAG, Maddox et al. 2019).
    A prediction averages ``n_samples`` networks drawn from each particle's
    Gaussian and mixes the particles with equal weights (MultiSWAG, Wilson &
    Izmailov 2020), adding the observation noise estimated on the training
    data.

    Parameters
    ----------
    module : torch.nn.Module subclass, torch.nn.Module instance or None, \
            default=None
        The network of one particle. A class is instantiated once per
        particle with the ``module__*`` parameters; an instance is copied
        and re-initialised (every submodule's ``reset_parameters``) per
        particle. None builds :class:`~sklearn_swag.MLP` with the number of
        inputs and outputs taken from the data and GELU activations (smooth
        functions fit far better than with ReLU on the small UCI data sets:
        yacht NLL 0.07 against 0.73; ``module__activation`` changes it); with
        heteroscedastic noise (the default, see ``noise``), two such networks
        side by side, one for the means and one for the variances. The
        network maps a float32 tensor of shape (n_samples, n_features), or
        of the shape of ``X`` such as (n_samples, C, H, W), to
        (n_samples, n_outputs), or to (n_samples,) for one output.
    n_models : int, default=5
        Number of particles, each an independent SWAG run with its own
        initialisation, mini-batch order and posterior draws.
    rank : int, default=20
        Maximum rank K of the low-rank part of each particle's covariance: the
        number of most recent deviation vectors kept. 0 gives a diagonal
        covariance (SWAG-Diagonal).
    deviation_dtype : {"float32", "float16"}, default="float32"
        Storage type of the deviation vectors, the bulk of a fitted model:
        it holds ``n_models * n_params * (16 + rank * b)`` bytes of SWAG
        moments, with ``b`` = 4 for float32 and 2 for float16 (the first and
        second moments stay float64 for precision). float16 halves the
        deviations at a relative rounding of about 5e-4 per entry.
    pretrain_epochs : int or "auto", default="auto"
        Epochs of plain training before SWAG collection starts; with early
        stopping (the default, see ``early_stopping``), the most that run.
        "auto": enough epochs for 20,000 optimizer steps, and at least 200
        (6,667 epochs on 277 rows at ``batch_size=128``, 200 from 25,600
        rows on), so that a small data set is not stopped short.
    swag_epochs : int, default=30
        Epochs during which snapshots are collected (one at the end of every
        epoch with ``swag_every=1``). 0 skips SWAG: every particle is its
        final network, which is a deep ensemble (and ``n_samples`` draws are
        then all the same network).
    swa_lr : float, "auto" or None, default="auto"
        Learning rate of the SWAG epochs: a constant rate that makes the
        iterates explore the mode, which is what SWAG's Gaussian describes.
        The rate moves from ``lr`` to ``swa_lr`` over the first
        ``anneal_epochs`` SWAG epochs along a cosine, as
        :class:`torch.optim.swa_utils.SWALR` does. "auto" is
        ``min(0.01, 0.1 * batch_size / n_train)``: the rate at which constant
        SGD samples a posterior shrinks with the share of the rows in a batch
        (Mandt et al. 2017), and this choice did best on the UCI benchmark.
        None keeps ``lr`` throughout. With SGD, as in the SWAG papers, pass
        ``optimizer=torch.optim.SGD, optimizer__momentum=0.9``.
    anneal_epochs : int, default=5
        SWAG epochs over which the learning rate moves to ``swa_lr``; 0
        switches at once.
    swag_every : float, default=1.0
        Epochs between snapshots in the SWAG phase. Below 1, several
        snapshots are taken per epoch: one every ``round(swag_every *
        steps_per_epoch)`` training steps (at least one step). A value that
        leaves no snapshot in ``swag_epochs`` is refused.
    lr : float, default=0.003
        Learning rate of the optimizer in the pretraining (and in the SWAG
        epochs with ``swa_lr=None``). The defaults of the epochs, ``lr`` and
        ``batch_size`` are tuned for standardised tabular data (see the
        Notes).
    batch_size : int or None, default=128
        Rows per mini-batch; None trains on the whole data set in one batch.
    n_samples : int, default=20
        Posterior draws per particle at prediction time.
    scale : float, default=1.0
        Multiplies each particle's posterior covariance. 1 is the SWAG
        Gaussian as fitted; smaller values shrink the weight-space spread
        (Maddox et al. 2019 use 0.5 in places), 0 predicts with each
        particle's SWA mean alone.
    bn_update_rows : int or None, default=None
        For networks with ``BatchNorm`` layers: the number of training rows
        on which the normalisation statistics of every weight vector that
        prediction evaluates (each posterior draw, or the SWA mean at
        ``scale=0``) are recomputed, as SWAG requires (``bn_update``, Maddox
        et al. 2019): the exact means and variances over these rows, passed
        in one batch. None (the default) uses every training row, so the
        statistics are those of the training data; an integer uses that
        many rows, drawn with ``random_state``, faster but off by their
        sampling error (see the user guide); 0 skips the
        refresh and predicts with the statistics the particles had at the
        end of training. The rows are stored with the fitted model. A
        prediction costs one forward pass over these rows per draw, on top
        of the rows predicted (see the user guide). Networks without
        normalisation statistics ignore it.
    noise : {"auto", "homoscedastic", "heteroscedastic"}, default="auto"
        The observation noise. "auto": "heteroscedastic" with the built-in
        network and loss (``module=None, criterion=None``; on the standard
        UCI benchmark it is as accurate and better calibrated, see the
        defaults page of the user guide), "homoscedastic" with a user's
        network or loss. "homoscedastic": one noise variance per target,
        estimated after training (see ``validation_fraction``).
        "heteroscedastic": the network returns a mean and a variance per
        target (``2 * n_outputs`` columns: the means, then values mapped to
        variances by a softplus); every point gets its own noise. The
        default criterion fits the means by their squared error and the
        variances by the Gaussian negative log-likelihood with the means
        held fixed, and the default network computes them with separate
        weights, so that the network cannot explain residuals as noise
        (Stirn et al. 2023). ``criterion__mean_fit="nll"`` trains both by
        the likelihood as deep ensembles do (Lakshminarayanan et al. 2017),
        ``"beta"`` weights it by the variance to the power
        ``criterion__beta`` (Seitzer et al. 2022).
    normalize_y : bool or "auto", default="auto"
        Train on standardised targets (each target centred and divided by
        its standard deviation); every prediction is in the target's own
        units either way. "auto" standardises for the default network
        (``module=None``) and not for a user module, whose output layer
        may expect the raw targets.
    validation_fraction : float in [0, 1), default=0.1
        Share of the training rows held out (drawn with ``random_state``)
        to estimate the noise: the homoscedastic variance, or the factor
        that calibrates the heteroscedastic variances, that maximises the
        likelihood of the held-out rows under the predictive distribution.
        The particles train on the other rows. 0 trains on every row and
        takes the mean squared training residual as the noise variance (or
        the learned variances as they are), which is optimistic for a
        network that fits its training data closely.
    early_stopping : bool or "auto", default="auto"
        Stop each particle's pretraining when its loss on the held-out rows
        (``validation_fraction``) has not improved by more than ``tol`` for
        ``n_iter_no_change`` epochs; ``pretrain_epochs`` is then the most it
        runs. Each particle goes back to the weights of its best epoch
        (``pretrain_epochs_``) and starts its SWAG epochs from there, with a
        fresh optimizer state; a particle's stopping depends on its own
        losses alone, and a group trains on without the particles that have
        stopped (see the scaling guide). The held-out rows then also
        calibrate the noise, as without early stopping. "auto" stops early
        when there are held-out rows (``validation_fraction > 0``) and runs
        every pretraining epoch otherwise.
    n_iter_no_change : int or "auto", default="auto"
        Epochs without improvement before a particle stops pretraining.
        "auto": the epochs of 2,000 optimizer steps, and at least 10, so that
        the patience does not shrink with the data (at full batch an epoch
        is one step).
    tol : float, default=1e-4
        Improvement of the held-out loss that counts (with the default
        heteroscedastic loss, of the means' squared error: the
        variances take the weights of the means' best epoch).
    optimizer : torch.optim.Optimizer subclass, default=torch.optim.Adam
        Optimizer of every particle; its options are set with
        ``optimizer__*`` (for example ``optimizer__weight_decay``). It must
        update every weight from its own gradients (SGD, Adam, AdamW,
        RMSprop, Adagrad, ...), since a group's particles are stacked in one
        set of tensors: ``fit`` refuses one that would couple them (LBFGS,
        factored or per-tensor optimizers) before training.
    criterion : torch.nn.Module subclass or instance, default=None
        Training loss of one particle, options set with ``criterion__*``.
        None is :class:`torch.nn.MSELoss` with homoscedastic noise and the
        Gaussian negative log-likelihood of the mean and variance outputs
        with heteroscedastic noise.
    callbacks : list of skorch callbacks or None, default=None
        skorch callbacks (instances or ``(name, callback)`` pairs) that run in
        every particle group, a copy each, after the package's own. They see
        the group's skorch net: its ``module_`` is the stack of the group's
        particles (outputs of shape (n_particles, n_rows, n_outputs)), its
        optimizer updates every particle at once, and ``net.predict(X)`` is
        the mean over the group's particles, in the units the networks learn
        (standardised targets with ``normalize_y``). They may record scores
        (``EpochScoring``, ``PassthroughScoring``; the group's records land in
        ``history_["groups"]``) and change the learning rate
        (``LRScheduler``, not together with ``swa_lr``); they must not change
        the module, the criterion or the data. skorch's ``EarlyStopping`` is
        refused (it stops by raising ``KeyboardInterrupt``).
    device : str, torch.device or list of them, default="cpu"
        Where particles train and predict: "cpu", "cuda" (the particle groups
        go round robin over the visible GPUs), "cuda:<index>", or a list of
        devices that the groups go round robin over (for example
        ``["cuda:0", "cuda:2"]``). Use ``n_jobs`` at least the number of
        devices to keep every device busy. Prediction runs on the first
        device. The fitted moments are always stored on the CPU, and a model
        saved with a GPU device loads on a machine without one (on the CPU,
        with a warning).
    n_jobs : int or None, default=None
        Number of joblib workers; the particles are split into that many
        groups. None means 1 (all particles in one group, trained in this
        process) unless in a :func:`joblib.parallel_backend` context; -1 uses
        all processors. On a CPU each group takes as many torch threads as
        its work per step can use: one for a small network, whose threads
        would only wait on each other. Every particle's seeds are the same
        for any value, so results agree up to floating-point rounding (see
        the Notes).
    warm_start : bool, default=False
        When True, ``fit`` keeps the particles fitted before and trains only
        the new ones up to ``n_models`` (same data and network, checked),
        then refits the noise with all of them. Particle ``i`` is the one a
        fresh fit with ``n_models > i`` would train, so an ensemble can grow
        until a validation score stops improving, at the cost of the new
        particles alone.
    verbose : int, default=0
        Above 0, a progress bar per group of particles over all its epochs
        (pretraining and SWAG), with the phase, the mean training loss and,
        with early stopping, how many particles have stopped.
    random_state : int, RandomState instance or None, default=None
        Seeds every particle's initialisation, mini-batch order and
        posterior draws, and the held-out rows. Particle ``i``'s seeds
        depend on ``random_state`` and ``i`` alone, so it is the same
        particle for any ``n_models``. None takes fresh entropy from the
        operating system; the global torch (CPU and CUDA) and numpy random
        states are never read nor changed.
    **kwargs
        Routed parameters: ``module__*``, ``optimizer__*``, ``criterion__*``
        and ``iterator_train__*`` (``shuffle``, ``drop_last``), as in skorch.
        They are visible to ``get_params`` and ``set_params`` (so grid search
        reaches them) and read like attributes (``reg.module__activation``).
        As for every parameter, ``fit`` checks them: an unknown name raises an
        error naming it.

    Attributes
    ----------
    swag_mean_ : ndarray of shape (n_models, n_params)
        Each particle's SWA mean: the average of its snapshots (float64).
    swag_sq_mean_ : ndarray of shape (n_models, n_params)
        Each particle's average of squared snapshots (float64).
    swag_deviations_ : ndarray of shape (n_models, K, n_params)
        The K = min(rank, swag_epochs) most recent deviations of each
        particle from its running mean, oldest first (``deviation_dtype``).
    n_snapshots_ : ndarray of shape (n_models,)
        Snapshots collected by each particle.
    noise_variance_ : ndarray of shape (`n_outputs_`,)
        Observation-noise variance of each target, in the target's units
        (see ``validation_fraction``). With heteroscedastic noise, the
        average calibrated noise variance over the held-out rows (the
        training rows without any), for reference: predictions use each
        point's own.
    noise_calibration_ : ndarray of shape (`n_outputs_`,)
        Only with heteroscedastic noise: the factor applied to the
        variances the networks predict, fitted on the held-out rows (1
        without them).
    y_mean_, y_scale_ : ndarray of shape (`n_outputs_`,)
        The target scaling the networks were trained with (zeros and ones
        without ``normalize_y``).
    n_train_samples_ : int
        Rows the particles trained on (the others were held out).
    n_samples_ : int
        Posterior draws per particle that prediction takes: ``n_samples``,
        or 1 for a deep ensemble (``swag_epochs=0``).
    scale_ : float
        Posterior scale that prediction uses: ``scale``, or 0 for a deep
        ensemble.
    bn_update_X_ : ndarray of shape (n_bn_rows, ...) or None
        The training rows (each of shape `input_shape_`) on which the
        normalisation statistics of every evaluated weight vector are
        recomputed (see ``bn_update_rows``); None for a network without
        ``BatchNorm`` or with ``bn_update_rows=0``.
    train_loss_ : ndarray of shape (n_models,)
        Each particle's training loss on its last batch.
    history_ : dict
        The training run of every particle, epoch by epoch: ``"epoch"``
        (1, 2, ...) and arrays of shape (n_models, n_epochs): ``"phase"``
        ("pretrain" or "swag"), ``"lr"`` (the learning rate),
        ``"train_loss"`` (mean training loss over the epoch's batches, in the
        units the networks learn: standardised targets with ``normalize_y``)
        and ``"valid_loss"`` (the held-out loss early stopping watches, with
        ``early_stopping``, NaN otherwise: with the default heteroscedastic
        loss, the squared error of the means); a particle whose group
        stopped pretraining earlier ends in NaN and "", and a particle's
        losses are NaN in the pretraining epochs its group ran after it had
        stopped (it was left out of them). ``"start_loss"``, shape
        (n_models,): each particle's loss on its first mini-batch, before any
        update (the reference of the divergence warnings). ``"groups"``:
        each particle group's skorch history (a list of one dict per epoch,
        with what the user's ``callbacks`` recorded).
    pretrain_epochs_ : ndarray of shape (n_models,)
        The pretraining epoch whose weights each particle's SWAG phase
        started from: ``pretrain_epochs``, or its best epoch with
        ``early_stopping``.
    particles_ : ParticleStack
        The trained networks (structure, final weights, buffers) on the CPU.
    particle_seeds_ : ndarray of shape (n_models, 3)
        Each particle's seeds for initialisation, data order and draws.
    n_params_ : int
        Number of weights of one network.
    n_outputs_ : int
        Number of targets.
    n_features_in_ : int
        Number of features seen during fit (values per sample for N-D ``X``).
    input_shape_ : tuple of int
        Shape of one sample seen during fit: ``(n_features_in_,)``, or
        ``(C, H, W)`` for images; prediction takes samples of this shape.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column
        names.

    See Also
    --------
    sklearn.gaussian_process.GaussianProcessRegressor : Exact Gaussian
        process regression, also with ``predict(X, return_std=True)``.
    sklearn.linear_model.BayesianRidge : Bayesian linear regression.

    Notes
    -----
    A draw of particle :math:`m` is
    :math:`\\theta = \\bar\\theta_m + \\sqrt{s}(\\sigma_m \\odot z_1/\\sqrt2 +
    D_m^\\top z_2/\\sqrt{2(K-1)})` (see ``sklearn_swag._posterior.swag``). Particle
    :math:`m`'s predictive component at :math:`x` is a normal with the mean
    :math:`\\mu_m(x)` and variance :math:`v_m(x)` of its ``n_samples``
    network outputs plus the noise variance; the prediction is the equal-
    weight mixture of the components. The draws are seeded per particle, so
    a row gets the same prediction whatever else is in the batch.

    Every particle's initialisation, mini-batch order, dropout masks and
    posterior draws are seeded from ``random_state`` alone, whatever
    ``n_jobs`` and the joblib backend; groups of other sizes round
    differently in the last bits, which long trainings amplify, so keep
    ``n_jobs`` fixed for bit-identical refits (see :ref:`n_jobs` for the one
    exception, user modules with stochastic layers that cannot be batched).

    Prediction depends on the fitted state alone (``set_params`` after
    ``fit`` changes no prediction) and is thread-safe. Networks with
    ``BatchNorm`` get their normalisation statistics recomputed for every
    weight vector prediction evaluates (see ``bn_update_rows`` and the user
    guide page on networks).

    The defaults (64-64 GELU networks for the means and the noise, Adam at
    learning rate 0.003 in batches of 128, at most 20,000 optimizer steps of
    pretraining stopped early on the 10% of rows held out, then 30 SWAG
    epochs at ``swa_lr="auto"``, 5 particles) were chosen on the eight data
    sets of the UCI regression benchmark with their standard splits
    (``benchmarks/bench_uci.py``; see the user guide).

    To select hyper-parameters on the predictive likelihood rather than on
    :meth:`score` (R², which scikit-learn requires of a regressor), pass
    ``scoring=neg_nll_scorer`` (or another scorer of
    :func:`~sklearn_swag.dist_scorers`) to ``GridSearchCV`` or
    ``cross_validate``; they work on pipelines too.

    References
    ----------
    .. [1] W. J. Maddox, T. Garipov, P. Izmailov, D. Vetrov and A. G. Wilson,
       "A Simple Baseline for Bayesian Uncertainty in Deep Learning",
       NeurIPS 2019.
    .. [2] A. G. Wilson and P. Izmailov, "Bayesian Deep Learning and a
       Probabilistic Perspective of Generalization", NeurIPS 2020.
    .. [3] B. Lakshminarayanan, A. Pritzel and C. Blundell, "Simple and
       Scalable Predictive Uncertainty Estimation using Deep Ensembles",
       NeurIPS 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_swag import MultiSWAGRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-1, 1, size=(40, 2))
    >>> y = X[:, 0] - 2 * X[:, 1]
    >>> reg = MultiSWAGRegressor(n_models=2, pretrain_epochs=20, swag_epochs=10,
    ...                          rank=5, random_state=0).fit(X, y)
    >>> mean, std = reg.predict(X[:3], return_std=True)
    >>> mean.shape, std.shape
    ((3,), (3,))
    >>> reg.swag_deviations_.shape[:2]
    (2, 5)
    """

    _parameter_constraints: dict = {
        **MultiSWAGBase._parameter_constraints,
        "noise": [StrOptions({"auto", "homoscedastic", "heteroscedastic"})],
        "normalize_y": ["boolean", StrOptions({"auto"})],
    }

    def __init__(
        self,
        module=None,
        *,
        n_models=5,
        rank=20,
        deviation_dtype="float32",
        pretrain_epochs="auto",
        swag_epochs=30,
        swa_lr="auto",
        anneal_epochs=5,
        swag_every=1.0,
        lr=0.003,
        batch_size=128,
        n_samples=20,
        scale=1.0,
        bn_update_rows=None,
        noise="auto",
        normalize_y="auto",
        validation_fraction=0.1,
        early_stopping="auto",
        n_iter_no_change="auto",
        tol=1e-4,
        optimizer=torch.optim.Adam,
        criterion=None,
        callbacks=None,
        device="cpu",
        n_jobs=None,
        warm_start=False,
        verbose=0,
        random_state=None,
        **kwargs,
    ):
        self.module = module
        self.n_models = n_models
        self.rank = rank
        self.deviation_dtype = deviation_dtype
        self.pretrain_epochs = pretrain_epochs
        self.swag_epochs = swag_epochs
        self.swa_lr = swa_lr
        self.anneal_epochs = anneal_epochs
        self.swag_every = swag_every
        self.lr = lr
        self.batch_size = batch_size
        self.n_samples = n_samples
        self.scale = scale
        self.bn_update_rows = bn_update_rows
        self.noise = noise
        self.normalize_y = normalize_y
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.optimizer = optimizer
        self.criterion = criterion
        self.callbacks = callbacks
        self.device = device
        self.n_jobs = n_jobs
        self.warm_start = warm_start
        self.verbose = verbose
        self.random_state = random_state
        self._routed = dict(kwargs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    # -- fitting ----------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the particles and collect their SWAG moments.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Training inputs; samples of more axes (images, sequences) need a
            ``module`` that takes them.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights: a row of weight 2 counts as that row
            twice, in the particles' losses, the target scaling, the held-out
            noise fit and the rows that recompute BatchNorm statistics. Rows
            of weight 0 are left out. Needs a criterion with elementwise
            values (the default ones, torch's elementwise losses).

        Returns
        -------
        self : MultiSWAGRegressor
            The fitted estimator. If fitting fails, an estimator fitted
            before is left as it was.
        """
        return self._fit_keeping_state(self._fit, X, y, sample_weight)

    def _fit(self, X, y, sample_weight):
        self._check_params()
        X, y = fit_inputs(self, X, y, multi_output=True, y_numeric=True)
        y2d = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        n_outputs = y2d.shape[1]
        noise = self._resolved_noise()
        heteroscedastic = noise == "heteroscedastic"
        criterion = self.criterion
        if criterion is None:
            criterion = GaussianNLL if heteroscedastic else torch.nn.MSELoss
        X, y2d, weights = self._prepared_rows(X, y2d, sample_weight, criterion)
        y_mean, y_scale = target_scaling(y2d, self._normalizes_y(), weights)
        y_scaled = (y2d - y_mean) / y_scale
        n_net_outputs = 2 * n_outputs if heteroscedastic else n_outputs
        rows = self._fit_particles(
            X,
            y2d,
            as_float32(y_scaled, "y"),
            weights,
            n_net_outputs=n_net_outputs,
            criterion=criterion,
            mlp_defaults=regressor_mlp_defaults(self.module, heteroscedastic),
            check_output=lambda out: check_output_width(out, n_net_outputs, noise),
        )
        if rows is None:  # a warm start with nothing to add
            return
        train, held_out = rows
        self.n_outputs_ = n_outputs
        self.y_mean_ = y_mean
        self.y_scale_ = y_scale
        self._noise_model = noise
        rows = held_out if len(held_out) else train
        variance = target_variance(y_scaled[train], weights[train])
        self._fit_noise(X, y_scaled, rows, weights[rows], variance)

    def _resolved_noise(self) -> str:
        """The noise model of this fit: what ``noise="auto"`` stands for."""
        if self.noise != "auto":
            return self.noise
        if self.module is None and self.criterion is None:
            return "heteroscedastic"
        return "homoscedastic"

    def _fit_noise(self, X, y_scaled, rows, weights, variance):
        """Noise variance (homoscedastic) or its calibration (heteroscedastic).

        ``rows`` are the held-out rows, or the training rows without any;
        ``weights`` their weights; ``variance`` the training targets'.
        """
        means, variances, noise = self._component_moments(X[rows])
        if not np.all(np.isfinite(means)) or (
            noise is not None and not np.all(np.isfinite(noise))
        ):
            raise FloatingPointError(
                "The trained networks predict NaN or infinite values on the "
                "data they were fitted to; lower `lr` or scale the inputs and "
                "targets."
            )
        held_out = self.validation_fraction > 0
        factor, base = fitted_noise_factor(
            y_scaled[rows], means, variances, noise, weights, held_out=held_out
        )
        if noise is None:
            vars(self).pop("noise_calibration_", None)  # from an earlier fit
        else:
            self.noise_calibration_ = factor
        fitted = (factor * base).mean(axis=0)  # in the units the networks learn
        self.noise_variance_ = fitted * self.y_scale_**2
        warn_misfits(
            means,
            y_scaled[rows],
            weights,
            fitted,
            variance,
            "held-out" if held_out else "training",
            known=self._diverged,
        )

    def _normalizes_y(self) -> bool:
        if self.normalize_y == "auto":
            return self.module is None
        return bool(self.normalize_y)

    # -- prediction -------------------------------------------------------------------
    def _component_moments(self, X):
        """Per-particle moments at ``X``, in the units the networks learned."""
        heteroscedastic = self._noise_model == "heteroscedastic"
        moments = self._particle_outputs(
            X, lambda out: output_moments(out, heteroscedastic)
        )
        return moments if heteroscedastic else (*moments, None)

    def predict_dist(self, X):
        """Posterior predictive distribution at ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Query points, samples of the shape fitted on (``input_shape_``).

        Returns
        -------
        dist : NormalMixture
            One equal-weight Gaussian mixture per row (and target), with a
            component per particle, and scipy.stats-style methods
            (``mean``, ``std``, ``var``, ``logpdf``, ``cdf``, ``ppf``,
            ``interval``, ``rvs``) plus ``epistemic_var`` and
            ``aleatoric_var``.
        """
        return self._dist(self._validated(X))

    def _prediction_width(self) -> int:
        return self.n_outputs_

    def _dist(self, X) -> NormalMixture:
        means, variances, noise = self._component_moments(X)
        y_var = self.y_scale_**2
        return NormalMixture(
            means * self.y_scale_ + self.y_mean_,
            variances * y_var,
            noise_variance=(
                self.noise_variance_
                if noise is None
                else noise * (self.noise_calibration_ * y_var)
            ),
            single_output=self.n_outputs_ == 1,
        )

    def predict(self, X, return_std=False):
        """Predictive mean, and optionally its standard deviation.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Query points, samples of the shape fitted on (``input_shape_``).
        return_std : bool, default=False
            Also return the predictive standard deviation (epistemic and
            observation noise together).

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Mean of the predictive mixture.
        y_std : ndarray of the same shape
            Its standard deviation; only when ``return_std`` is True.

        Notes
        -----
        The rows are predicted in blocks, so that the memory taken beyond the
        results does not grow with the number of rows; a row's prediction
        does not depend on the other rows.
        """
        return self._predicted(X, _mean_and_std if return_std else NormalMixture.mean)

    def sample_y(self, X, n_samples=1, random_state=0):
        """Draw functions from the posterior and evaluate them at ``X``.

        Each draw is one network: weights drawn from one particle's SWAG
        Gaussian, the particles taken in turn (draw ``j`` comes from particle
        ``j % n_models``, so ``n_samples=n_models`` gives one curve per
        particle). As in :meth:`GaussianProcessRegressor.sample_y
        <sklearn.gaussian_process.GaussianProcessRegressor.sample_y>`, the
        draws are of the regression function, without observation noise;
        with ``noise="heteroscedastic"`` they are of the mean output.

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features) or (n_samples_X, ...)
            Query points, samples of the shape fitted on (``input_shape_``).
        n_samples : int, default=1
            Number of functions drawn.
        random_state : int, RandomState instance or None, default=0
            Seeds the draws; the default gives the same functions on every
            call.

        Returns
        -------
        y_samples : ndarray of shape (n_samples_X, n_samples) or \
                (n_samples_X, n_outputs, n_samples)
            The functions' values, in the target's units.
        """
        X = self._validated(X)
        draws = self._function_draws(
            X,
            n_samples,
            random_state,
            heteroscedastic=self._noise_model == "heteroscedastic",
        )  # (n_samples, n_rows, n_outputs)
        draws = draws * self.y_scale_ + self.y_mean_
        draws = np.moveaxis(draws, 0, -1)  # (n_rows, n_outputs, n_samples)
        return draws[:, 0, :] if self.n_outputs_ == 1 else draws


def _mean_and_std(dist: NormalMixture) -> tuple[np.ndarray, np.ndarray]:
    return dist.mean(), dist.std()
