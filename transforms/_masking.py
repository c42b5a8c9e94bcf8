"""Ignoring targets: ``ignore_index`` removes examples whose class index equals ``index``."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ._batching import Loss, spread, transform
from ._classes import is_index
from ._reduce import Weighted


def ignore_index(loss: Loss, index: int | mx.array = -100) -> Loss:
    """``f(x, y, *rest)`` -> the same loss with value 0 and weight 0 wherever ``y == index``.

    An ignored example contributes to neither the numerator nor the denominator of a
    'mean', so a batch with every target ignored has 'mean' ``nan`` and 'sum' ``0``
    (PyTorch's behaviour). The loss is evaluated at class 0 in place of the ignored
    index and masked with ``where``, so its gradient there is exactly 0, never nan.
    Probability targets have no index and pass through unchanged. Put ``ignore_index``
    outside ``smooth_labels``: smoothing spreads a target over every class.
    """
    if isinstance(index, bool) or not isinstance(index, (int, mx.array)) or (
        isinstance(index, mx.array) and not mx.issubdtype(index.dtype, mx.integer)
    ):
        raise TypeError(f"ignore_index: index must be an integer (a class index), got {index!r}")

    def body(inner: Loss, batch_ndim: int, x: Any, target: Any, *rest: Any, **static: Any) -> Any:
        if not is_index(target):
            return inner(x, target, *rest, **static)
        keep = target != index
        out = inner(x, mx.where(keep, target, 0), *rest, **static)
        value, weight = (out.value, out.weight) if isinstance(out, Weighted) else (out, 1)
        keep = spread(keep, value, batch_ndim)
        zero = mx.zeros_like(value)
        return Weighted(mx.where(keep, value, zero), mx.where(keep, weight, zero))

    return transform(body, loss)
