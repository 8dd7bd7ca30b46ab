"""The public objects of the lowering: :class:`LoweredNetwork` and :func:`lower`."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence

import torch
from torch import fx, nn

from ..._torch_compat import BatchNormBase
from . import rules  # noqa: F401  (registers the rules)
from .driver import Lowerer
from .tracing import trace
from .values import LoweringError

__all__ = ["LoweredNetwork", "lower"]

_MODES = ("train", "eval", "refresh")


class LoweredNetwork:
    """One network, evaluated for many weight vectors at once.

    Built by :func:`lower`. Calling it evaluates ``M`` copies of the network,
    copy ``m`` with ``params[i][m]`` and ``buffers[j][m]``, as one batched
    computation.

    Parameters
    ----------
    module : torch.nn.Module
        The network; a copy of it is kept (and traced).

    Attributes
    ----------
    param_names : list of str
        The names of ``module.named_parameters()``, in order: what ``params``
        holds.
    buffer_names : list of str
        The names of ``module.named_buffers()``, in order: what ``buffers``
        holds.
    has_batch_norm : bool
        Whether the network has a ``BatchNorm`` layer.
    """

    def __init__(self, module: nn.Module) -> None:
        self._module = copy.deepcopy(module)
        self._setup()

    def _setup(self) -> None:
        module = self._module
        named_params = list(module.named_parameters())
        named_buffers = list(module.named_buffers())
        self.param_names = [name for name, _ in named_params]
        self.buffer_names = [name for name, _ in named_buffers]
        self.has_batch_norm = any(
            isinstance(m, BatchNormBase) for m in module.modules()
        )
        self._param_index = {id(p): i for i, (_, p) in enumerate(named_params)}
        self._buffer_index = {id(b): j for j, (_, b) in enumerate(named_buffers)}
        self._device_for_constants: torch.device | None = None
        if not named_params and not named_buffers:
            raise LoweringError("a network without parameters or buffers")
        self._graph = trace(module)
        self._lock = threading.Lock()
        self._compiled: dict[tuple, Callable] = {}
        for mode, shared in (("train", False), ("eval", True)):
            Lowerer(self, mode, shared, None).run()  # fail early, not at a call

    def __call__(
        self,
        params: Sequence[torch.Tensor],
        buffers: Sequence[torch.Tensor],
        x: torch.Tensor,
        *,
        mode: str,
        shared_input: bool,
        generators: Sequence[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Evaluate every copy.

        Parameters
        ----------
        params : sequence of torch.Tensor
            One tensor per name of :attr:`param_names`, each ``(M, *shape)``.
        buffers : sequence of torch.Tensor
            One tensor per name of :attr:`buffer_names`, each ``(M, *shape)``;
            ``BatchNorm`` statistics are updated in them in place in the
            "train" and "refresh" modes.
        x : torch.Tensor
            ``(N, ...)`` rows shared by every copy, or ``(M, N, ...)``.
        mode : {"train", "eval", "refresh"}
            As ``module.train()``, as ``module.eval()``, or recomputing the
            ``BatchNorm`` statistics as cumulative averages over the batches
            since the caller reset them (no dropout).
        shared_input : bool
            Whether ``x`` is shared by every copy.
        generators : sequence of torch.Generator, optional
            In "train" mode, one per copy: the source of its dropout masks.
            Without them masks come from the global random state.

        Returns
        -------
        torch.Tensor
            ``(M, N, ...)``: every copy's output.
        """
        key = (mode, shared_input, x.ndim, x.device)
        fn = self._compiled.get(key)
        if fn is None:
            fn = self._compile(key)
        return fn(params, buffers, x, generators)

    def _compile(self, key: tuple) -> Callable:
        mode, shared, ndim, device = key
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")
        with self._lock:
            fn = self._compiled.get(key)
            if fn is None:
                self._device_for_constants = device
                lowerer = Lowerer(self, mode, bool(shared), ndim)
                graph = lowerer.run()
                fn = fx.GraphModule(lowerer.root, graph).forward
                self._compiled[key] = fn
        return fn

    def __getstate__(self) -> dict:
        return {"module": self._module}

    def __setstate__(self, state: dict) -> None:
        self._module = state["module"]
        self._setup()

    def __repr__(self) -> str:
        return f"LoweredNetwork({type(self._module).__name__})"


def lower(module: nn.Module) -> LoweredNetwork:
    """Rewrite ``module`` into a function of stacked weights.

    Parameters
    ----------
    module : torch.nn.Module
        The network; its forward takes one tensor and returns one tensor.

    Returns
    -------
    LoweredNetwork

    Raises
    ------
    LoweringError
        The network cannot be traced by :mod:`torch.fx`, or uses a module,
        function or method that has no batched rewrite here.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.func import stack_module_state
    >>> nets = [nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    ...         for _ in range(4)]
    >>> params, buffers = stack_module_state(nets)
    >>> net = lower(nets[0])
    >>> out = net([params[n] for n in net.param_names], [], torch.zeros(5, 3),
    ...           mode="eval", shared_input=True)
    >>> out.shape
    torch.Size([4, 5, 1])
    """
    return LoweredNetwork(module)
