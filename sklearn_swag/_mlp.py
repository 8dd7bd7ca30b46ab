"""The default network: a fully connected multi-layer perceptron."""

from __future__ import annotations

from collections.abc import Sequence

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


class MLP(nn.Sequential):
    """Fully connected network used when ``MultiSWAGRegressor(module=None)``.

    The estimator fills in ``n_features`` and ``n_outputs`` from the data; the
    other arguments are reached with routed parameters, for example
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
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(fan_in, fan_out), _ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-1], int(n_outputs)))
        super().__init__(*layers)
