"""The parts a user names, built from their class and routed parameters.

A network, criterion or optimizer is given as a class (or, for the network
and the criterion, an instance) and built with its ``module__*``,
``criterion__*`` or ``optimizer__*`` parameters; an error names the routed
parameters, and a name without a known prefix is refused before any work.
"""

from __future__ import annotations

import copy

from torch import nn

from .._network.mlp import MLP, MeanVarianceMLP
from .._sklearn_compat import InvalidParameterError

#: Prefixes of the parameters routed to the parts that skorch builds.
ROUTED_PREFIXES = ("module__", "optimizer__", "criterion__", "iterator_train__")

#: What ``iterator_train__*`` may set on the particle batches.
ITERATOR_KEYS = ("shuffle", "drop_last")


def build_network(spec: dict) -> nn.Module:
    """One particle's network, as :meth:`TrainingPlan.network_spec` describes it.

    A module class is called with its routed arguments, an instance is copied
    and re-initialised, and None builds the built-in :class:`MLP`. The new
    weights come from the global torch random state.
    """
    module, kwargs = spec["module"], spec["module_kwargs"]
    if isinstance(module, nn.Module):
        return _reinitialised_copy(module)
    if module is None:
        defaults = dict(spec["mlp_defaults"])
        network = MeanVarianceMLP if defaults.pop("mean_variance", False) else MLP
        return _build_routed(
            network,
            "module",
            {**defaults, **kwargs},
            n_features=spec["n_features"],
            n_outputs=spec["n_outputs"],
        )
    return _build_routed(module, "module", kwargs)


def _build_routed(factory, prefix: str, routed: dict, *args, **fixed):
    """``factory(*args, **fixed, **routed)``, naming the routed parameters on error."""
    try:
        return factory(*args, **fixed, **routed)
    except TypeError as exc:
        names = ", ".join(f"{prefix}__{k}" for k in routed) or "none"
        raise TypeError(
            f"Could not build {getattr(factory, '__name__', factory)} with the "
            f"routed parameters ({names}): {exc}"
        ) from exc


def _reinitialised_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose layers are re-initialised."""
    copy_ = copy.deepcopy(module)
    for sub in copy_.modules():
        reset = getattr(sub, "reset_parameters", None)
        if callable(reset):
            reset()
    return copy_


def _check_routed_names(owner: str, params: dict) -> None:
    """Refuse parameters that are neither the estimator's nor routed."""
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


def _routed_for(routed: dict, prefix: str) -> dict:
    """The routed parameters of one part (``prefix`` "module"...), unprefixed."""
    start = len(prefix) + 2
    return {k[start:]: v for k, v in routed.items() if k.startswith(prefix + "__")}


def _check_parts(owner: str, module, criterion, routed: dict) -> None:
    """Refuse parts, or routed parameters, that cannot train the particles.

    Parameters
    ----------
    owner : str
        The estimator's class name, for the messages.
    module, criterion : class, instance or None
        The parts as the estimator was given them.
    routed : dict
        The routed parameters.
    """
    unknown = set(_routed_for(routed, "iterator_train")) - set(ITERATOR_KEYS)
    if unknown:
        raise ValueError(
            f"Unknown iterator_train parameter(s) {sorted(unknown)}: the "
            f"particle batches accept {list(ITERATOR_KEYS)}."
        )
    from skorch import NeuralNet

    if isinstance(module, NeuralNet):
        raise TypeError(
            "module is a skorch net; build the estimator with "
            f"{owner}.from_skorch(net, ...) to take its module, "
            "optimizer, criterion, learning rate, epochs and callbacks."
        )
    if "criterion__reduction" in routed:
        reduction, given = routed["criterion__reduction"], "criterion__reduction"
    else:
        reduction, given = getattr(criterion, "reduction", "mean"), "its reduction"
    if isinstance(reduction, str) and reduction not in ("mean", "sum"):
        raise ValueError(
            "The criterion must reduce each network's loss to a scalar: "
            f"{given}={reduction!r} gives one loss per row; use "
            "'mean' or 'sum' (a skorch net lends its criterion__* parameters "
            "to from_skorch too)."
        )
    for name, part in (("module", module), ("criterion", criterion)):
        if isinstance(part, nn.Module) and _routed_for(routed, name):
            raise ValueError(
                f"{name}__* parameters need `{name}` to be a class"
                f"{' (or None)' if name == 'module' else ''}; an instance is "
                "used as it is."
            )
