"""User networks shared by the tests: written as users write them."""

from torch import nn


class BatchNormNet(nn.Module):
    """Linear - BatchNorm1d - ReLU - Linear behind a custom ``forward``."""

    def __init__(self, input_dim=3):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(input_dim, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1)
        )

    def forward(self, x):
        return self.body(x)


class SeedNet(nn.Module):
    """A user module as the seed notebook writes it: forward calls a Sequential."""

    def __init__(self, input_dim=3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_dim, 16), nn.ELU(), nn.Linear(16, 16), nn.ELU(),
            nn.Linear(16, 1),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)
