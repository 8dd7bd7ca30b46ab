"""The MultiSWAG regressor."""

from __future__ import annotations

import copy
import hashlib
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from joblib import Parallel, cpu_count, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._mixture import NormalMixture
from ._noise import GaussianNLL, held_out_noise_factor
from ._particles import (
    BN_ROWS_STREAM,
    INIT_SEED,
    SAMPLE_SEED,
    SPLIT_STREAM,
    TrainingPlan,
    derived_rng,
    fit_group,
    group_devices,
    join_histories,
    merge_groups,
    particle_seeds,
    partition,
    resolve_devices,
    root_seed,
    threads_restored,
)
from ._predictive import component_moments, function_draws
from ._sklearn_compat import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
    _check_sample_weight,
    _fit_context,
    validate_data,
)
from ._stacking import ParticleStack, elementwise_loss, uses_batch_norm

#: Prefixes of the parameters routed to the parts that skorch builds.
ROUTED_PREFIXES = ("module__", "optimizer__", "criterion__", "iterator_train__")

#: What ``iterator_train__*`` may set on the particle batches.
_ITERATOR_KEYS = ("shuffle", "drop_last")


class MultiSWAGRegressor(RegressorMixin, BaseEstimator):
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
        inputs and outputs taken from the data. The network maps a float32
        tensor of shape (n_samples, n_features) to (n_samples, n_outputs), or
        to (n_samples,) for one output.
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
    pretrain_epochs : int, default=200
        Epochs of plain training before SWAG collection starts; with early
        stopping (the default, see ``early_stopping``), the most that run.
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
        steps_per_epoch)`` training steps (at least one step).
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
    bn_update_rows : int or None, default=1024
        For networks with ``BatchNorm`` layers: the number of training rows
        on which the normalisation statistics of every weight vector that
        prediction evaluates (each posterior draw, or the SWA mean at
        ``scale=0``) are recomputed, as SWAG requires (``bn_update``, Maddox
        et al. 2019): in batches of ``batch_size``, keeping the cumulative
        average. The rows (drawn with ``random_state``) are stored with the
        fitted model. None uses every training row; 0 skips the refresh and
        predicts with the statistics the particles had at the end of
        training. A prediction then costs one forward pass over these rows
        per draw, on top of the rows predicted (see the user guide). Networks
        without normalisation statistics ignore it.
    noise : {"homoscedastic", "heteroscedastic"}, default="homoscedastic"
        The observation noise. "homoscedastic": one noise variance per
        target, estimated after training (see ``validation_fraction``).
        "heteroscedastic": the network returns a mean and a variance per
        target (``2 * n_outputs`` columns: the means, then values mapped to
        variances by a softplus) and is trained with the Gaussian negative
        log-likelihood (the default ``criterion``); every point gets its
        own noise, as in deep ensembles (Lakshminarayanan et al. 2017).
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
        losses alone. The held-out rows then also calibrate the noise, as
        without early stopping. "auto" stops early when there are held-out
        rows (``validation_fraction > 0``) and runs every pretraining epoch
        otherwise.
    n_iter_no_change : int, default=10
        Epochs without improvement before a particle stops pretraining.
    tol : float, default=1e-4
        Improvement of the held-out loss that counts.
    optimizer : torch.optim.Optimizer subclass, default=torch.optim.Adam
        Optimizer of every particle; its options are set with
        ``optimizer__*`` (for example ``optimizer__weight_decay``). It must
        update every weight from its own gradients (SGD, Adam, AdamW,
        RMSprop, Adagrad, ...), since a group's particles are stacked in one
        set of tensors: ``fit`` refuses one that would couple them (LBFGS,
        factored or per-tensor optimizers) before training.
    criterion : torch.nn.Module subclass or instance, default=None
        Training loss of one particle, options set with ``criterion__*``.
        None is :class:`torch.nn.MSELoss` with ``noise="homoscedastic"`` and
        the Gaussian negative log-likelihood of the mean and variance outputs
        with ``noise="heteroscedastic"``.
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
        the new ones up to ``n_models`` (on the same data, which is checked),
        then refits the noise with all of them. Particle ``i`` is the one a
        fresh fit with ``n_models > i`` would train, so an ensemble can grow
        until a validation score stops improving, at the cost of the new
        particles alone.
    verbose : int, default=0
        Above 0, a progress bar over the epochs of each group.
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
        (see ``validation_fraction``). With ``noise="heteroscedastic"``,
        the average calibrated noise variance over the held-out rows (the
        training rows without any), for reference: predictions use each
        point's own.
    noise_calibration_ : ndarray of shape (`n_outputs_`,)
        Only with ``noise="heteroscedastic"``: the factor applied to the
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
    bn_update_X_ : ndarray of shape (n_bn_rows, n_features) or None
        The training rows on which the normalisation statistics of every
        evaluated weight vector are recomputed (see ``bn_update_rows``);
        None for a network without ``BatchNorm`` or with
        ``bn_update_rows=0``.
    train_loss_ : ndarray of shape (n_models,)
        Each particle's training loss on its last batch.
    history_ : dict
        The training run of every particle, epoch by epoch: ``"epoch"``
        (1, 2, ...) and arrays of shape (n_models, n_epochs): ``"phase"``
        ("pretrain" or "swag"), ``"lr"`` (the learning rate),
        ``"train_loss"`` (mean training loss over the epoch's batches, in the
        units the networks learn: standardised targets with ``normalize_y``)
        and ``"valid_loss"`` (the held-out loss, with ``early_stopping``;
        NaN otherwise); a particle whose group stopped pretraining earlier
        ends in NaN and "". ``"groups"``: each particle group's skorch
        history (a list of one dict per epoch, with what the user's
        ``callbacks`` recorded).
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
        Number of features seen during fit.
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
    D_m^\\top z_2/\\sqrt{2(K-1)})` (see ``sklearn_swag._swag``). Particle
    :math:`m`'s predictive component at :math:`x` is a normal with the mean
    :math:`\\mu_m(x)` and variance :math:`v_m(x)` of its ``n_samples``
    network outputs plus the noise variance; the prediction is the equal-
    weight mixture of the components. The draws are seeded per particle, so
    a row gets the same prediction whatever else is in the batch.

    Every particle's initialisation, mini-batch order and posterior draws
    are seeded from ``random_state`` alone, whatever ``n_jobs`` and the
    joblib backend; dropout masks are drawn per particle too. Groups of
    other sizes round differently in the last bits, which long trainings
    amplify: keep ``n_jobs`` fixed for bit-identical refits. One exception:
    a user module that cannot be rewritten into batched operations
    (``particles_.mode`` "vmap" or "loop") and has stochastic layers draws
    its masks from one stream per group, so such a model is reproducible
    for a given ``n_jobs`` with process-based backends but changes with
    ``n_jobs``, and with the threading backend from fit to fit.

    Prediction depends on the fitted state alone (``set_params`` after
    ``fit`` changes no prediction) and is thread-safe. Networks with
    ``BatchNorm`` get their normalisation statistics recomputed for every
    weight vector prediction evaluates (see ``bn_update_rows`` and the user
    guide page on networks).

    The defaults (a 64-64 ReLU network, Adam at learning rate 0.003 in
    batches of 128, pretraining stopped early on the 10% of rows held out,
    at most 200 epochs, then 30 SWAG epochs at ``swa_lr="auto"``, 5
    particles) were chosen on the eight data sets of the UCI regression
    benchmark with their standard splits (``benchmarks/bench_uci.py``; see
    the user guide). Early stopping finds the pretraining length each data
    set needs, and the SWAG rate shrinks as the data grow. Fixed long runs
    (``early_stopping=False``) suit small, smooth problems such as the toy
    regression of ``examples/``.

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
        # A skorch net is accepted here so that fit can point to from_skorch.
        "module": [None, callable, HasMethods(["initialize", "partial_fit"])],
        "n_models": [Interval(Integral, 1, None, closed="left")],
        "rank": [Interval(Integral, 0, None, closed="left")],
        "deviation_dtype": [StrOptions({"float32", "float16"})],
        "pretrain_epochs": [Interval(Integral, 0, None, closed="left")],
        "swag_epochs": [Interval(Integral, 0, None, closed="left")],
        "swa_lr": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions({"auto"}),
            None,
        ],
        "anneal_epochs": [Interval(Integral, 0, None, closed="left")],
        "swag_every": [Interval(Real, 0, None, closed="neither")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "scale": [Interval(Real, 0, None, closed="left")],
        "bn_update_rows": [Interval(Integral, 0, None, closed="left"), None],
        "noise": [StrOptions({"homoscedastic", "heteroscedastic"})],
        "normalize_y": ["boolean", StrOptions({"auto"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "early_stopping": ["boolean", StrOptions({"auto"})],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "optimizer": [callable],
        "criterion": [callable, None],
        "callbacks": [list, tuple, None],
        "device": [str, torch.device, list, tuple],
        "n_jobs": [Integral, None],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        module=None,
        *,
        n_models=5,
        rank=20,
        deviation_dtype="float32",
        pretrain_epochs=200,
        swag_epochs=30,
        swa_lr="auto",
        anneal_epochs=5,
        swag_every=1.0,
        lr=0.003,
        batch_size=128,
        n_samples=20,
        scale=1.0,
        bn_update_rows=1024,
        noise="homoscedastic",
        normalize_y="auto",
        validation_fraction=0.1,
        early_stopping="auto",
        n_iter_no_change=10,
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

    # -- parameters ------------------------------------------------------------------
    @classmethod
    def from_skorch(cls, net, **params):
        """A MultiSWAG regressor that trains what a skorch net trains.

        The net lends its recipe to every particle: ``module`` and its
        ``module__*`` parameters, ``optimizer``, ``criterion`` (and their
        routed parameters), ``lr``, ``batch_size``, ``max_epochs`` (as
        ``pretrain_epochs``, the SWAG epochs follow), ``callbacks``,
        ``iterator_train__shuffle``/``drop_last`` and ``device``; as the net
        does, every one of its epochs runs, at its own learning rate
        (``early_stopping=False``, ``swa_lr=None``; ``params`` may change
        them). What has no
        counterpart here (its ``train_split``, dataset and iterator classes,
        other iterator options) is left out, with a warning naming it.

        Parameters
        ----------
        net : skorch.NeuralNet
            A configured (fitted or not) skorch net, typically a
            ``NeuralNetRegressor``.
        **params : dict
            Parameters of the regressor, which take precedence over the net's
            (``n_models``, ``swag_epochs``, ``rank``, ...).

        Returns
        -------
        MultiSWAGRegressor
            An unfitted estimator.

        Examples
        --------
        >>> import torch
        >>> from skorch import NeuralNetRegressor
        >>> from sklearn_swag import MLP, MultiSWAGRegressor
        >>> net = NeuralNetRegressor(MLP, module__n_features=3, module__n_outputs=1,
        ...                          optimizer=torch.optim.Adam, lr=0.01,
        ...                          max_epochs=40, batch_size=32)
        >>> reg = MultiSWAGRegressor.from_skorch(net, n_models=4, swag_epochs=20)
        >>> reg.pretrain_epochs, reg.swag_epochs, reg.lr, reg.optimizer.__name__
        (40, 20, 0.01, 'Adam')
        """
        from skorch import NeuralNet

        if not isinstance(net, NeuralNet):
            raise TypeError(f"from_skorch needs a skorch net, got {net!r}.")
        given = net.get_params(deep=False)
        batch_size = given.get("batch_size", 128)
        recipe = {
            "module": given["module"],
            "optimizer": given["optimizer"],
            "criterion": given["criterion"],
            "lr": given["lr"],
            "batch_size": None if batch_size in (None, -1) else batch_size,
            "pretrain_epochs": given["max_epochs"],
            "early_stopping": False,  # a skorch net trains all its epochs,
            "swa_lr": None,  # at its own learning rate (or its scheduler's)
            "callbacks": list(given.get("callbacks") or []) or None,
            "device": given.get("device") or "cpu",
        }
        ignored = []
        for key, value in given.items():
            if key.startswith(("module__", "optimizer__", "criterion__")):
                recipe[key] = value
            elif key.startswith("iterator_train__"):
                if key[len("iterator_train__") :] in _ITERATOR_KEYS:
                    recipe[key] = value
                else:
                    ignored.append(key)
        if ignored:
            warnings.warn(
                f"from_skorch leaves out {sorted(ignored)}: the particle batches "
                f"take {list(_ITERATOR_KEYS)} only.",
                UserWarning,
                stacklevel=2,
            )
        return cls(**{**recipe, **params})

    def _routed_params(self) -> dict:
        return dict(vars(self).get("_routed", {}))

    def __getattr__(self, name):
        # Routed parameters read like attributes, as in skorch.
        routed = vars(self).get("_routed", {})
        if name in routed:
            return routed[name]
        raise AttributeError(
            f"{type(self).__name__!r} object has no attribute {name!r}"
        )

    def _params_for(self, prefix: str) -> dict:
        start = len(prefix) + 2
        return {
            k[start:]: v
            for k, v in self._routed_params().items()
            if k.startswith(prefix + "__")
        }

    def get_params(self, deep=True):
        """Get the parameters of this estimator, routed ones included.

        Parameters
        ----------
        deep : bool, default=True
            Also return the parameters of contained estimators.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        params = super().get_params(deep=deep)
        params.update(self._routed_params())
        return params

    def set_params(self, **params):
        """Set the parameters of this estimator, routed ones included.

        Parameters
        ----------
        **params : dict
            Estimator parameters, including ``module__*``, ``optimizer__*``,
            ``criterion__*`` and ``iterator_train__*``. Names are checked
            by :meth:`fit`, as values are.

        Returns
        -------
        self : MultiSWAGRegressor
        """
        own = set(self._get_param_names())
        routed = {k: v for k, v in params.items() if k not in own}
        if routed:
            self._routed = {**self._routed_params(), **routed}
        rest = {k: v for k, v in params.items() if k in own}
        if rest:
            super().set_params(**rest)
        return self

    def __setstate__(self, state):
        # A model trained on a GPU loads anywhere: its fitted state is on the
        # CPU already, and without CUDA it predicts on the CPU (as skorch does).
        device = state.get("device")
        names = device if isinstance(device, (list, tuple)) else [device]
        if not torch.cuda.is_available() and any(
            isinstance(d, (str, torch.device)) and torch.device(d).type == "cuda"
            for d in names
        ):
            warnings.warn(
                f"This model was saved with device={device!r} but CUDA is not "
                "available; it is loaded with device='cpu'.",
                UserWarning,
                stacklevel=2,
            )
            state = {**state, "device": "cpu"}
        super().__setstate__(state)

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
        X : array-like of shape (n_samples, n_features)
            Training inputs.
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
        before = dict(vars(self))
        try:
            self._fit(X, y, sample_weight)
        except BaseException:
            vars(self).clear()
            vars(self).update(before)
            raise
        return self

    def _fit(self, X, y, sample_weight):
        self._check_params()
        devices = resolve_devices(self.device)
        X, y = validate_data(
            self,
            X,
            y,
            dtype=[np.float64, np.float32],
            multi_output=True,
            y_numeric=True,
        )
        weights = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        X = X.astype(np.float32)
        y2d = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        n_outputs = y2d.shape[1]
        heteroscedastic = self.noise == "heteroscedastic"
        n_net_outputs = 2 * n_outputs if heteroscedastic else n_outputs
        criterion = self.criterion
        if criterion is None:
            criterion = GaussianNLL if heteroscedastic else torch.nn.MSELoss
        if _weighs_rows(criterion, self._params_for("criterion")):
            # Identical rows become one row of their summed weight, in one
            # order whatever the input's: repeated rows and weights give the
            # same training set, and rows of weight 0 are gone.
            X, y2d, weights = _merge_identical_rows(X, y2d, weights)
        elif sample_weight is not None and np.ptp(weights) > 0:
            raise ValueError(
                f"sample_weight needs a criterion with elementwise values "
                f"(MSELoss, L1Loss, SmoothL1Loss, HuberLoss, GaussianNLL, or one "
                f"that declares `elementwise = True`); got {criterion!r}."
            )
        y_mean, y_scale = _target_scaling(y2d, self._normalizes_y(), weights)
        y_train = ((y2d - y_mean) / y_scale).astype(np.float32)

        fingerprint = _fingerprint(X, y2d, weights)
        kept = self._kept_particles(fingerprint)
        if kept == self.n_models:
            warnings.warn(
                f"warm_start=True and n_models={self.n_models} particles are "
                "fitted already: nothing to train; raise n_models to add some.",
                UserWarning,
                stacklevel=3,
            )
            return
        root = self._root_seed if kept else root_seed(self.random_state)
        seeds = particle_seeds(root, self.n_models)
        train, held_out = _validation_split(
            X, self.validation_fraction, derived_rng(root, SPLIT_STREAM), weights
        )
        weighted = bool(np.ptp(weights[train]) > 0)
        plan = TrainingPlan(
            module=self.module,
            module_kwargs=self._params_for("module"),
            n_features=X.shape[1],
            n_outputs=n_net_outputs,
            criterion=criterion,
            criterion_kwargs=self._params_for("criterion"),
            optimizer=self.optimizer,
            optimizer_kwargs=self._params_for("optimizer"),
            iterator_kwargs=self._params_for("iterator_train"),
            lr=float(self.lr),
            batch_size=self.batch_size,
            pretrain_epochs=self.pretrain_epochs,
            swag_epochs=self.swag_epochs,
            rank=self.rank,
            swa_lr=_swa_lr(self.swa_lr, self.batch_size, len(train)),
            anneal_epochs=self.anneal_epochs,
            swag_every=float(self.swag_every),
            deviation_dtype=self.deviation_dtype,
            verbose=self.verbose,
            weighted=weighted,
            callbacks=_checked_callbacks(self.callbacks, self.swa_lr),
            early_stopping=self._stops_early(),
            n_iter_no_change=self.n_iter_no_change,
            tol=float(self.tol),
        )
        # Every particle is initialised here, one after another: worker threads
        # share the global torch random state, so they must not seed it.
        modules = [plan.build_module(s) for s in seeds[kept:, INIT_SEED]]
        if uses_batch_norm(modules[0]) and len(train) < 2:
            raise ValueError(
                "A network with BatchNorm layers needs at least 2 training rows "
                f"to normalise by; got {len(train)}."
            )
        plan.stack_mode = plan.check(modules[:2], torch.as_tensor(X[:8]))
        _check_output_width(modules[0], X[:8], n_net_outputs, self.noise)
        X_train, y_fit = X[train], y_train[train]
        y_val = y_train[held_out]
        if weighted:  # the weights travel as a last target column
            scale = weights[train].mean()
            y_fit = _with_weights(y_fit, weights[train] / scale)
            y_val = _with_weights(y_val, weights[held_out] / scale)
        validation = (X[held_out], y_val) if self._stops_early() else None
        n_jobs = max(1, effective_n_jobs(self.n_jobs))
        groups = partition(self.n_models - kept, n_jobs)
        group_device = group_devices(devices, len(groups))
        n_workers = min(n_jobs, len(groups))
        plan.max_threads = max(1, cpu_count() // n_workers)
        cuda = sorted({d.index or 0 for d in group_device if d.type == "cuda"})
        # The groups' stacks are built here, where networks are traced: fx
        # patches module calls process-wide, which worker threads must not see.
        stacks = [
            ParticleStack([modules[i] for i in ids], mode=plan.stack_mode)
            for ids in groups
        ]
        with torch.random.fork_rng(devices=cuda), threads_restored():
            # Groups in threads of this process (threading backend) share its
            # thread count: their share of the cores.
            if n_workers > 1:
                torch.set_num_threads(plan.max_threads)
            results = Parallel(n_jobs=n_workers)(
                delayed(fit_group)(
                    plan,
                    X_train,
                    y_fit,
                    ids + kept,
                    seeds[ids + kept],
                    dev,
                    stack,
                    validation,
                )
                for ids, dev, stack in zip(groups, group_device, stacks, strict=True)
            )
        merged = merge_groups(results)
        if kept:  # warm start: the particles fitted before come first
            merged = self._with_fitted_particles(merged)

        self.particles_ = merged["stack"]
        self.swag_mean_ = merged["mean"]
        self.swag_sq_mean_ = merged["sq_mean"]
        self.swag_deviations_ = merged["deviations"]
        self.n_snapshots_ = merged["n_snapshots"]
        self.train_loss_ = merged["train_loss"]
        self.history_ = _history(merged["history"])
        self.pretrain_epochs_ = merged["pretrain_epochs"]
        self.particle_seeds_ = seeds
        self._root_seed = root
        self._fingerprint = fingerprint
        self.n_params_ = self.particles_.n_params
        self.n_outputs_ = n_outputs
        self.y_mean_ = y_mean
        self.y_scale_ = y_scale
        self._noise_model = self.noise
        # What prediction uses is fixed here: set_params after fit changes no
        # prediction.
        self.n_samples_ = int(self.n_samples) if self.swag_epochs > 0 else 1
        self.scale_ = float(self.scale) if self.swag_epochs > 0 else 0.0
        self.bn_update_X_ = _bn_update_rows(
            X_train,
            self.bn_update_rows if self.particles_.has_batch_norm else 0,
            derived_rng(root, BN_ROWS_STREAM),
            weights[train],
        )
        self._bn_batch_size = self.batch_size

        self.n_train_samples_ = len(train)
        rows = held_out if len(held_out) else train
        self._fit_noise(X, y_train, rows, weights[rows])

    def _kept_particles(self, fingerprint: str) -> int:
        """How many fitted particles a warm start keeps (0 for a fresh fit)."""
        if not self.warm_start or "swag_mean_" not in vars(self):
            return 0
        kept = len(self.swag_mean_)
        if self.n_models < kept:
            raise ValueError(
                f"warm_start=True keeps the {kept} fitted particles: n_models="
                f"{self.n_models} must be at least that; set warm_start=False to "
                "fit fewer."
            )
        if fingerprint != vars(self).get("_fingerprint"):
            raise ValueError(
                "warm_start=True adds particles to a fit on the same data, but "
                "these data differ from the data fitted before; set "
                "warm_start=False to fit them afresh."
            )
        return kept

    def _with_fitted_particles(self, new: dict) -> dict:
        """The fitted particles followed by the ``new`` ones."""
        old_k, new_k = self.swag_deviations_.shape[1], new["deviations"].shape[1]
        if old_k != new_k:
            raise ValueError(
                "warm_start=True adds particles like the fitted ones: the new "
                f"ones hold {new_k} deviations, the fitted {old_k}; keep rank, "
                "swag_epochs and swag_every, or set warm_start=False."
            )
        joined = {
            "stack": ParticleStack.concatenate([self.particles_, new["stack"]]),
            "mean": np.concatenate([self.swag_mean_, new["mean"]]),
            "sq_mean": np.concatenate([self.swag_sq_mean_, new["sq_mean"]]),
            "deviations": np.concatenate([self.swag_deviations_, new["deviations"]]),
            "n_snapshots": np.concatenate([self.n_snapshots_, new["n_snapshots"]]),
            "train_loss": np.concatenate([self.train_loss_, new["train_loss"]]),
            "pretrain_epochs": np.concatenate(
                [self.pretrain_epochs_, new["pretrain_epochs"]]
            ),
        }
        old_history = {k: v for k, v in self.history_.items() if k != "epoch"}
        joined["history"] = join_histories(
            [old_history, new["history"]], [len(self.swag_mean_), len(new["mean"])]
        )
        return joined

    def _fit_noise(self, X, y_scaled, rows, weights):
        """Noise variance (homoscedastic) or its calibration (heteroscedastic).

        ``rows`` are the held-out rows, or the training rows without any;
        ``weights`` their weights.
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
        residual = y_scaled[rows].astype(np.float64) - means.mean(axis=0)
        epistemic = variances.mean(axis=0) + means.var(axis=0)
        base = np.ones_like(residual) if noise is None else noise.mean(axis=0)
        if self.validation_fraction > 0:
            factor = held_out_noise_factor(residual, epistemic, base, weights)
        elif noise is None:  # training residuals: optimistic, see the docs
            factor = np.average(residual**2, axis=0, weights=weights)
        else:
            factor = np.ones(residual.shape[1])
        if noise is None:
            factor = np.maximum(factor, 1e-12)
            vars(self).pop("noise_calibration_", None)  # from an earlier fit
        else:
            factor = np.maximum(factor, 1e-6)
            self.noise_calibration_ = factor
        self.noise_variance_ = (factor * base).mean(axis=0) * self.y_scale_**2

    def _stops_early(self) -> bool:
        if self.early_stopping == "auto":
            return self.validation_fraction > 0
        return bool(self.early_stopping)

    def _normalizes_y(self) -> bool:
        if self.normalize_y == "auto":
            return self.module is None
        return bool(self.normalize_y)

    def _check_params(self):
        _check_routed_names(self._routed_params())
        if self.early_stopping is True and self.validation_fraction == 0:
            raise ValueError(
                "early_stopping=True stops the pretraining on the held-out rows: "
                "set validation_fraction above 0."
            )
        if self.pretrain_epochs + self.swag_epochs < 1:
            raise ValueError(
                "pretrain_epochs + swag_epochs must be at least 1, got "
                f"{self.pretrain_epochs} + {self.swag_epochs}."
            )
        unknown = set(self._params_for("iterator_train")) - set(_ITERATOR_KEYS)
        if unknown:
            raise ValueError(
                f"Unknown iterator_train parameter(s) {sorted(unknown)}: the "
                f"particle batches accept {list(_ITERATOR_KEYS)}."
            )
        from skorch import NeuralNet

        if isinstance(self.module, NeuralNet):
            raise TypeError(
                "module is a skorch net; build the estimator with "
                "MultiSWAGRegressor.from_skorch(net, ...) to take its module, "
                "optimizer, criterion, learning rate, epochs and callbacks."
            )
        for name in ("module", "criterion"):
            part = getattr(self, name)
            if isinstance(part, torch.nn.Module) and self._params_for(name):
                raise ValueError(
                    f"{name}__* parameters need `{name}` to be a class"
                    f"{' (or None)' if name == 'module' else ''}; an instance is "
                    "used as it is."
                )

    # -- prediction -------------------------------------------------------------------
    def _component_moments(self, X):
        """Per-particle moments at ``X``, in the units the networks learned."""
        return component_moments(
            self.particles_,
            self.swag_mean_,
            self.swag_sq_mean_,
            self.swag_deviations_,
            self.particle_seeds_[:, SAMPLE_SEED],
            X,
            n_samples=self.n_samples_,
            scale=self.scale_,
            device=resolve_devices(self.device)[0],
            heteroscedastic=self._noise_model == "heteroscedastic",
            bn_rows=self.bn_update_X_,
            bn_batch_size=self._bn_batch_size,
        )

    def _validated(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return X.astype(np.float32)

    def predict_dist(self, X):
        """Posterior predictive distribution at ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Query points.

        Returns
        -------
        dist : NormalMixture
            One equal-weight Gaussian mixture per row (and target), with a
            component per particle, and scipy.stats-style methods
            (``mean``, ``std``, ``var``, ``logpdf``, ``cdf``, ``ppf``,
            ``interval``, ``rvs``) plus ``epistemic_var`` and
            ``aleatoric_var``.
        """
        X = self._validated(X)
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
        X : array-like of shape (n_samples, n_features)
            Query points.
        return_std : bool, default=False
            Also return the predictive standard deviation (epistemic and
            observation noise together).

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Mean of the predictive mixture.
        y_std : ndarray of the same shape
            Its standard deviation; only when ``return_std`` is True.
        """
        dist = self.predict_dist(X)
        if return_std:
            return dist.mean(), dist.std()
        return dist.mean()

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
        X : array-like of shape (n_samples_X, n_features)
            Query points.
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
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(
                f"n_samples must be a positive integer, got {n_samples!r}."
            )
        n_models = len(self.swag_mean_)
        owners = np.arange(n_samples) % n_models
        seeds = check_random_state(random_state).randint(
            np.iinfo(np.int32).max, size=n_models
        )
        draws = function_draws(
            self.particles_,
            self.swag_mean_,
            self.swag_sq_mean_,
            self.swag_deviations_,
            owners,
            seeds,
            X,
            scale=self.scale_,
            device=resolve_devices(self.device)[0],
            heteroscedastic=self._noise_model == "heteroscedastic",
            bn_rows=self.bn_update_X_,
            bn_batch_size=self._bn_batch_size,
        )  # (n_samples, n_rows, n_outputs)
        draws = draws * self.y_scale_ + self.y_mean_
        draws = np.moveaxis(draws, 0, -1)  # (n_rows, n_outputs, n_samples)
        return draws[:, 0, :] if self.n_outputs_ == 1 else draws


def _validation_split(
    X: np.ndarray,
    fraction: float,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out rows, about ``fraction`` of the weight held out.

    Rows with identical features are kept on one side: a copy of a training
    row is no new data, and holding it out would make the noise look smaller
    than it is. Groups of identical rows are held out in random order until
    at least ``fraction`` of the total weight (of the rows, without weights)
    is.
    """
    n_rows = len(X)
    if fraction == 0:
        return np.arange(n_rows), np.arange(0)
    weights = np.ones(n_rows) if weights is None else np.asarray(weights, float)
    _, group = np.unique(X, axis=0, return_inverse=True)
    group = group.reshape(-1)
    n_groups = int(group.max()) + 1
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
    order of the input rows either.
    """
    rows = np.concatenate([X.astype(np.float64), y], axis=1)
    unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    summed = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(unique))
    keep = summed > 0
    n_features = X.shape[1]
    return (
        unique[keep, :n_features].astype(np.float32),
        unique[keep, n_features:],
        summed[keep],
    )


def _fingerprint(X: np.ndarray, y: np.ndarray, weights: np.ndarray) -> str:
    """A digest of the training data, to tell a warm start the data are the same."""
    digest = hashlib.sha256()
    for array in (X, y, weights):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _checked_callbacks(callbacks, swa_lr) -> list:
    """The user's skorch callbacks, or a clear error before any training."""
    from skorch.callbacks import Callback, EarlyStopping, LRScheduler

    checked = []
    for entry in callbacks or ():
        named = isinstance(entry, tuple) and len(entry) == 2
        callback = entry[1] if named else entry
        if (
            named
            and not isinstance(entry[0], str)
            or not isinstance(callback, Callback)
        ):
            raise TypeError(
                "callbacks must hold skorch callbacks or (name, callback) pairs; "
                f"got {entry!r}."
            )
        if isinstance(callback, EarlyStopping):
            raise ValueError(
                "skorch's EarlyStopping stops a fit by raising KeyboardInterrupt, "
                "which stops the whole MultiSWAG fit; leave it out."
            )
        if isinstance(callback, LRScheduler) and swa_lr is not None:
            raise ValueError(
                "swa_lr sets the learning rate of every epoch, which an "
                "LRScheduler callback would fight; use one or the other."
            )
        checked.append(entry)
    return checked


#: ``swa_lr="auto"``: this many times the share of the training rows in one
#: batch, at most ``_AUTO_SWA_LR_MAX``. The rate of constant SGD whose iterates
#: sample a posterior shrinks as batch / rows (Mandt et al. 2017); the factor
#: was chosen on the UCI benchmark (``benchmarks/bench_uci.py``).
_AUTO_SWA_LR_FACTOR = 0.1
_AUTO_SWA_LR_MAX = 0.01


def _swa_lr(swa_lr, batch_size: int | None, n_train: int) -> float | None:
    """The learning rate of the SWAG epochs, with ``"auto"`` resolved."""
    if swa_lr != "auto":
        return None if swa_lr is None else float(swa_lr)
    batch = n_train if batch_size is None else min(batch_size, n_train)
    return min(_AUTO_SWA_LR_MAX, _AUTO_SWA_LR_FACTOR * batch / n_train)


def _with_weights(y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Targets with a last column of row weights, as the particle loss reads them."""
    return np.concatenate([y, weights[:, None].astype(np.float32)], axis=1)


def _history(history: dict) -> dict:
    """The fitted ``history_``: per-particle, per-epoch arrays."""
    return {"epoch": np.arange(1, history["train_loss"].shape[1] + 1), **history}


def _bn_update_rows(
    X_train: np.ndarray,
    n_rows: int | None,
    rng: np.random.Generator,
    weights: np.ndarray,
) -> np.ndarray | None:
    """The training rows on which prediction recomputes BatchNorm statistics.

    In random order, as a shuffled loader would give them: the statistics are
    averaged over batches of consecutive rows, which in the data's own order
    (sorted by time or by target, say) would not be samples of it.
    """
    if n_rows == 0:
        return None
    size = len(X_train) if n_rows is None else min(n_rows, len(X_train))
    p = weights / weights.sum()
    return X_train[rng.choice(len(X_train), size=size, replace=False, p=p)]


def _target_scaling(
    y: np.ndarray, normalize: bool, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and scale of each target; zeros and ones without scaling."""
    n_outputs = y.shape[1]
    if not normalize:
        return np.zeros(n_outputs), np.ones(n_outputs)
    mean = np.average(y, axis=0, weights=weights)
    scale = np.sqrt(np.average((y - mean) ** 2, axis=0, weights=weights))
    # A constant target (up to rounding) is centred, not divided by ~0.
    constant = scale <= 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))
    return mean, np.where(constant, 1.0, scale)


def _check_output_width(
    module: torch.nn.Module, probe: np.ndarray, expected: int, noise: str
) -> None:
    """Fail before training when the network returns the wrong number of columns."""
    with torch.no_grad():
        out = copy.deepcopy(module).eval()(torch.as_tensor(probe))
    width = 1 if out.ndim == 1 else out.shape[-1]
    if width == expected:
        return
    what = (
        "a mean and a variance column per target"
        if noise == "heteroscedastic"
        else "one column per target"
    )
    raise ValueError(
        f"With noise={noise!r} the network must return {what}: {expected} "
        f"column(s) here, but it returns {width}."
    )


def _check_routed_names(params: dict) -> None:
    bad = [k for k in params if not k.startswith(ROUTED_PREFIXES)]
    if bad:
        hints = []
        for key in bad:
            for prefix in ROUTED_PREFIXES:
                stem = prefix[:-2]
                if key.startswith(stem + "_") and not key.startswith(prefix):
                    hints.append(
                        f"did you mean {prefix}{key[len(stem) :].lstrip('_')}?"
                    )
        raise InvalidParameterError(
            f"MultiSWAGRegressor got unexpected parameter(s) {sorted(bad)}; routed "
            f"parameters start with one of {list(ROUTED_PREFIXES)}. " + " ".join(hints)
        )
