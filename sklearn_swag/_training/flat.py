"""The optimizer's view of a particle stack: one flat parameter.

A stack holds every parameter of its networks with a leading particle axis:
one tensor per parameter of one network. An optimizer steps each tensor with
a few Python calls of its own, which on a tiny network cost as much as the
arithmetic. While a group trains, :class:`FlatParameters` lays the stack's
parameters out as the columns of one ``(n_particles, n_params)`` tensor, in
the order of ``named_parameters()`` of one network, and their gradients as
the columns of another: the stack's parameters become views of its columns,
the optimizer steps the one tensor, and its rows are the particles' flat
weight vectors that SWAG collects, without a copy.

This is the same computation: every optimizer the group accepts updates each
weight from its own gradients (see ``check_optimizer_decouples``), so where
the weights sit does not change an update.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

#: Row width multiple of the flat tensor: float32 lanes of the widest vector
#: (AVX-512), see :class:`FlatParameters`.
_ROW_MULTIPLE = 16

#: torch's switch for its check that gradients are laid out like dense
#: parameters (recent torch versions only). The stack's parameters become
#: views of columns, so not dense: the check would warn once, about nothing
#: wrong. Without the switch the parameters stay as they are.
_LAYOUT_SWITCH = getattr(torch._C, "_set_grad_layout_enforcement_enabled", None)


class FlatParameters:
    """The parameters of a stack as columns of one tensor, and their gradients.

    Parameters
    ----------
    params : list of torch.nn.Parameter
        The stack's parameters, each of shape ``(n_particles, ...)``, all of
        one floating dtype and device, all trained.

    Attributes
    ----------
    param : torch.nn.Parameter of shape (n_particles, width)
        What the optimizer steps; its ``grad`` holds the gradients. Each row
        is a particle's weights, then zeros up to ``width``, the next
        multiple of 16: a fused optimizer works through its tensor in vector
        lanes and rounds the elements left over after the last full vector
        differently, so rows of whole vectors keep every particle's update
        independent of how many particles share the tensor.
    n_params : int
        Weights per particle.
    """

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = list(params)
        first = self.params[0]
        self._numels = [p[0].numel() for p in self.params]
        self.n_params = sum(self._numels)
        width = -(-self.n_params // _ROW_MULTIPLE) * _ROW_MULTIPLE
        self.param = nn.Parameter(first.new_zeros(first.shape[0], width))
        self._grads: list[torch.Tensor] | None = None
        self._layout = None

    @staticmethod
    def applies(params: list[nn.Parameter]) -> bool:
        """Whether ``params`` can share one flat tensor on this torch."""
        if _LAYOUT_SWITCH is None or not params:
            return False
        first = params[0]
        return all(
            p.requires_grad
            and p.dtype == first.dtype
            and p.device == first.device
            and p.dtype.is_floating_point
            and p.ndim > 0
            and p.shape[0] == first.shape[0]
            for p in params
        )

    @property
    def attached(self) -> bool:
        """Whether the parameters are views of :attr:`param` now."""
        return self._grads is not None

    def weights(self) -> torch.Tensor:
        """The particles' flat weight vectors, ``(n_particles, n_params)``: a
        view of :attr:`param` (detached), without its padding."""
        return self.param.detach()[:, : self.n_params]

    def _columns(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of ``flat``'s columns, shaped as the parameters."""
        columns = flat[:, : self.n_params].split(self._numels, dim=1)
        return [
            column.view(p.shape) for column, p in zip(columns, self.params, strict=True)
        ]

    def attach(self) -> None:
        """Make the parameters views of :attr:`param`, from their current values."""
        if self._grads is not None:
            return
        self.param.grad = torch.zeros_like(self.param)
        self._grads = self._columns(self.param.grad)
        for p, data, grad in zip(
            self.params, self._columns(self.param.data), self._grads, strict=True
        ):
            data.copy_(p.detach())  # parameter by parameter: no copy of them all
            p.data = data
            p.grad = grad
        self._layout = bool(torch._C._is_grad_layout_enforcement_enabled())
        _LAYOUT_SWITCH(False)

    def release(self) -> None:
        """Give every parameter its own memory again; gradients to None (the
        flat gradient too: it is made anew on :meth:`attach`)."""
        if self._grads is None:
            return
        _LAYOUT_SWITCH(self._layout)
        with torch.no_grad():
            for p in self.params:
                p.data = p.data.clone(memory_format=torch.contiguous_format)
                p.grad = None
        self.param.grad = None
        self._grads = None

    def zero_grad(self) -> None:
        """Zero the gradients, where the backward pass adds them in place.

        A gradient someone set to None or replaced since (a user's callback)
        is put back as a view first, so the optimizer never misses one.
        """
        for p, grad in zip(self.params, self._grads, strict=True):
            if p.grad is not grad:
                p.grad = grad
        self.param.grad.zero_()


@contextlib.contextmanager
def attached(flat: FlatParameters | None):
    """``flat`` attached for the duration (nothing where it is None)."""
    if flat is None:
        yield
        return
    flat.attach()
    try:
        yield
    finally:
        flat.release()
