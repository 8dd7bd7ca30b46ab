"""The default network: a fully connected multi-layer perceptron."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}


#: Initialisations of :class:`MLP`.
_INITS = ("default", "glorot")


class MLP(nn.Sequential):
    """Fully connected network used when ``module=None``.

    The estimator fills in ``n_features`` and ``n_outputs`` from the data (the
    targets, or the classes of a classifier); the other arguments are reached
    with routed parameters, for example
    ``MultiSWAGRegressor(module__hidden_layer_sizes=(16, 16),
    module__activation="elu")``.

    Parameters
    ----------
    n_features : int
        Number of input features.
    n_outputs : int
        Number of regression targets.
    hidden_layer_sizes : sequence of int, default=(64, 64)
        Width of each hidden layer; empty for a linear model.
    activation : {"relu", "elu", "tanh", "sigmoid", "gelu", "silu", \
            "softplus", "identity"}, default="relu"
        Nonlinearity after each hidden layer.
    dropout : float, default=0.0
        Dropout probability after each hidden activation.
    init : {"default", "glorot"}, default="default"
        Initial weights. "default": torch's own for ``nn.Linear``
        (uniform on :math:`\\pm 1/\\sqrt{\\text{fan\\_in}}`). "glorot":
        weights and biases uniform on
        :math:`\\pm\\sqrt{6 / (\\text{fan\\_in} + \\text{fan\\_out})}`, as
        scikit-learn's ``MLPClassifier`` initialises; what
        :class:`MultiSWAGClassifier` builds by default (it separated unseen
        classes better on the classification benchmark).

    Examples
    --------
    >>> import torch
    >>> from sklearn_swag import MLP
    >>> net = MLP(3, 2, hidden_layer_sizes=(8,), activation="elu")
    >>> net(torch.zeros(5, 3)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        hidden_layer_sizes: Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        init: str = "default",
    ) -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"module__activation must be one of {sorted(_ACTIVATIONS)}, "
                f"got {activation!r}."
            )
        sizes = [int(n_features), *(int(h) for h in hidden_layer_sizes)]
        if any(s < 1 for s in sizes) or int(n_outputs) < 1:
            raise ValueError(
                "module__hidden_layer_sizes must hold positive integers, got "
                f"{tuple(hidden_layer_sizes)!r}."
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"module__dropout must be in [0, 1), got {dropout!r}.")
        if init not in _INITS:
            raise ValueError(f"module__init must be one of {_INITS}, got {init!r}.")
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(fan_in, fan_out), _ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-1], int(n_outputs)))
        super().__init__(*layers)
        if init == "glorot":
            for layer in self:
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    # The bias takes the weights' bound, as MLPClassifier's
                    # (xavier_uniform_ needs the two fans of a matrix).
                    bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
                    nn.init.uniform_(layer.bias, -bound, bound)


def regressor_mlp_defaults(module, heteroscedastic: bool) -> dict | None:
    """What the regressor's built-in network gets unless ``module__*`` say otherwise.

    GELU, chosen on the UCI benchmark (see the defaults page of the user
    guide), and for heteroscedastic noise separate mean and variance networks.
    """
    if module is not None:
        return None
    return {"activation": "gelu", "mean_variance": heteroscedastic}


class MeanVarianceMLP(nn.Module):
    """Two :class:`MLP` side by side: one for the means, one for the variances.

    The default network of ``MultiSWAGRegressor(noise="heteroscedastic")``.
    Its output has ``n_outputs`` columns: the first half from the mean
    network, the second half (the unconstrained variances) from the variance
    network. With the default criterion the means learn from their squared
    error alone and the variances from the likelihood with the means held
    fixed, so that no weight the means use learns to explain residuals as
    noise ("faithful" heteroscedastic regression, Stirn et al. 2023).

    Parameters
    ----------
    n_features : int
        Number of input features.
    n_outputs : int
        Twice the number of regression targets.
    **kwargs
        The arguments of :class:`MLP` (``hidden_layer_sizes``, ``activation``,
        ``dropout``, ``init``), the same for both networks.

    Examples
    --------
    >>> import torch
    >>> from sklearn_swag._network.mlp import MeanVarianceMLP
    >>> net = MeanVarianceMLP(3, 2, hidden_layer_sizes=(8,))
    >>> net(torch.zeros(5, 3)).shape
    torch.Size([5, 2])
    """

    def __init__(self, n_features: int, n_outputs: int, **kwargs) -> None:
        super().__init__()
        if int(n_outputs) < 2 or int(n_outputs) % 2:
            raise ValueError(
                "A mean-and-variance network needs an even number of outputs "
                f"(a mean and a variance per target), got {n_outputs!r}."
            )
        self.mean = MLP(n_features, int(n_outputs) // 2, **kwargs)
        self.variance = MLP(n_features, int(n_outputs) // 2, **kwargs)

    def forward(self, X):
        return torch.cat([self.mean(X), self.variance(X)], dim=-1)
