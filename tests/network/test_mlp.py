"""Tests of the default network."""

import math

import pytest
import torch
from torch import nn

from sklearn_swag import MLP


@pytest.mark.parametrize("sizes", [(3, (8,), 2), (10, (64, 64), 4), (7, (), 3)])
def test_glorot_init_draws_the_uniform_of_mlpclassifier(sizes):
    n_features, hidden, n_outputs = sizes
    torch.manual_seed(0)
    net = MLP(n_features, n_outputs, hidden_layer_sizes=hidden, init="glorot")
    # The same stream through the formula: U(-b, b), b = sqrt(6 / (fan_in + fan_out)),
    # for the weights and then the bias of every layer in turn.
    torch.manual_seed(0)
    MLP(n_features, n_outputs, hidden_layer_sizes=hidden)  # consumes torch's init
    for layer in net:
        if isinstance(layer, nn.Linear):
            bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
            weight = torch.empty_like(layer.weight).uniform_(-bound, bound)
            bias = torch.empty_like(layer.bias).uniform_(-bound, bound)
            assert torch.equal(layer.weight, weight)
            assert torch.equal(layer.bias, bias)
            assert layer.weight.abs().max() <= bound
