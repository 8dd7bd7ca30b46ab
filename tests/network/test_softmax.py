"""Tests of the (log-)softmax over the classes against a plain float64 reference."""

import numpy as np
import pytest
import torch

from sklearn_swag._network.softmax import (
    FEW_CLASSES,
    log_softmax_classes,
    softmax_classes,
)


def _reference(x: np.ndarray) -> np.ndarray:
    """``x - log(sum(exp(x)))`` over the last axis, in float64 numpy."""
    x = x.astype(np.float64)
    top = x.max(axis=-1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "shape",
    [
        (7, 1),
        (7, 2),
        (5, 9, 10),
        (3, 4, 6, FEW_CLASSES - 1),
        (5, 9, FEW_CLASSES),
        (2, 3, 40),
        (10,),
    ],
)
def test_values_and_gradients_match_the_reference(shape, dtype):
    g = torch.Generator().manual_seed(0)
    x = (4 * torch.randn(shape, generator=g)).to(dtype).requires_grad_()
    out = log_softmax_classes(x)
    assert out.shape == x.shape and out.dtype == dtype
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
    np.testing.assert_allclose(
        out.detach().numpy(), _reference(x.detach().numpy()), **tol
    )
    # The gradient of sum(w * log_softmax(x)) is w - softmax(x) * sum(w).
    w = torch.randn(shape, generator=g).to(dtype)
    (out * w).sum().backward()
    ref = _reference(x.detach().numpy())
    w_np = w.numpy().astype(np.float64)
    expected = w_np - np.exp(ref) * w_np.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(x.grad.numpy(), expected, **tol)


def test_a_strided_input_and_extreme_logits():
    x = torch.tensor([[1e4, 0.0, -1e4], [-1e30, 2.0, 2.0]]).T.contiguous().T
    assert not x.is_contiguous()
    out = log_softmax_classes(x)
    np.testing.assert_allclose(out.numpy(), _reference(x.numpy()), atol=1e-6)
    assert torch.isfinite(out[0, :2]).all() and out[0, 2] == -2e4
    torch.testing.assert_close(out, torch.log_softmax(x, dim=-1))


@pytest.mark.parametrize("shape", [(6, 3), (4, 5, FEW_CLASSES - 1), (3, 40)])
def test_softmax_matches_the_reference(shape):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    out = softmax_classes(x)
    np.testing.assert_allclose(
        out.detach().numpy(), np.exp(_reference(x.detach().numpy()))
    )
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    (out * w).sum().backward()
    p = out.detach().numpy()
    expected = p * (w.numpy() - (p * w.numpy()).sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(x.grad.numpy(), expected)
