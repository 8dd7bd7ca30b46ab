"""A fitted stack's network at arbitrary weights, for prediction.

:class:`StackInference` evaluates flat weight vectors (posterior draws, say) in
blocks sized by the network's widest layer, and recomputes the ``BatchNorm``
statistics of each weight vector as SWAG's ``bn_update`` does, without
changing the stack it was made from.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

from .evaluators import _as_particle_output

if TYPE_CHECKING:
    from .stack import ParticleStack

#: Floats of the widest layer for a block of weight vectors at inference on
#: a CPU (2 MiB in float32): small enough to stay in a core's cache.
_BLOCK_FLOATS = 2**19

#: Floats of the widest layer for a block of weight vectors and a batch of rows
#: while normalisation statistics are recomputed on an accelerator (64 MiB in
#: float32); on a CPU, ``_BLOCK_FLOATS``.
_REFRESH_FLOATS = 2**24


class StackInference:
    """A fitted stack's network at arbitrary weights, for prediction.

    Built by :meth:`ParticleStack.inference`: it copies the buffers to the
    device and, for the evaluators that call a module, the module too, so
    the stack itself is never moved, switched to eval mode or otherwise
    changed, and concurrent predictions cannot disturb one another.

    Parameters
    ----------
    stack : ParticleStack
    device : torch.device
    """

    def __init__(self, stack: ParticleStack, device: torch.device) -> None:
        self.device = device
        self.unflatten = stack.unflatten
        self._refresh_values = stack._refresh_values
        self._buffers = [b.detach().to(device) for b in stack.stacked_buffers()]
        self._evaluator = stack._evaluator.copy_to(device)
        self._template = stack._skeleton[0]
        self._widest: int | None = None

    def buffers_of(self, owners: torch.Tensor) -> list[torch.Tensor]:
        """The buffers of the particles ``owners``, one row per weight vector."""
        owners = torch.as_tensor(owners, device=self.device)
        return [b[owners] for b in self._buffers]

    def refreshed_buffers(
        self,
        theta: torch.Tensor,
        owners: torch.Tensor,
        rows: torch.Tensor,
        batch_size: int | None,
    ) -> list[torch.Tensor]:
        """Buffers with normalisation statistics recomputed for each weight vector.

        As SWAG's ``bn_update``: the statistics are reset, then each batch of
        ``rows`` is passed through the network in training mode (without
        dropout), and every ``BatchNorm`` layer keeps the cumulative average
        of the batch means and variances. A last batch of one row joins the
        batch before it. With ``batch_size=None`` the rows go in one batch
        where the widest layer fits the budget (a core's cache on a CPU), so
        the statistics are the exact means and unbiased variances over
        ``rows``, as a full-batch ``torch.optim.swa_utils.update_bn`` gives
        them; beyond it, in the fewest equal batches that fit, whose average
        differs from them only by the spread between a few large batches.

        Parameters
        ----------
        theta : torch.Tensor of shape (M, n_params)
        owners : torch.Tensor of shape (M,)
            Whose other buffers (those not recomputed) to use.
        rows : torch.Tensor of shape (n_rows, n_features)
            Training rows, on the device.
        batch_size : int or None
            Rows per batch; None passes ``rows`` in one batch, or in the
            fewest equal batches that fit the budget.

        Returns
        -------
        list of torch.Tensor
            Every buffer, with a leading axis of length ``M``.
        """
        buffers = self.buffers_of(owners)
        if not self._refresh_values:
            return buffers
        # On a CPU, batches and blocks of weight vectors that fit a core's
        # cache: a batch of 20,000 rows streams every layer through main
        # memory and makes the refresh several times slower.
        floats = _BLOCK_FLOATS if rows.device.type == "cpu" else _REFRESH_FLOATS
        if batch_size is None:
            batch_size = self._equal_batches(rows, floats)
        batch = min(batch_size, len(rows))
        block = self._block(batch, rows, floats)
        for i, value in self._refresh_values.items():
            buffers[i] = torch.full_like(buffers[i], value)
        batches = batch_bounds(len(rows), batch)
        with torch.no_grad():
            for start in range(0, len(theta), block):
                params = self.unflatten(theta[start : start + block])
                views = [b[start : start + block] for b in buffers]
                for low, high in batches:
                    self._evaluator(params, views, rows[low:high], mode="refresh")
        return buffers

    def _equal_batches(self, rows: torch.Tensor, floats: int) -> int:
        """Rows per batch of the fewest equal batches of ``rows`` whose widest
        layer holds at most ``floats`` floats (all rows in one where they fit).

        Batches of one size (to a row) make the average of the batch means
        the mean over all rows; large ones leave little spread between them.
        """
        most = max(2, floats // max(1, self.widest(rows)))
        n_batches = -(-len(rows) // most)
        return -(-len(rows) // n_batches)

    def __call__(
        self, theta: torch.Tensor, X: torch.Tensor, buffers: list[torch.Tensor]
    ) -> torch.Tensor:
        """The network in eval mode at every weight vector and row.

        Parameters
        ----------
        theta : torch.Tensor of shape (M, n_params)
        X : torch.Tensor of shape (N, n_features)
        buffers : list of torch.Tensor
            One row per weight vector (:meth:`buffers_of`,
            :meth:`refreshed_buffers`).

        Returns
        -------
        torch.Tensor of shape (M, N, n_outputs)
        """
        n_weights, n_rows = theta.shape[0], X.shape[0]
        theta = theta.to(X.dtype)
        block = self._block(n_rows, X) if X.device.type == "cpu" else n_weights
        with torch.no_grad():
            if block >= n_weights:
                out = self._evaluator(self.unflatten(theta), buffers, X, mode="eval")
                return _as_particle_output(out, n_rows)
            # On a CPU, thousands of weight vectors at once stream every layer
            # through main memory; blocks that fit a core's cache are faster.
            pieces = [
                _as_particle_output(
                    self._evaluator(
                        self.unflatten(theta[start : start + block]),
                        [b[start : start + block] for b in buffers],
                        X,
                        mode="eval",
                    ),
                    n_rows,
                )
                for start in range(0, n_weights, block)
            ]
        return torch.cat(pieces)

    def widest(self, X: torch.Tensor) -> int:
        """Most floats any layer produces for one row of ``X`` (a guess)."""
        if self._widest is None:
            self._widest = _widest_layer(self._template, X[:1].cpu())
        return self._widest

    def _block(self, n_rows: int, X: torch.Tensor, floats: int = _BLOCK_FLOATS) -> int:
        """Weight vectors per block whose widest layer, for ``n_rows`` rows of
        ``X``, holds at most ``floats`` floats."""
        return max(1, floats // max(1, n_rows * self.widest(X)))


def _widest_layer(module: nn.Module, row: torch.Tensor) -> int:
    """Most floats any layer of ``module`` produces for one row (a guess)."""
    widest = [row.numel()]

    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            widest.append(output.numel())

    try:
        probe = copy.deepcopy(module).eval()
        handles = [m.register_forward_hook(hook) for m in probe.modules()]
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                probe(row)
        finally:
            for handle in handles:
                handle.remove()
    except Exception:  # noqa: BLE001 - a guess is enough for a block size
        widest += [p.shape[0] for p in module.parameters() if p.ndim]
    return max(widest)


def batch_bounds(n_rows: int, batch_size: int | None) -> list[tuple[int, int]]:
    """Batches of ``batch_size`` rows in order; a last batch of one row is merged.

    A batch of one row has no variance, which ``BatchNorm`` cannot normalise
    by: it joins the batch before it.
    """
    size = n_rows if batch_size is None else max(1, int(batch_size))
    bounds = [(low, min(n_rows, low + size)) for low in range(0, n_rows, size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n_rows)]
    return bounds
