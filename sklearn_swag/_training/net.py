"""The skorch net of one training run of a group, and its callbacks.

A group of particles trains as one :class:`~sklearn_swag.ParticleStack`, the
module of a skorch net (:class:`_GroupNet`) that feeds it per-particle
mini-batches, keeps skorch's history in constant time (:class:`_RunHistory`)
and, where it may (:func:`_may_flatten`), lets the optimizer step the stack's
parameters as one flat tensor (:mod:`.flat`).
:func:`_callbacks` puts together what watches a run: the divergence check, the
learning-rate plan, the SWAG collector, the history, early stopping, the user's
callbacks, the progress bar and the thread choice.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, ParamMapper
from skorch.dataset import get_len
from skorch.history import History

from .._network.stack import ParticleStack
from .batches import ParticleBatches, training_batches
from .callbacks import (
    DivergenceCheck,
    EpochProgress,
    LearningRatePlan,
    PretrainingMonitor,
    StopCheck,
    SWAGCollector,
    ThreadTuner,
    TrainingHistory,
)
from .flat import FlatParameters, attached
from .fused_step import fused_step
from .optimizers import _fast_optimizer_kwargs
from .plan import TrainingPlan
from .stopping import StopSignal
from .threads import ThreadChooser


class _Interrupted(BaseException):
    """A ``KeyboardInterrupt`` on its way past skorch, which would swallow it."""


class _RunHistory(History):
    """skorch's ``History``, written to in constant time.

    skorch's ``History`` resolves every index by copying its list of epochs,
    its writes included (``record``, ``record_batch``, ``new_batch``), so a
    run of ``E`` epochs costs ``O(E**2)`` in bookkeeping: about 20 us per
    epoch over 3,000 epochs of one batch, 90 us at epoch 10,000, where the
    whole step of the seed's 16 particles takes about 400 us. These writes
    change the same rows in place; reading keeps skorch's indexing.
    """

    def _last_epoch(self) -> dict:
        if not self:
            raise ValueError("Call new_epoch before recording for the first time.")
        return list.__getitem__(self, -1)

    def new_batch(self):
        self._last_epoch()["batches"].append({})

    def record(self, attr, value):
        self._last_epoch()[attr] = value

    def record_batch(self, attr, value):
        self._last_epoch()["batches"][-1][attr] = value


class _GroupNet(NeuralNet):
    """A skorch net that trains one particle stack.

    Compared with a plain ``NeuralNet`` it has no default callbacks (the
    timer, the loss scorers and the printed log cost more than a tiny
    network's step), it feeds batches through :class:`ParticleBatches`, and
    Ctrl-C stops the fit instead of ending training early with a
    half-trained model (skorch's ``partial_fit`` catches
    ``KeyboardInterrupt``). With ``may_flatten`` set (see
    :func:`_may_flatten`), the optimizer steps the stack's parameters as one
    flat tensor while the net trains (:class:`FlatParameters`, ``flat_``).
    """

    may_flatten = False
    flat_: FlatParameters | None = None

    def get_default_callbacks(self):
        return []

    def initialize_optimizer(self, *args, **kwargs):
        # Flat unless a callback looks at the parameters one by one: one that
        # watches the gradients or maps the parameters (skorch's ``Freezer``,
        # ``Initializer``, ...). skorch initialises the callbacks first.
        params = list(self.module_.parameters())
        flat = (
            self.may_flatten
            and not self.watches_gradients_
            and not any(isinstance(cb, ParamMapper) for _, cb in self.callbacks_)
            and FlatParameters.applies(params)
        )
        self.flat_ = FlatParameters(params) if flat else None
        return super().initialize_optimizer(*args, **kwargs)

    def get_all_learnable_params(self):
        if self.flat_ is None:
            yield from super().get_all_learnable_params()
            return
        yield "flat_weights", self.flat_.param
        stacked = set(map(id, self.flat_.params))
        for name, param in super().get_all_learnable_params():
            if id(param) not in stacked:  # a criterion's own parameters
                yield name, param

    def _zero_grad_optimizer(self, set_to_none=None):
        flat = self.flat_
        if flat is None or not flat.attached:
            return super()._zero_grad_optimizer(set_to_none)
        flat.zero_grad()
        for group in self.optimizer_.param_groups:
            for param in group["params"]:
                if param is not flat.param:  # a criterion's own, as skorch does
                    param.grad = None
        return None

    def flat_weights(self) -> torch.Tensor:
        """The stack's weights, ``(n_particles, n_params)``: while it trains
        flat, the optimizer's tensor itself (detached), else a copy."""
        if self.flat_ is not None and self.flat_.attached:
            return self.flat_.weights()
        return self.module_.flat_weights()

    def initialize_callbacks(self):
        super().initialize_callbacks()
        self.listeners_ = {
            hook: [cb for _, cb in self.callbacks_ if _listens(cb, hook)]
            for hook in _HOOKS
        }
        self.watches_gradients_ = bool(self.listeners_["on_grad_computed"])
        return self

    def notify(self, method_name, **cb_kwargs):
        """skorch's ``notify``, calling only the callbacks that define the hook.

        The net's own hook first, then the callbacks in order, as skorch
        does; a callback that keeps ``Callback``'s empty method is skipped
        (four hooks a step, each a call per callback, on a tiny network's
        step).
        """
        listeners = vars(self).get("listeners_", {}).get(method_name)
        if listeners is None:
            return super().notify(method_name, **cb_kwargs)
        getattr(self, method_name)(self, **cb_kwargs)
        for callback in listeners:
            getattr(callback, method_name)(self, **cb_kwargs)
        return None

    def infer(self, x, **fit_params):
        # A batch is a tensor on the training device already (ParticleBatches;
        # the group passes the device as a torch.device): skorch's conversion
        # would only cost, at every step.
        if type(x) is torch.Tensor and not fit_params and x.device == self.device:
            return self.module_(x)
        return super().infer(x, **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        if type(y_true) is torch.Tensor and y_true.device == self.device:
            return self.criterion_(y_pred, y_true)
        return super().get_loss(y_pred, y_true, X=X, training=training)

    def train_step(self, batch, **fit_params):
        """One optimizer step, without skorch's closure where nothing needs it.

        skorch hands the optimizer a closure and tells the callbacks of the
        gradients at every step; with no callback watching them, the step is
        the same without both (the group's optimizers all step without a
        closure, see ``check_optimizer_decouples``), and about 3% faster on a
        tiny network (21 of 730 us a step, the seed's 16 particles).
        """
        if self.watches_gradients_:
            return super().train_step(batch, **fit_params)
        self._zero_grad_optimizer()
        step = self.train_step_single(batch, **fit_params)
        self._step_optimizer(None)
        return step

    def _step_optimizer(self, step_fn):
        # Without a closure, a fused optimizer steps by its kernel alone where
        # that is the same step (:func:`fused_step`).
        if step_fn is not None:
            return super()._step_optimizer(step_fn)
        for name in self._optimizers:
            optimizer = getattr(self, name + "_")
            if not fused_step(optimizer):
                optimizer.step()
        return None

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """skorch's epoch, with a batch's size read as its tensor's length
        (skorch's ``get_len`` walks any nesting of data, at every step)."""
        if iterator is None:
            return
        history = self.history
        batch_count = 0
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            history.record_batch(prefix + "_loss", step["loss"].item())
            first = batch[0] if isinstance(batch, (tuple, list)) else batch
            size = len(first) if type(first) is torch.Tensor else get_len(first)
            history.record_batch(prefix + "_batch_size", size)
            self.notify("on_batch_end", batch=batch, training=training, **step)
            batch_count += 1
        history.record(prefix + "_batch_count", batch_count)

    def initialize_history(self):
        self.history_ = _RunHistory()
        return self

    def fit_loop(self, *args, **kwargs):
        try:
            with attached(self.flat_):
                return super().fit_loop(*args, **kwargs)
        except KeyboardInterrupt as exc:
            raise _Interrupted from exc

    def predict(self, X):
        """The mean over the group's particles, in the units the networks learn.

        What a user's scoring callback (``EpochScoring``) gets from
        ``net.predict``: one prediction per row, as from a single network.
        """
        X = getattr(X, "X", X)  # a skorch Dataset
        X_t = torch.as_tensor(np.asarray(X, dtype=np.float32), device=self.device)
        stack = self.module_
        training = stack.training
        try:
            with torch.no_grad():
                out = stack.eval()(X_t).mean(dim=0)
        finally:
            stack.train(training)
        out = out.cpu().numpy()
        return out[:, 0] if out.shape[1] == 1 else out

    def get_iterator(self, dataset, training=False):
        kwargs = self.get_params_for("iterator_train" if training else "iterator_valid")
        batch_size = kwargs.pop("batch_size", self.batch_size)
        if batch_size in (None, -1):
            batch_size = len(dataset)
        return ParticleBatches(
            dataset,
            batch_size,
            self.particle_generators_,
            merge_single_row=self.module_.normalises_batches,
            **kwargs,
        )


def snapshot_steps(plan: TrainingPlan, n_rows: int, merge_single_row: bool) -> int:
    """Training steps between two SWAG snapshots, or a clear error if none fits.

    A snapshot is taken every ``round(swag_every * steps_per_epoch)`` steps of
    the SWAG epochs (at least every step). A ``swag_every`` longer than all
    the SWAG epochs would take no snapshot, and a particle without one has no
    posterior: that is refused before training.

    Raises
    ------
    ValueError
        With ``swag_epochs > 0`` and no snapshot in the SWAG epochs.
    """
    drop_last = bool(plan.iterator_kwargs.get("drop_last", False))
    steps_per_epoch = len(
        training_batches(n_rows, plan.batch_size, drop_last, merge_single_row)
    )
    every = max(1, round(plan.swag_every * steps_per_epoch))
    if 0 < plan.swag_epochs * steps_per_epoch < every:
        raise ValueError(
            f"swag_every={plan.swag_every:g} epochs takes no snapshot in "
            f"swag_epochs={plan.swag_epochs} (of {steps_per_epoch} training "
            "step(s) each): set swag_every to at most swag_epochs, or "
            "swag_epochs=0 for a deep ensemble."
        )
    return every


def _callbacks(
    plan: TrainingPlan,
    stack: ParticleStack,
    n_rows: int,
    particle_ids: np.ndarray,
    swag_start: int,
    thread_limit: int = 1,
    monitor: PretrainingMonitor | None = None,
    progress: EpochProgress | None = None,
    stop: StopSignal | None = None,
) -> tuple[list, TrainingHistory, SWAGCollector | None]:
    """The callbacks of one training run of a group.

    ``swag_start`` epochs of pretraining come first, then SWAG epochs until
    the run ends. With ``monitor`` (early stopping) the run is pretraining
    alone: no snapshots, and the monitor right after the history, so that the
    epoch it ends is recorded. With ``stop``, the fit's stop signal is
    checked before every batch, first.

    Returns
    -------
    callbacks : list
    history : TrainingHistory
    collector : SWAGCollector or None
        None with ``monitor``.
    """
    callbacks: list = [] if stop is None else [("fit_stop", StopCheck(stop))]
    callbacks.append(("divergence", DivergenceCheck(list(map(int, particle_ids)))))
    if plan.swa_lr is not None:
        rates = LearningRatePlan(plan.lr, plan.swa_lr, swag_start, plan.anneal_epochs)
        callbacks.append(("learning_rate", rates))
    collector = None
    if monitor is None:
        collector = SWAGCollector(
            start_epoch=swag_start,
            rank=plan.rank,
            deviation_dtype=getattr(torch, plan.deviation_dtype),
            every_steps=snapshot_steps(plan, n_rows, stack.normalises_batches),
        )
        callbacks.append(("swag", collector))
    history = TrainingHistory(swag_start)
    callbacks.append(("history", history))
    if monitor is not None:
        callbacks.append(("early_stopping", monitor))
    # The user's callbacks, a copy for every group: after the SWAG collection
    # (so a learning-rate scheduler steps after the epoch it ran).
    callbacks += [copy.deepcopy(cb) for cb in plan.callbacks]
    if progress is not None:
        callbacks.append(("progress", progress))
    # Never more threads than the run may try (see _Run.thread_limit).
    threads = min(plan.threads_for(len(particle_ids), n_rows), thread_limit)
    on_cpu = next(stack.parameters()).device.type == "cpu"
    if on_cpu and threads > 1:
        callbacks.append(("threads", ThreadTuner(ThreadChooser(threads))))
    return callbacks, history, collector


def _may_flatten(plan: TrainingPlan, stack: ParticleStack) -> bool:
    """Whether the optimizer may step the stack's parameters as one tensor.

    The same update wherever the weights sit (the group's optimizers update
    each weight from its own gradients), provided every parameter is trained
    at every step, as in a lowered network (a static graph of batched
    operations; an unused parameter would otherwise see zero gradients
    instead of none), and nothing looks at the parameters one by one: no
    parameter groups here, and no callback that does (the net checks its
    callbacks, :meth:`_GroupNet.initialize_optimizer`).
    """
    return stack.mode == "lowered" and "param_groups" not in plan.optimizer_kwargs


#: The hooks skorch's ``notify`` calls.
_HOOKS = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_batch_begin",
    "on_batch_end",
    "on_grad_computed",
)


def _listens(callback, hook: str) -> bool:
    """Whether a skorch callback does something on ``hook``: it defines the
    method, in its class or on itself, instead of ``Callback``'s empty one.
    One that listens to ``on_grad_computed`` (``GradientNormClipping``)
    watches the gradients of every step."""
    if hook in vars(callback):
        return True
    return getattr(type(callback), hook, None) is not getattr(Callback, hook)


def _group_net(plan, stack, criterion, device, callbacks, epochs) -> _GroupNet:
    """The skorch net of one training run of a group, with a fresh optimizer."""
    net = _GroupNet(
        module=stack,
        criterion=criterion,
        optimizer=plan.optimizer,
        lr=plan.lr,
        max_epochs=epochs,
        batch_size=-1 if plan.batch_size is None else plan.batch_size,
        train_split=None,
        callbacks=callbacks,
        device=device,
        **{
            f"optimizer__{k}": v
            for k, v in _fast_optimizer_kwargs(
                plan.optimizer, plan.optimizer_kwargs, device
            ).items()
        },
        **{f"iterator_train__{k}": v for k, v in plan.iterator_kwargs.items()},
    )
    net.may_flatten = _may_flatten(plan, stack)
    return net
