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

import contextlib
from collections import OrderedDict
from numbers import Integral

import numpy as np
import torch
from torch import nn

from ._network.private_generator import private_generator
from ._network.stack import ParticleStack, check_stacked_values
from ._training.routed import build_network

#: How a saved stack may evaluate its copies (the evaluators' names).
STACK_MODES = ("lowered", "vmap", "loop")

#: What a saved network spec holds (:meth:`TrainingPlan.network_spec`).
_SPEC_KEYS = ("module", "module_kwargs", "n_features", "n_outputs", "mlp_defaults")


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
        if not (isinstance(self.cls, type) and issubclass(self.cls, nn.Module)):
            raise TypeError(
                f"A saved network instance names {self.cls!r}, which is not a "
                "torch.nn.Module class; the file was edited or damaged."
            )
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
    sample_ndim : int, default=1
        Axes of one sample (:class:`~sklearn_swag.ParticleStack`); a stack
        saved before it took rows of features.
    """

    def __init__(
        self,
        weights: list,
        buffers: list,
        mode: str,
        training: bool,
        sample_ndim: int = 1,
    ):
        self.weights = weights
        self.buffers = buffers
        self.mode = mode
        self.training = training
        self.sample_ndim = sample_ndim

    @classmethod
    def of(cls, stack: ParticleStack) -> StackState:
        weights, buffers = stack.arrays()
        return cls(weights, buffers, stack.mode, stack.training, stack.sample_ndim)

    def stack(self, network: dict) -> ParticleStack:
        """The stack again, its structure built from ``network`` (a spec).

        The spec and the saved values are checked first: the network's class
        must be a :class:`torch.nn.Module` (or None, the built-in MLP), the
        mode one of the evaluators', and the network is built on the
        ``meta`` device, which allocates nothing, to compare its sizes with
        the saved values before it is built for real.
        """
        _check_network_spec(network)
        if self.mode not in STACK_MODES:
            raise ValueError(
                f"The saved particles name the evaluation mode {self.mode!r}; "
                f"it must be one of {list(STACK_MODES)} (the file was edited "
                "or damaged, or saved by a newer version of sklearn_swag)."
            )
        with _names_the_network(network):
            _check_sizes_unallocated(network, self.weights, self.buffers)
        # Its weights come from the saved values: it draws from a generator of
        # its own, as the global one may be drawing a fit's weights meanwhile.
        with private_generator():
            template = build_network(network)
        sample_ndim = vars(self).get("sample_ndim", 1)
        if not isinstance(sample_ndim, Integral) or not 1 <= sample_ndim <= 32:
            raise ValueError(
                f"The saved particles take samples of {sample_ndim!r} axes; it "
                "must be a positive integer. The file was edited or damaged."
            )
        with _names_the_network(network):
            stack = ParticleStack.from_arrays(
                template,
                self.weights,
                self.buffers,
                mode=self.mode,
                sample_ndim=int(sample_ndim),
            )
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
    """The inverse of :func:`saved_state`: torch objects rebuilt, then checked.

    Raises
    ------
    ValueError or TypeError
        If the saved network or posterior is inconsistent (an edited or
        damaged file): see :meth:`StackState.stack` and
        :func:`check_posterior`.
    """
    state = from_plain(state)
    stack = state.get("particles_")
    if isinstance(stack, StackState):
        if not isinstance(state.get("_network"), dict):
            raise ValueError(
                "The saved particles come without the spec of their network "
                "(_network); the file was edited or damaged."
            )
        state["particles_"] = stack.stack(state["_network"])
    if isinstance(state.get("particles_"), ParticleStack) and "swag_mean_" in state:
        check_posterior(state)
        check_input_shape(state)
    return state


def check_input_shape(state: dict) -> None:
    """Fail unless the saved ``input_shape_`` fits the particles and BatchNorm rows.

    A model saved before ``input_shape_`` took rows of features and passes.
    """
    if "input_shape_" not in state:
        return
    shape = state["input_shape_"]
    if not (
        isinstance(shape, tuple)
        and shape
        and all(isinstance(s, Integral) and s >= 1 for s in shape)
    ):
        raise ValueError(
            f"The saved input_shape_ must be a tuple of positive integers; got "
            f"{shape!r}. The file was edited or damaged."
        )
    ndim = state["particles_"].sample_ndim
    if ndim != len(shape):
        raise ValueError(
            f"The saved input_shape_ {shape} has {len(shape)} axes, but the "
            f"saved particles take samples of {ndim}; the file was edited or "
            "damaged."
        )
    rows = state.get("bn_update_X_")
    if rows is not None and (
        not isinstance(rows, np.ndarray) or rows.shape[1:] != shape
    ):
        raise ValueError(
            f"The saved bn_update_X_ must hold samples of shape {shape}; got "
            f"{_described(rows)}. The file was edited or damaged."
        )


def _check_network_spec(network: dict) -> None:
    """Fail unless ``network`` is a spec that builds a torch network.

    Its builder must be None (the built-in MLP), a :class:`torch.nn.Module`
    subclass or instance: never another class the loader trusts (an
    optimizer, say), which would be called with arguments from the file.
    """
    missing = [k for k in _SPEC_KEYS if k not in network]
    if missing:
        raise ValueError(
            f"The saved network spec lacks {missing}; the file was edited or damaged."
        )
    module = network["module"]
    if not (
        module is None
        or isinstance(module, nn.Module)
        or (isinstance(module, type) and issubclass(module, nn.Module))
    ):
        raise TypeError(
            f"The saved network is built by {module!r}, which is not a "
            "torch.nn.Module class or instance: a saved model builds its "
            "network only from a module class. The file was edited or damaged."
        )
    for key in ("module_kwargs", "mlp_defaults"):
        if not isinstance(network[key], dict) or not all(
            isinstance(k, str) for k in network[key]
        ):
            raise ValueError(
                f"The saved network's {key} must be a dict of named arguments; "
                f"got {network[key]!r}."
            )
    for key in ("n_features", "n_outputs"):
        value = network[key]
        if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(
                f"The saved network's {key} must be a positive integer; got {value!r}."
            )


@contextlib.contextmanager
def _names_the_network(network: dict):
    """Re-raise a ValueError about the saved values, naming the network."""
    try:
        yield
    except ValueError as exc:
        module = network["module"]
        name = "MLP" if module is None else getattr(module, "__name__", module)
        if isinstance(module, nn.Module):
            name = type(module).__name__
        raise ValueError(
            f"The saved particles do not fit the network that {name} builds "
            "from the saved parameters (was its code changed since the model "
            f"was saved, or the file edited?): {exc}"
        ) from exc


def _check_sizes_unallocated(network: dict, weights: list, buffers: list) -> None:
    """Compare the network's sizes with the saved values, allocating nothing.

    The network is built on torch's ``meta`` device, which records shapes
    and dtypes but holds no storage (and draws no random numbers), so an
    edited file that asks for a huge network fails here, before any memory
    is taken. A network instance is skipped (its copy is as large as the
    file), and so is a class that cannot be built on ``meta``: it is built
    for real, and its sizes are checked after.
    """
    if isinstance(network["module"], nn.Module):
        return
    try:
        with torch.device("meta"):
            shapes_only = build_network(network)
    except (RuntimeError, NotImplementedError):
        return  # a constructor that reads tensor values: checked after building
    check_stacked_values(
        shapes_only,
        [torch.as_tensor(w) for w in weights],
        [torch.as_tensor(b) for b in buffers],
    )


def check_posterior(state: dict) -> None:
    """Fail unless the saved SWAG moments fit each other and the particles.

    ``swag_mean_`` and ``swag_sq_mean_`` must be finite float64 arrays of
    shape ``(n_models, n_params)``, with ``n_models`` and ``n_params`` those
    of ``particles_``, and ``swag_sq_mean_ >= swag_mean_**2`` up to rounding
    (a variance is never negative); ``swag_deviations_`` finite float32 or
    float16 of shape ``(n_models, K, n_params)``, ``K`` (the rank) at most
    the snapshots each particle took; ``n_snapshots_`` and
    ``particle_seeds_`` one row per particle.

    Parameters
    ----------
    state : dict
        A loaded estimator's state, its ``particles_`` rebuilt.

    Raises
    ------
    ValueError
        Naming the first array that does not fit.
    """
    stack = state["particles_"]
    expected = (stack.n_particles, stack.n_params)
    mean, sq_mean = state["swag_mean_"], state.get("swag_sq_mean_")
    for name, value in (("swag_mean_", mean), ("swag_sq_mean_", sq_mean)):
        _check_array(name, value, expected, (np.float64,))
    deviations = state.get("swag_deviations_")
    _check_array(
        "swag_deviations_",
        deviations,
        (stack.n_particles, None, stack.n_params),
        (np.float32, np.float16),
    )
    # sq_mean - mean**2 is a variance: below 0 only by rounding.
    tolerance = 1e-6 * np.maximum(sq_mean, mean * mean) + 1e-30
    bad = sq_mean - mean * mean < -tolerance
    if bad.any():
        p, i = np.argwhere(bad)[0]
        raise ValueError(
            f"The saved swag_sq_mean_ is below swag_mean_**2 for {int(bad.sum())} "
            f"weights (particle {p}, weight {i}: {sq_mean[p, i]!r} < "
            f"{mean[p, i]!r}**2), a negative variance; the file was edited or "
            "damaged."
        )
    for name in ("n_snapshots_", "particle_seeds_"):
        value = state.get(name)
        if not isinstance(value, np.ndarray) or value.shape[:1] != expected[:1]:
            raise ValueError(
                f"The saved {name} must hold one row per particle "
                f"({expected[0]}); got {_described(value)}. The file was "
                "edited or damaged."
            )
    n_snapshots = state["n_snapshots_"]
    if deviations.shape[1] > (n_snapshots.min() if len(n_snapshots) else 0):
        raise ValueError(
            f"The saved swag_deviations_ hold {deviations.shape[1]} deviations "
            f"per particle, but the particles took {n_snapshots.tolist()} "
            "snapshots (one deviation each at most); the file was edited or "
            "damaged."
        )
    if state.get("n_params_", stack.n_params) != stack.n_params:
        raise ValueError(
            f"The saved n_params_ ({state['n_params_']!r}) is not the "
            f"particles' {stack.n_params}; the file was edited or damaged."
        )


def _check_array(name: str, value, shape: tuple, dtypes: tuple) -> None:
    """Fail unless ``value`` is a finite array of ``shape`` (None: any) and dtype."""
    fits = (
        isinstance(value, np.ndarray)
        and value.ndim == len(shape)
        and all(s is None or s == v for s, v in zip(shape, value.shape, strict=True))
        and value.dtype in dtypes
    )
    if not fits:
        wanted = tuple("K" if s is None else s for s in shape)
        raise ValueError(
            f"The saved {name} must be an array of shape {wanted} (n_models "
            "and n_params as the particles'), of dtype "
            f"{' or '.join(np.dtype(d).name for d in dtypes)}; got "
            f"{_described(value)}. The file was edited or damaged."
        )
    if not np.isfinite(value).all():
        raise ValueError(
            f"The saved {name} holds {int((~np.isfinite(value)).sum())} values "
            "that are not finite; the file was edited or damaged."
        )


def _described(value) -> str:
    if isinstance(value, np.ndarray):
        return f"shape {value.shape}, dtype {value.dtype}"
    return repr(type(value).__name__)
