"""A fitted estimator's state as plain data, for pickle and for skops.

What an estimator saves (its ``__getstate__``) holds no torch object: tensors
become numpy arrays, network instances the user passed become their class and
plain attributes, and the fitted :class:`~sklearn_swag.ParticleStack` becomes
its stacked weights and buffers. Loading (``__setstate__``) rebuilds the torch
objects: the particles' network is built again from what built it in ``fit``
(the module class and its routed arguments), and the saved values are put
into it.

So :func:`skops.io.load` has nothing to trust but this package's classes and
the classes the user named as parameters (the module, optimizer and criterion
classes, and whatever classes routed parameters name), and pickle files no
longer depend on how torch pickles tensors.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from ._network.private_generator import private_generator
from ._network.stack import ParticleStack
from ._training.routed import build_network


class TensorState:
    """A tensor as a numpy array (on the CPU), and whether it is a parameter.

    Parameters
    ----------
    values : ndarray
        The tensor's values.
    parameter : bool
        Whether it was a :class:`torch.nn.Parameter`.
    requires_grad : bool
        Its ``requires_grad``.
    """

    def __init__(self, values: np.ndarray, parameter: bool, requires_grad: bool):
        self.values = values
        self.parameter = parameter
        self.requires_grad = requires_grad

    @classmethod
    def of(cls, tensor: torch.Tensor) -> TensorState:
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
            raise TypeError(
                "A bfloat16 tensor cannot be saved as plain data; convert it to "
                "float32 first."
            )
        return cls(
            tensor.detach().cpu().numpy().copy(),
            isinstance(tensor, nn.Parameter),
            bool(tensor.requires_grad),
        )

    def tensor(self) -> torch.Tensor:
        values = torch.from_numpy(np.array(self.values, copy=True))
        if self.parameter:
            return nn.Parameter(values, requires_grad=self.requires_grad)
        return values.requires_grad_(self.requires_grad)


class ModuleState:
    """A network instance as its class and its attributes, as plain data.

    Parameters
    ----------
    cls : type
        The module's class.
    attributes : dict
        Its ``__dict__``, with tensors and submodules as plain data.
    """

    def __init__(self, cls: type, attributes: dict):
        self.cls = cls
        self.attributes = attributes

    def module(self) -> nn.Module:
        module = self.cls.__new__(self.cls)
        # nn.Module.__setstate__ fills in whatever an older torch left out.
        module.__setstate__(from_plain(self.attributes))
        return module


class StackState:
    """A fitted :class:`~sklearn_swag.ParticleStack` as plain data.

    Parameters
    ----------
    weights, buffers : list of ndarray
        The stacked values (:meth:`ParticleStack.arrays`).
    mode : str
        How the stack evaluates its copies.
    training : bool
        Whether it was in training mode.
    """

    def __init__(self, weights: list, buffers: list, mode: str, training: bool):
        self.weights = weights
        self.buffers = buffers
        self.mode = mode
        self.training = training

    @classmethod
    def of(cls, stack: ParticleStack) -> StackState:
        weights, buffers = stack.arrays()
        return cls(weights, buffers, stack.mode, stack.training)

    def stack(self, network: dict) -> ParticleStack:
        """The stack again, its structure built from ``network`` (a spec)."""
        # Its weights come from the saved values: it draws from a generator of
        # its own, as the global one may be drawing a fit's weights meanwhile.
        with private_generator():
            template = build_network(network)
        try:
            stack = ParticleStack.from_arrays(
                template, self.weights, self.buffers, mode=self.mode
            )
        except ValueError as exc:
            module = network["module"]
            name = "MLP" if module is None else getattr(module, "__name__", module)
            raise ValueError(
                f"The saved particles do not fit the network that {name} builds "
                "now (was its code changed since the model was saved?): "
                f"{exc}"
            ) from exc
        return stack.train(self.training)


def to_plain(value):
    """``value`` with every tensor and network instance as plain data.

    Dicts, lists and tuples are walked; a :class:`ParticleStack` is left as
    it is (the estimator saves it with the spec of its network).
    """
    if isinstance(value, torch.Tensor):
        return TensorState.of(value)
    if isinstance(value, ParticleStack):
        return value
    if isinstance(value, nn.Module):
        return ModuleState(type(value), to_plain(dict(vars(value))))
    if type(value) in (dict, OrderedDict):
        return type(value)((k, to_plain(v)) for k, v in value.items())
    if type(value) in (list, tuple):
        return type(value)(to_plain(v) for v in value)
    return value


def from_plain(value):
    """The inverse of :func:`to_plain`."""
    if isinstance(value, TensorState):
        return value.tensor()
    if isinstance(value, ModuleState):
        return value.module()
    if type(value) in (dict, OrderedDict):
        return type(value)((k, from_plain(v)) for k, v in value.items())
    if type(value) in (list, tuple):
        return type(value)(from_plain(v) for v in value)
    return value


def saved_state(state: dict) -> dict:
    """An estimator's ``__dict__`` as it is saved: plain data only.

    The fitted particles are saved as their values and rebuilt on load from
    ``_network``, the spec of the network ``fit`` built.
    """
    state = dict(state)
    stack = state.get("particles_")
    if isinstance(stack, ParticleStack) and "_network" in state:
        state["particles_"] = StackState.of(stack)
    return to_plain(state)


def loaded_state(state: dict) -> dict:
    """The inverse of :func:`saved_state`: torch objects rebuilt."""
    state = from_plain(state)
    stack = state.get("particles_")
    if isinstance(stack, StackState):
        state["particles_"] = stack.stack(state["_network"])
    return state
