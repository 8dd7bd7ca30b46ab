"""The lowering rules, one module per op family; importing this registers them."""

from . import (  # noqa: F401
    elementwise,
    layers,
    linear,
    normalization,
    reductions,
    shapes,
)
