"""Whether two network specs build the same network: what a warm start checks.

A warm start keeps the fitted particles and trains new ones beside them; both
must be copies of one network, the one the kept particles were trained with.
:func:`check_same_network` compares the spec that ``fit`` recorded
(:meth:`TrainingPlan.network_spec`, the estimator's ``_network``) with the
spec the current parameters give, and names every routed parameter that
differs. The optimizer, criterion and epochs are not compared: they change
how the new particles train, not what the kept ones are.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from torch import nn

from .._network.mlp import MLP


def check_same_network(fitted: dict, new: dict) -> None:
    """Refuse a warm start whose network differs from the fitted particles'.

    Parameters
    ----------
    fitted : dict
        The spec the kept particles were built from.
    new : dict
        The spec the estimator's parameters give now.

    Raises
    ------
    ValueError
        Naming the parameters that differ.
    """
    changed = network_changes(fitted, new)
    if changed:
        raise ValueError(
            "warm_start=True adds particles of the network the fitted ones "
            f"were trained with, but {', '.join(changed)} changed since that "
            "fit; set them back, or set warm_start=False to fit every "
            "particle afresh."
        )


def network_changes(fitted: dict, new: dict) -> list[str]:
    """The parameters in which two network specs differ, by their routed names.

    A routed argument given in one spec and left at the default of the
    network's class in the other is the same; the built-in MLP's defaults
    (``mlp_defaults``) count as given.
    """
    if not same_value(fitted["module"], new["module"]):
        return ["module"]  # another network: its arguments are not comparable
    changed = []
    old_kwargs, new_kwargs = _arguments(fitted), _arguments(new)
    defaults = _defaults(new["module"])
    for key in sorted(set(old_kwargs) | set(new_kwargs)):
        old = old_kwargs.get(key, defaults.get(key, _MISSING))
        value = new_kwargs.get(key, defaults.get(key, _MISSING))
        if same_value(old, value):
            continue
        if key == "mean_variance":  # the built-in network's noise half
            models = ["homoscedastic", "heteroscedastic"]
            changed.append(
                f"the noise model ({models[bool(old)]} -> {models[bool(value)]}; "
                "noise='auto' takes it from module and criterion)"
            )
        else:
            changed.append(f"module__{key}")
    for key in ("n_features", "n_outputs"):
        if fitted.get(key) != new.get(key):
            changed.append(f"the network's {key} ({fitted.get(key)} -> {new[key]})")
    return changed


#: A routed argument that one spec gives and the other neither gives nor has
#: a default for.
_MISSING = object()


def _arguments(spec: dict) -> dict:
    if spec["module"] is None:
        return {**spec.get("mlp_defaults", {}), **spec["module_kwargs"]}
    return dict(spec["module_kwargs"])


def _defaults(module) -> dict:
    """The defaults of the network class's arguments (none for an instance)."""
    factory = MLP if module is None else module
    if not isinstance(factory, type):
        return {}
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a signature Python cannot read
        return {}
    return {p.name: p.default for p in parameters if p.default is not p.empty}


def same_value(a, b) -> bool:
    """Whether two routed values build the same network.

    Classes and other objects compare with ``==``; sequences element by
    element (a list and a tuple alike); tensors and arrays by shape, dtype and
    values; network instances by :func:`_module_signature`.
    """
    if a is b:
        return True
    if isinstance(a, nn.Module) or isinstance(b, nn.Module):
        return (
            isinstance(a, nn.Module)
            and isinstance(b, nn.Module)
            and _module_signature(a) == _module_signature(b)
        )
    if isinstance(a, (torch.Tensor, np.ndarray)) or isinstance(
        b, (torch.Tensor, np.ndarray)
    ):
        return _same_array(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(same_value, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - a value that cannot say: not the same
        return False


def _same_array(a, b) -> bool:
    if not isinstance(a, (torch.Tensor, np.ndarray)) or not isinstance(
        b, (torch.Tensor, np.ndarray)
    ):
        return False
    a, b = torch.as_tensor(a).detach().cpu(), torch.as_tensor(b).detach().cpu()
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)


def _module_signature(module: nn.Module) -> list:
    """What makes a network instance the network it is, its weights aside.

    Every submodule's name, class and public plain attributes (sizes,
    probabilities, flags), and every parameter's and buffer's name, shape and
    dtype: an instance is re-initialised for every particle, so its values do
    not matter.
    """
    signature = []
    for name, sub in module.named_modules():
        attributes = {
            k: v
            for k, v in vars(sub).items()
            if not k.startswith("_") and k != "training"
        }
        signature.append((name, type(sub), _Plain(attributes)))
    for kind, tensors in (
        ("parameter", module.named_parameters()),
        ("buffer", module.named_buffers()),
    ):
        signature += [(kind, n, tuple(t.shape), t.dtype) for n, t in tensors]
    return signature


class _Plain:
    """A value that compares with :func:`same_value`."""

    def __init__(self, value) -> None:
        self.value = value

    def __eq__(self, other) -> bool:
        return isinstance(other, _Plain) and same_value(self.value, other.value)

    __hash__ = None
