"""The estimator core that the MultiSWAG regressor and classifier share.

:class:`MultiSWAGBase` holds what does not depend on the kind of target:
routed ``module__*``-style parameters, the checks of every parameter, the
held-out split, the particles' seeds, the joblib dispatch of particle groups to
devices, warm starts, and the inputs of the posterior draws. The estimators
(:mod:`~sklearn_swag._regressor`, :mod:`~sklearn_swag._classifier`) add what
their targets need: scaling and observation noise for regression, labels and
class probabilities for classification.
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from joblib import Parallel, cpu_count, effective_n_jobs
from joblib import delayed as _delayed
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._network.losses import elementwise_loss
from ._network.stack import ParticleStack, uses_batch_norm
from ._persistence import loaded_state, saved_state
from ._posterior.diagnostics import warn_exploded
from ._posterior.draws import function_draws, particle_outputs
from ._sklearn_compat import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
    _check_sample_weight,
    validate_data,
)
from ._training.particles import (
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
)
from ._training.threads import threads_restored

#: Floats per array of per-particle predictions in one block of rows (see
#: ``MultiSWAGBase._by_row_blocks``): 8 MB of float64.
_PREDICT_FLOATS = 2**20

#: Prefixes of the parameters routed to the parts that skorch builds.
ROUTED_PREFIXES = ("module__", "optimizer__", "criterion__", "iterator_train__")

#: What ``iterator_train__*`` may set on the particle batches.
_ITERATOR_KEYS = ("shuffle", "drop_last")


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
    ):
        """Train the particles and set the fitted state they define.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), float32
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
            ``out`` on a few training rows (eval mode, on a copy)
            output does not fit the targets.
        class_targets : bool, default=False
            Whether ``y_train`` holds class indices.
        mlp_defaults : dict or None, default=None
            Arguments of the built-in :class:`~sklearn_swag.MLP` (with
            ``module=None``) unless ``module__*`` parameters set them.

        Returns
        -------
        (train, held_out) : tuple of ndarray, or None
            Indices of the rows trained on and held out; None when a warm
            start has no particle to add.
        """
        devices = resolve_devices(self.device)
        fingerprint = _fingerprint(X, y_given, weights)
        kept = self._kept_particles(fingerprint)
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
            class_targets=class_targets,
            mlp_defaults=dict(mlp_defaults or {}),
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
        probe = torch.as_tensor(X[:8])
        plan.stack_mode = plan.check(modules[:2], probe)
        with torch.no_grad():
            check_output(copy.deepcopy(modules[0]).eval()(probe))
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
                )
                for position, (ids, dev, stack) in enumerate(
                    zip(groups, group_device, stacks, strict=True)
                )
            )
        merged = merge_groups(results)
        if kept:  # warm start: the particles fitted before come first
            merged = self._with_fitted_particles(merged)

        self.particles_ = merged["stack"]
        self._network = plan.network_spec()  # what rebuilds particles_ on load
        self.swag_mean_ = merged["mean"]
        self.swag_sq_mean_ = merged["sq_mean"]
        self.swag_deviations_ = merged["deviations"]
        self.n_snapshots_ = merged["n_snapshots"]
        self.train_loss_ = merged["train_loss"]
        self.history_ = _history(merged["history"])
        self._diverged = warn_exploded(self.history_, first=kept)
        self.pretrain_epochs_ = merged["pretrain_epochs"]
        self.particle_seeds_ = seeds
        self._root_seed = root
        self._fingerprint = fingerprint
        self.n_params_ = self.particles_.n_params
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
        return train, held_out

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
                f"{type(self).__name__}.from_skorch(net, ...) to take its module, "
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
    # -- prediction -------------------------------------------------------------------
    def _validated(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return as_float32(X, "X")

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
            reduce=reduce,
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


def as_float32(values: np.ndarray, name: str) -> np.ndarray:
    """``values`` as float32 (no copy if they are), or a clear error.

    The networks compute in float32: a value beyond its range (about 3.4e38)
    would become infinite and every prediction would fail, so it is refused
    here, naming the columns.
    """
    if values.dtype != np.float32:
        big = np.abs(values) > np.finfo(np.float32).max
        if big.any():
            columns = np.flatnonzero(big.reshape(len(values), -1).any(axis=0))
            raise ValueError(
                f"{name} has values beyond the float32 range (|value| > 3.4e38) in "
                f"column(s) {columns[:10].tolist()}; the networks compute in "
                "float32. Rescale these columns (for example with StandardScaler "
                "in a Pipeline) or divide them by a constant."
            )
    return values.astype(np.float32, copy=False)


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


def _check_routed_names(owner: str, params: dict) -> None:
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
            f"{owner} got unexpected parameter(s) {sorted(bad)}; routed "
            f"parameters start with one of {list(ROUTED_PREFIXES)}. " + " ".join(hints)
        )
