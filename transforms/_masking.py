"""Ignoring targets and masking: ``ignore_index`` drops examples by their class index, ``masked`` by a mask."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ._batching import Loss, layout_of, name_of, replaced, spread, transform
from ._classes import is_index
from ._reduce import Weighted


def ignore_index(loss: Loss, index: int | mx.array = -100) -> Loss:
    """``f(x, y, *rest)`` -> the same loss with value 0 and weight 0 wherever ``y == index``.

    An ignored example contributes to neither the numerator nor the denominator of a
    'mean', so a batch with every target ignored has 'mean' ``nan`` and 'sum' ``0``
    (PyTorch's behaviour). The loss is evaluated at class 0 in place of the ignored
    index and masked with ``where``, so its gradient there is exactly 0, never nan.
    Probability targets have no index and pass through unchanged. Put ``ignore_index``
    outside ``smooth_labels``: smoothing spreads a target over every class. (The target is
    the loss's second argument, or where its ``layout`` says.)
    """
    if isinstance(index, bool) or not isinstance(index, (int, mx.array)) or (
        isinstance(index, mx.array) and not mx.issubdtype(index.dtype, mx.integer)
    ):
        raise TypeError(f"ignore_index: index must be an integer (a class index), got {index!r}")
    position = layout_of(loss).target

    def body(inner: Loss, batch_ndim: int, *args: Any, **static: Any) -> Any:
        target = args[position]
        if not is_index(target):
            return inner(*args, **static)
        keep = target != index
        out = inner(*replaced(args, position, mx.where(keep, target, 0)), **static)
        return _kept(out, keep, batch_ndim)

    return transform(body, loss)


def masked(loss: Loss) -> Loss:
    """``f(*args)`` -> ``f_m(*args, mask)``: the loss where ``mask`` holds, batched like the other arguments.

    ``mask`` is boolean or a float weight, one per example or per element of its loss: a
    'mean' is ``sum(mask * l) / sum(mask)``, mlx-lm's token mean, and equals ``ignore_index``
    on the same examples. A masked example (``False`` or 0) has value 0, weight 0 and a zero
    gradient; its class index may be anything (padding), as the loss sees class 0 there.
    Its other inputs must be finite: a ``nan`` input poisons the gradient of any ``where``.
    """
    position = layout_of(loss).target

    def body(inner: Loss, batch_ndim: int, *args: Any, **static: Any) -> Any:
        if len(args) < 2:
            raise TypeError(f"masked({name_of(loss)}) takes (*arguments, mask) and got {len(args)} positional arguments")
        *args, mask = args
        mask = mask if isinstance(mask, mx.array) else mx.array(mask)
        target = args[position] if position < len(args) else None
        if isinstance(target, mx.array) and is_index(target) and target.shape == mask.shape:
            args = list(replaced(args, position, mx.where(mask != 0, target, 0)))
        out = inner(*args, **static)
        if mask.dtype == mx.bool_:
            return _kept(out, mask, batch_ndim)
        value, weight = (out.value, out.weight) if isinstance(out, Weighted) else (out, 1)
        mask = spread(mask, value, batch_ndim).astype(value.dtype)
        return Weighted(mask * value, mask * weight * mx.ones_like(value))

    return transform(body, loss, 0)


def _kept(out: Any, keep: mx.array, batch_ndim: int) -> Weighted:
    """``out`` (a loss or a ``Weighted``) where ``keep``, else value 0 and weight 0 (``where``: no gradient leaks)."""
    value = out.value if isinstance(out, Weighted) else out
    keep = spread(keep, value, batch_ndim)
    kept = mx.where(keep, value, mx.array(0, value.dtype))
    if not isinstance(out, Weighted) and keep.shape == value.shape:  # a weight of 1: the mask itself, one graph node fewer
        return Weighted(kept, keep.astype(value.dtype))
    weight = out.weight if isinstance(out, Weighted) else 1
    return Weighted(kept, mx.where(keep, weight, mx.zeros_like(value)))
