"""The estimator core that the MultiSWAG regressor and classifier share.

:class:`MultiSWAGBase` holds what does not depend on the kind of target:
routed ``module__*``-style parameters, the checks of every parameter, the
particles' seeds, the joblib dispatch of particle groups to devices, warm
starts, and the inputs of the posterior draws; the training rows are prepared
in :mod:`~sklearn_swag._rows`, the groups trained by
:mod:`~sklearn_swag._training`. The estimators
(:mod:`~sklearn_swag._regressor`, :mod:`~sklearn_swag._classifier`) add what
their targets need: scaling and observation noise for regression, labels and
class probabilities for classification.
"""

from __future__ import annotations

import copy
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from joblib import Parallel, cpu_count, effective_n_jobs
from joblib import delayed as _delayed
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from ._inputs import predict_inputs
from ._network.stack import ParticleStack, uses_batch_norm
from ._persistence import loaded_state, saved_state
from ._posterior.diagnostics import warn_exploded
from ._posterior.draws import finite_outputs, function_draws, particle_outputs
from ._rows import (
    _bn_update_rows,
    _fingerprint,
    _merge_identical_rows,
    _training_rows,
    _validation_split,
    _weighs_rows,
    as_float32,
)
from ._sklearn_compat import (
    HasMethods,
    Interval,
    StrOptions,
    _check_sample_weight,
)
from ._training import budget
from ._training.callbacks import _checked_callbacks, _swa_lr
from ._training.devices import group_devices, partition, resolve_devices
from ._training.group import fit_group
from ._training.history import merge_groups
from ._training.net import snapshot_steps
from ._training.network_spec import check_same_network
from ._training.plan import TrainingPlan
from ._training.routed import (
    ITERATOR_KEYS,
    _check_parts,
    _check_routed_names,
    _routed_for,
)
from ._training.seeds import (
    BN_ROWS_STREAM,
    INIT_SEED,
    SAMPLE_SEED,
    SPLIT_STREAM,
    derived_rng,
    particle_seeds,
    root_seed,
)
from ._training.stopping import stopping_on_failure
from ._training.threads import threads_restored
from ._warm_start import kept_particles, with_fitted_particles

#: Floats per array of per-particle predictions in one block of rows (see
#: ``MultiSWAGBase._by_row_blocks``): 8 MB of float64.
_PREDICT_FLOATS = 2**20


class MultiSWAGBase(BaseEstimator):
    """The shared core of :class:`MultiSWAGRegressor` and :class:`MultiSWAGClassifier`.

    Not an estimator on its own: a subclass defines ``__init__`` with its
    parameters, ``fit`` (which validates its targets and calls
    :meth:`_fit_particles`) and its predictions.
    """

    #: Constraints of the parameters both estimators have.
    _parameter_constraints: dict = {
        # A skorch net is accepted here so that fit can point to from_skorch.
        "module": [None, callable, HasMethods(["initialize", "partial_fit"])],
        "n_models": [Interval(Integral, 1, None, closed="left")],
        "rank": [Interval(Integral, 0, None, closed="left")],
        "deviation_dtype": [StrOptions({"float32", "float16"})],
        "pretrain_epochs": [
            Interval(Integral, 0, None, closed="left"),
            StrOptions({"auto"}),
        ],
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
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "early_stopping": ["boolean", StrOptions({"auto"})],
        "n_iter_no_change": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
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

    # -- parameters ------------------------------------------------------------------
    @classmethod
    def from_skorch(cls, net, **params):
        """An estimator of this class that trains what a skorch net trains.

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
            ``NeuralNetRegressor`` (or ``NeuralNetClassifier`` whose module
            returns logits, for :class:`MultiSWAGClassifier`).
        **params : dict
            Parameters of the estimator, which take precedence over the net's
            (``n_models``, ``swag_epochs``, ``rank``, ...).

        Returns
        -------
        estimator : MultiSWAGRegressor or MultiSWAGClassifier
            An unfitted estimator of the class it is called on.

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
                if key[len("iterator_train__") :] in ITERATOR_KEYS:
                    recipe[key] = value
                else:
                    ignored.append(key)
        if ignored:
            warnings.warn(
                f"from_skorch leaves out {sorted(ignored)}: the particle batches "
                f"take {list(ITERATOR_KEYS)} only.",
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
        return _routed_for(self._routed_params(), prefix)

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
        self : object
            The estimator.
        """
        own = set(self._get_param_names())
        routed = {k: v for k, v in params.items() if k not in own}
        if routed:
            self._routed = {**self._routed_params(), **routed}
        rest = {k: v for k, v in params.items() if k in own}
        if rest:
            super().set_params(**rest)
        return self

    def __getstate__(self):
        # Plain data only (numpy arrays, numbers, strings, the user's classes):
        # what skops can check and load without running pickled code.
        return saved_state(super().__getstate__())

    def __setstate__(self, state):
        state = loaded_state(state)
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

    # -- fitting ----------------------------------------------------------------------
    def _fit_keeping_state(self, fit, *args):
        """Run ``fit(*args)``; on any failure, restore the state from before."""
        before = dict(vars(self))
        try:
            fit(*args)
        except BaseException:
            vars(self).clear()
            vars(self).update(before)
            raise
        return self

    def _prepared_rows(self, X, y, sample_weight, criterion):
        """Rows, targets and weights as the particles will see them.

        Identical ``(x, y)`` rows become one row of their summed weight, in
        one order whatever the input's (repeated rows and weights give the
        same training set; rows of weight 0 are gone), when the criterion can
        weight rows; otherwise unequal weights are a clear error.
        """
        weights = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        X = as_float32(X, "X")
        if _weighs_rows(criterion, self._params_for("criterion")):
            return _merge_identical_rows(X, y, weights)
        if sample_weight is not None and np.ptp(weights) > 0:
            raise ValueError(
                f"sample_weight needs a criterion with elementwise values "
                f"(MSELoss, L1Loss, SmoothL1Loss, HuberLoss, GaussianNLL, "
                f"CrossEntropyLoss without `weight`, or one that declares "
                f"`elementwise = True`); got {criterion!r}."
            )
        return X, y, weights

    def _fit_particles(
        self,
        X,
        y_given,
        y_train,
        weights,
        *,
        n_net_outputs,
        criterion,
        check_output,
        class_targets=False,
        mlp_defaults=None,
        optimizer_defaults=None,
    ):
        """Train the particles and set the fitted state they define.

        Parameters
        ----------
        X : ndarray of shape (n_samples, ...), float32
            Training rows (identical rows merged, see :meth:`_prepared_rows`).
        y_given : ndarray of shape (n_samples, n_targets)
            The targets as given, which a warm start checks are unchanged.
        y_train : ndarray of shape (n_samples, n_targets), float32
            What the networks learn: scaled targets, or class indices.
        weights : ndarray of shape (n_samples,)
            Row weights.
        n_net_outputs : int
            Columns the network must return.
        criterion : torch.nn.Module subclass or instance
            Loss of one network.
        check_output : callable
            ``check_output(out)`` fails clearly when a network's output
            ``out`` on a few training rows (eval mode, on a copy) does not
            fit the targets.
        class_targets : bool, default=False
            Whether ``y_train`` holds class indices (those of ``y_given``,
            which then also stratify the held-out rows by class).
        mlp_defaults : dict or None, default=None
            Arguments of the built-in :class:`~sklearn_swag.MLP` (with
            ``module=None``) unless ``module__*`` parameters set them.
        optimizer_defaults : dict or None, default=None
            Options of the optimizer unless ``optimizer__*`` parameters set
            them.

        Returns
        -------
        (train, held_out) : tuple of ndarray, or None
            Indices of the rows trained on and held out; None when a warm
            start has no particle to add.
        """
        devices = resolve_devices(self.device)
        fingerprint = _fingerprint(X, y_given, weights)
        kept = kept_particles(self, fingerprint, X, y_given, weights)
        if kept == self.n_models:
            warnings.warn(
                f"warm_start=True and n_models={self.n_models} particles are "
                "fitted already: nothing to train; raise n_models to add some.",
                UserWarning,
                stacklevel=4,
            )
            return None
        root = self._root_seed if kept else root_seed(self.random_state)
        seeds = particle_seeds(root, self.n_models)
        train, held_out = _validation_split(
            X,
            self.validation_fraction,
            derived_rng(root, SPLIT_STREAM),
            weights,
            classes=y_given[:, 0] if class_targets else None,
        )
        weighted = bool(np.ptp(weights[train]) > 0)
        plan = self._training_plan(
            X.shape[1:],
            len(train),
            n_net_outputs,
            criterion,
            weighted=weighted,
            class_targets=class_targets,
            mlp_defaults=mlp_defaults,
            optimizer_defaults=optimizer_defaults,
        )
        if kept:  # the kept particles' network, or a clear error
            check_same_network(self._network, plan.network_spec())
        modules = self._checked_networks(
            plan, seeds[kept:], X, len(train), check_output
        )
        X_train, y_fit, validation = _training_rows(
            X, y_train, weights, train, held_out, weighted, self._stops_early()
        )
        merged = self._train_groups(
            plan, modules, seeds, kept, devices, X_train, y_fit, validation
        )
        if kept:  # warm start: the particles fitted before come first
            merged = with_fitted_particles(self, merged)
        self._set_fitted_particles(merged, plan, seeds, root, kept)
        self._set_fitted_rows(fingerprint, root, X_train, weights[train])
        return train, held_out

    def _training_plan(
        self,
        input_shape,
        n_train,
        n_net_outputs,
        criterion,
        *,
        weighted,
        class_targets,
        mlp_defaults,
        optimizer_defaults=None,
    ) -> TrainingPlan:
        """What every worker needs to build and train its particles."""
        return TrainingPlan(
            module=self.module,
            module_kwargs=self._params_for("module"),
            n_features=int(np.prod(input_shape)),
            sample_ndim=len(input_shape),
            n_outputs=n_net_outputs,
            criterion=criterion,
            criterion_kwargs=self._params_for("criterion"),
            optimizer=self.optimizer,
            optimizer_kwargs={
                **(optimizer_defaults or {}),
                **self._params_for("optimizer"),
            },
            iterator_kwargs=self._params_for("iterator_train"),
            lr=float(self.lr),
            batch_size=self.batch_size,
            pretrain_epochs=budget.pretrain_epochs(
                self.pretrain_epochs, self.batch_size, n_train
            ),
            swag_epochs=self.swag_epochs,
            rank=self.rank,
            swa_lr=_swa_lr(self.swa_lr, self.batch_size, n_train),
            anneal_epochs=self.anneal_epochs,
            swag_every=float(self.swag_every),
            deviation_dtype=self.deviation_dtype,
            verbose=self.verbose,
            weighted=weighted,
            class_targets=class_targets,
            mlp_defaults=dict(mlp_defaults or {}),
            callbacks=_checked_callbacks(self.callbacks, self.swa_lr),
            early_stopping=self._stops_early(),
            n_iter_no_change=budget.patience(
                self.n_iter_no_change, self.batch_size, n_train
            ),
            tol=float(self.tol),
        )

    @staticmethod
    def _checked_networks(plan, seeds, X, n_train, check_output) -> list:
        """The new particles' networks, on which the plan is checked.

        Every particle is initialised here, one after another: worker threads
        share the global torch random state, so they must not seed it. The
        parts are then built and run once on a few training rows
        (:meth:`TrainingPlan.check`, ``check_output``), so that a mistake
        fails here, clearly, and not inside a worker.
        """
        modules = [plan.build_module(s) for s in seeds[:, INIT_SEED]]
        normalises = uses_batch_norm(modules[0])
        if normalises and n_train < 2:
            raise ValueError(
                "A network with BatchNorm layers needs at least 2 training rows "
                f"to normalise by; got {n_train}."
            )
        snapshot_steps(plan, n_train, normalises)  # a SWAG phase with no snapshot
        probe = torch.as_tensor(X[:8])
        plan.stack_mode = plan.check(modules[:2], probe)
        with torch.no_grad():
            check_output(copy.deepcopy(modules[0]).eval()(probe))
        return modules

    def _train_groups(
        self, plan, modules, seeds, kept, devices, X_train, y_fit, validation
    ) -> dict:
        """Train the new particles, a group per joblib worker, and join them.

        The groups go round robin over ``devices``; each worker may use its
        share of the cores. The groups' stacks are built here, once per group,
        before any worker starts. If the dispatch fails (a group's error, Ctrl-C), the
        groups of this process stop and are waited for before the error goes
        on (:mod:`~sklearn_swag._training.stopping`).
        """
        n_jobs = max(1, effective_n_jobs(self.n_jobs))
        groups = partition(self.n_models - kept, n_jobs)
        group_device = group_devices(devices, len(groups))
        n_workers = min(n_jobs, len(groups))
        plan.max_threads = max(1, cpu_count() // n_workers)
        cuda = sorted({d.index or 0 for d in group_device if d.type == "cuda"})
        stacks = [
            ParticleStack(
                [modules[i] for i in ids],
                mode=plan.stack_mode,
                sample_ndim=plan.sample_ndim,
            )
            for ids in groups
        ]
        share = plan.max_threads if n_workers > 1 else None  # cores per group
        with (
            torch.random.fork_rng(devices=cuda),
            threads_restored(share),
            stopping_on_failure() as stop,
        ):
            results = Parallel(n_jobs=n_workers)(
                _delayed(fit_group)(
                    plan,
                    X_train,
                    y_fit,
                    ids + kept,
                    seeds[ids + kept],
                    dev,
                    stack,
                    validation,
                    position,
                    stop,
                )
                for position, (ids, dev, stack) in enumerate(
                    zip(groups, group_device, stacks, strict=True)
                )
            )
        return merge_groups(results)

    def _set_fitted_particles(self, merged, plan, seeds, root, kept) -> None:
        """The fitted state that the trained particles define."""
        self.particles_ = merged["stack"]
        # A copy (of a network instance too): what rebuilds particles_ on load.
        self._network = copy.deepcopy(plan.network_spec())
        self.swag_mean_ = merged["mean"]
        self.swag_sq_mean_ = merged["sq_mean"]
        self.swag_deviations_ = merged["deviations"]
        self.n_snapshots_ = merged["n_snapshots"]
        self.train_loss_ = merged["train_loss"]
        history = merged["history"]
        epochs = np.arange(1, history["train_loss"].shape[1] + 1)
        self.history_ = {"epoch": epochs, **history}
        self._diverged = warn_exploded(self.history_, first=kept)
        self.pretrain_epochs_ = merged["pretrain_epochs"]
        self.particle_seeds_ = seeds
        self._root_seed = root
        self.n_params_ = self.particles_.n_params
        # What prediction uses is fixed here: set_params after fit changes no
        # prediction.
        self.n_samples_ = int(self.n_samples) if self.swag_epochs > 0 else 1
        self.scale_ = float(self.scale) if self.swag_epochs > 0 else 0.0

    def _set_fitted_rows(self, fingerprint, root, X_train, train_weights) -> None:
        """The fitted state that the training rows define."""
        self._fingerprint = fingerprint
        self.bn_update_X_ = _bn_update_rows(
            X_train,
            self.bn_update_rows if self.particles_.has_batch_norm else 0,
            derived_rng(root, BN_ROWS_STREAM),
            train_weights,
        )
        # The refresh passes its rows in one batch, whatever batch_size: the
        # exact statistics over them (a model saved with a batch size keeps it).
        self._bn_batch_size = None
        self.n_train_samples_ = len(X_train)

    def _stops_early(self) -> bool:
        if self.early_stopping == "auto":
            return self.validation_fraction > 0
        return bool(self.early_stopping)

    def _check_params(self):
        _check_routed_names(type(self).__name__, self._routed_params())
        if self.early_stopping is True and self.validation_fraction == 0:
            raise ValueError(
                "early_stopping=True stops the pretraining on the held-out rows: "
                "set validation_fraction above 0."
            )
        if (
            self.pretrain_epochs != "auto"
            and self.pretrain_epochs + self.swag_epochs < 1
        ):
            raise ValueError(
                "pretrain_epochs + swag_epochs must be at least 1, got "
                f"{self.pretrain_epochs} + {self.swag_epochs}."
            )
        _check_parts(
            type(self).__name__, self.module, self.criterion, self._routed_params()
        )

    # -- prediction -------------------------------------------------------------------
    def _validated(self, X):
        return predict_inputs(self, X)

    def _predicted(self, X, what):
        """``what(dist)`` of the predictive distribution at ``X``, by blocks of rows.

        ``dist`` is what the estimator's ``_dist`` builds for a block of
        validated rows; ``_prediction_width`` is its number of columns.
        """
        X = self._validated(X)
        return self._by_row_blocks(
            X, self._prediction_width(), lambda rows: what(self._dist(rows))
        )

    def _by_row_blocks(self, X, width: int, predict):
        """``predict(X)`` computed on blocks of rows and joined.

        A block holds about ``_PREDICT_FLOATS`` floats per array of the
        per-particle predictions (``n_models * rows * width``), so that the
        memory a prediction takes beyond its results does not grow with the
        rows. ``predict`` returns an array or a tuple of arrays, the rows
        first; they are written into arrays allocated once.
        """
        rows = max(1, _PREDICT_FLOATS // max(1, len(self.swag_mean_) * width))
        if len(X) <= rows:
            return predict(X)
        results = None
        for start in range(0, len(X), rows):
            block = predict(X[start : start + rows])
            parts = block if isinstance(block, tuple) else (block,)
            if results is None:
                results = tuple(
                    np.empty((len(X), *p.shape[1:]), dtype=p.dtype) for p in parts
                )
            for target, part in zip(results, parts, strict=True):
                target[start : start + len(part)] = part
        return results if isinstance(block, tuple) else results[0]

    def _posterior(self) -> dict:
        """The fitted posterior, as the functions of ``_predictive`` take it."""
        return {
            "stack": self.particles_,
            "mean": self.swag_mean_,
            "sq_mean": self.swag_sq_mean_,
            "deviations": self.swag_deviations_,
            "scale": self.scale_,
            "device": resolve_devices(self.device)[0],
            "bn_rows": self.bn_update_X_,
            "bn_batch_size": self._bn_batch_size,
        }

    def _particle_outputs(self, X, reduce):
        """Every particle's ``n_samples_`` draws at ``X``, reduced by ``reduce``."""
        return particle_outputs(
            seeds=self.particle_seeds_[:, SAMPLE_SEED],
            X=X,
            n_samples=self.n_samples_,
            reduce=finite_outputs(reduce, X),
            **self._posterior(),
        )

    def _function_draws(self, X, n_samples, random_state, **kwargs):
        """Networks drawn from the posterior, the particles in turn, at ``X``.

        Returns
        -------
        ndarray of shape (n_samples, n_rows, n_outputs)
            Draw ``j`` comes from particle ``j % n_models``.
        """
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(
                f"n_samples must be a positive integer, got {n_samples!r}."
            )
        n_models = len(self.swag_mean_)
        seeds = check_random_state(random_state).randint(
            np.iinfo(np.int32).max, size=n_models
        )
        return function_draws(
            owners=np.arange(n_samples) % n_models,
            seeds=seeds,
            X=X,
            **self._posterior(),
            **kwargs,
        )
