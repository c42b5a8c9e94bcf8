"""Ignoring targets: ``ignore_index`` removes examples whose class index equals ``index``."""

from __future__ import annotations

import functools
from typing import Any

import mlx.core as mx

from ._reduce import Loss, Weighted
from ._weighting import is_index


def ignore_index(loss: Loss, index: int | mx.array = -100) -> Loss:
    """``f(x, y, *rest)`` -> the same loss with value 0 and weight 0 wherever ``y == index``.

    An ignored example contributes to neither the numerator nor the denominator of a
    'mean', so a batch with every target ignored has 'mean' ``nan`` and 'sum' ``0``
    (PyTorch's behaviour). The loss is evaluated at class 0 in place of the ignored
    index and masked with ``where``, so its gradient there is exactly 0, never nan.
    Probability targets have no index and pass through unchanged. Put ``ignore_index``
    outside ``smooth_labels``: smoothing spreads a target over every class.
    """

    @functools.wraps(loss)
    def masked_loss(*args: Any, **static: Any) -> Any:
        x, target, *rest = args
        if not is_index(target):
            return loss(*args, **static)
        keep = target != index
        out = loss(x, mx.where(keep, target, 0), *rest, **static)
        value, weight = (out.value, out.weight) if isinstance(out, Weighted) else (out, 1)
        zero = mx.zeros_like(value)
        return Weighted(mx.where(keep, value, zero), mx.where(keep, weight, zero))

    return masked_loss
