"""How the copies of a particle stack are evaluated.

A :class:`~sklearn_swag._network.stack.ParticleStack` evaluates its copies with
one of three small evaluator classes, chosen once per stack:

``"lowered"`` (:class:`LoweredEvaluator`)
    The network is traced and rewritten into batched operations
    (:mod:`sklearn_swag._network.lowering`): a stacked ``Linear`` is one batched
    matrix product, a stacked convolution one grouped convolution, a
    ``BatchNorm`` keeps every copy's statistics. Most networks built from
    common layers take this path.
``"vmap"`` (:class:`VmapEvaluator`)
    Any other module that :func:`torch.func.vmap` can batch runs through
    :func:`torch.func.functional_call`.
``"loop"`` (:class:`LoopEvaluator`)
    What neither can batch runs copy by copy.

Every evaluator takes the weights and buffers as arguments, an explicit
``mode`` ("train", "eval", or "refresh" for recomputing normalisation
statistics) and whether the rows are ``shared`` by every copy (or each
copy's own, along a leading axis), so prediction never changes the fitted stack
(:class:`~sklearn_swag._network.inference.StackInference`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from .._torch_compat import BatchNormBase, DropoutBase
from .lowering import LoweringError, UnforeseenLoweringError, lower, strict


def _as_particle_output(out: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Shape a stacked output ``(P, N)`` or ``(P, N, o)`` as ``(P, N, o)``."""
    if out.ndim == 2:
        out = out.unsqueeze(-1)
    if out.ndim != 3 or out.shape[1] != n_rows:
        raise ValueError(
            "The module must return a tensor of shape (n_samples,) or "
            f"(n_samples, n_outputs); got shape {tuple(out.shape[1:])} for "
            f"{n_rows} samples."
        )
    return out


class LoweredEvaluator:
    """Copies evaluated by the network's batched rewrite.

    Parameters
    ----------
    lowered : LoweredNetwork
        The result of :func:`sklearn_swag._network.lowering.lower`.
    """

    name = "lowered"

    def __init__(self, lowered) -> None:
        self.lowered = lowered

    def __call__(
        self,
        params: Sequence[torch.Tensor],
        buffers: Sequence[torch.Tensor],
        X: torch.Tensor,
        *,
        mode: str,
        shared: bool = True,
        generators: Sequence[torch.Generator] | None = None,
    ) -> torch.Tensor:
        return self.lowered(
            params,
            buffers,
            X,
            mode=mode,
            shared_input=shared,
            generators=generators if mode == "train" else None,
        )

    def copy_to(self, device: torch.device) -> LoweredEvaluator:
        return self  # a pure function of its arguments: nothing to copy


class _SkeletonEvaluator:
    """Shared part of the evaluators that call a copy of the module.

    Parameters
    ----------
    skeleton : torch.nn.Module
        A copy of the network, owned by the evaluator.
    """

    name = ""

    def __init__(self, skeleton: nn.Module) -> None:
        self.skeleton = skeleton
        self.param_names = [name for name, _ in skeleton.named_parameters()]
        self.buffer_names = [name for name, _ in skeleton.named_buffers()]
        self._mode: str | None = None

    def _set_mode(self, mode: str) -> None:
        if mode == self._mode:
            return  # skorch asks at every step; walking the tree costs
        self.skeleton.train(mode != "eval")
        if mode == "refresh":  # normalisation statistics, without dropout
            for module in self.skeleton.modules():
                if isinstance(module, DropoutBase):
                    module.eval()
        self._mode = mode

    def _each_copy(self, params, buffers, X, mode, shared):
        """The copies one after another, each with its own weights and buffers.

        The buffers a copy updates (``BatchNorm`` statistics in training) are
        views of the stacked ones, so the updates land in the stack.
        """
        self._set_mode(mode)
        momenta = {}
        if mode == "refresh":  # cumulative averages, as SWAG's bn_update
            for module in self.skeleton.modules():
                if isinstance(module, BatchNormBase):
                    momenta[module] = module.momentum
                    module.momentum = None
        try:
            outs = []
            for i in range(params[0].shape[0] if params else buffers[0].shape[0]):
                values = {
                    n: p[i] for n, p in zip(self.param_names, params, strict=True)
                }
                own = {n: b[i] for n, b in zip(self.buffer_names, buffers, strict=True)}
                x = X if shared else X[i]
                outs.append(functional_call(self.skeleton, (values, own), (x,)))
        finally:
            for module, momentum in momenta.items():
                module.momentum = momentum
        return torch.stack(outs)

    def copy_to(self, device: torch.device):
        return type(self)(copy.deepcopy(self.skeleton).to(device))

    def __getstate__(self) -> dict:
        return {**vars(self), "_mode": None}


class VmapEvaluator(_SkeletonEvaluator):
    """Copies evaluated by :func:`torch.func.vmap` over one functional module."""

    name = "vmap"

    def __call__(self, params, buffers, X, *, mode, shared=True, generators=None):
        if mode == "refresh":  # vmap cannot keep buffer updates: copy by copy
            return self._each_copy(params, buffers, X, mode, shared)
        self._set_mode(mode)
        skeleton = self.skeleton

        def one(values, buffers_, x):
            return functional_call(skeleton, (values, buffers_), (x,))

        values = dict(zip(self.param_names, params, strict=True))
        buffer_values = dict(zip(self.buffer_names, buffers, strict=True))
        x_dim = None if shared else 0
        return vmap(one, in_dims=(0, 0, x_dim), randomness="different")(
            values, buffer_values, X
        )


class LoopEvaluator(_SkeletonEvaluator):
    """Copies evaluated one after another, each with its own weights and buffers."""

    name = "loop"

    def __call__(self, params, buffers, X, *, mode, shared=True, generators=None):
        return self._each_copy(params, buffers, X, mode, shared)


_EVALUATORS = {"vmap": VmapEvaluator, "loop": LoopEvaluator}


def _make_evaluator(mode: str, skeleton: nn.Module):
    if mode in ("auto", "lowered"):
        try:
            return LoweredEvaluator(lower(skeleton))
        except LoweringError as exc:
            if mode == "lowered" or (
                isinstance(exc, UnforeseenLoweringError) and strict()
            ):
                raise
            mode = "vmap"
    if mode not in _EVALUATORS:
        raise ValueError(
            f"mode must be 'auto', 'lowered', 'vmap' or 'loop', got {mode!r}."
        )
    return _EVALUATORS[mode](copy.deepcopy(skeleton))
