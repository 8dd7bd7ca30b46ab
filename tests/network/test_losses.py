"""Tests of the particle loss: every copy's own loss, summed."""

import pytest
import torch
from particle_stacks import N_OUTPUTS, N_PARTICLES
from torch import nn

from sklearn_swag._network.losses import ParticleLoss


def _predictions(seed=0):
    g = torch.Generator().manual_seed(seed)
    y_pred = torch.randn(N_PARTICLES, 6, N_OUTPUTS, generator=g)
    return y_pred, torch.randn(6, N_OUTPUTS, generator=g)


@pytest.mark.parametrize("criterion", [nn.MSELoss(), nn.L1Loss(), nn.HuberLoss()])
def test_per_particle_losses(criterion):
    y_pred, y_true = _predictions()
    loss = ParticleLoss(criterion)
    expected = torch.stack([criterion(p, y_true) for p in y_pred])
    torch.testing.assert_close(loss.per_particle(y_pred, y_true), expected)
    # Each particle's own targets, as mini-batches give them.
    y_own = torch.randn(N_PARTICLES, 6, N_OUTPUTS, generator=torch.Generator())
    expected_own = torch.stack(
        [criterion(p, t) for p, t in zip(y_pred, y_own, strict=True)]
    )
    torch.testing.assert_close(loss.per_particle(y_pred, y_own), expected_own)
    total = loss(y_pred, y_own)
    torch.testing.assert_close(total, expected_own.sum())
    torch.testing.assert_close(loss.last_losses, expected_own)
    assert not loss.nonfinite.any()


def test_nonfinite_flags_only_the_particle_with_a_nan():
    y_pred, y_true = _predictions()
    bad = y_pred.clone()
    bad[1, 3, 0] = float("nan")
    loss = ParticleLoss(nn.MSELoss())
    total = loss(bad, y_true)
    assert torch.isnan(total)
    assert loss.nonfinite.tolist() == [False, True, False, False]
    assert torch.isnan(loss.last_losses[1])
    assert torch.isfinite(loss.last_losses[[0, 2, 3]]).all()
    # Once flagged, a particle stays flagged after a finite batch.
    loss(y_pred, y_true)
    assert loss.nonfinite.tolist() == [False, True, False, False]
    assert torch.isfinite(loss.last_losses).all()
    assert loss.any_nonfinite()
    # Other particles start clean.
    loss.new_particles()
    assert loss.nonfinite is None and loss.last_losses is None
    assert not loss.any_nonfinite()
    loss(y_pred, y_true)
    assert not loss.any_nonfinite()


def test_nonfinite_tells_infinite_from_huge_losses():
    """An infinite loss is flagged; the largest finite ones, however many, are
    not (their running sum is kept in float64)."""
    y_pred, y_true = _predictions()
    loss = ParticleLoss(nn.MSELoss(reduction="sum"))
    huge = torch.full_like(y_pred, 1e18)  # squared errors near float32's max
    assert torch.isfinite(loss.per_particle(huge, y_true)).all()
    for _ in range(50):
        loss(huge, y_true)
    assert not loss.any_nonfinite()
    assert not loss.nonfinite.any()
    infinite = huge.clone()
    infinite[2] = 1e30  # its squared errors overflow float32
    loss(infinite, y_true)
    assert loss.nonfinite.tolist() == [False, False, True, False]
    assert loss.any_nonfinite()


class _ItemMSE(nn.Module):
    """A criterion vmap cannot batch: it calls ``.item()``."""

    def forward(self, y_pred, y_true):
        scale = y_true.abs().max().item()
        return ((y_pred - y_true) ** 2).mean() / scale


def test_loss_falls_back_to_a_loop():
    y_pred, y_true = _predictions()
    criterion = _ItemMSE()
    with pytest.raises(RuntimeError):  # the premise: vmap rejects it
        torch.func.vmap(criterion)(y_pred, y_true.expand(N_PARTICLES, -1, -1))
    loss = ParticleLoss(criterion)
    y_pred.requires_grad_(True)
    expected = torch.stack([criterion(p, y_true) for p in y_pred])
    total = loss(y_pred, y_true)
    torch.testing.assert_close(loss.last_losses, expected.detach())
    torch.testing.assert_close(total, expected.sum())
    # Gradients reach each particle's own prediction only through its own loss.
    total.backward()
    scale = y_true.abs().max()
    expected_grad = 2 * (y_pred - y_true) / (y_true.numel() * scale)
    torch.testing.assert_close(y_pred.grad, expected_grad.detach())
    # Later calls keep working.
    torch.testing.assert_close(loss.per_particle(y_pred, y_true), expected)


def test_squared_errors_are_mse_losses_bit_for_bit():
    from torch.nn import functional as F

    from sklearn_swag._network.losses import _squared_error

    y_pred, y_true = _predictions()
    y_true = y_true.expand_as(y_pred)
    assert torch.equal(
        _squared_error(y_pred, y_true), F.mse_loss(y_pred, y_true, reduction="none")
    )
