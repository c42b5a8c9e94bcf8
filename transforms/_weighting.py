"""Class weights: ``weighted`` appends a per-class weight vector to a loss's arguments."""

from __future__ import annotations

import functools
from typing import Any

import mlx.core as mx

from ._reduce import Loss, Weighted, with_trailing_axes


def is_index(target: Any) -> bool:
    """Whether ``target`` holds class indices (an integer array) rather than probabilities."""
    dtype = target.dtype if isinstance(target, mx.array) else mx.array(target).dtype
    return not mx.issubdtype(dtype, mx.inexact)


def weighted(loss: Loss, *, normalize: bool = True) -> Loss:
    """``f(x, y, *rest)`` -> ``f_w(x, y, *rest, weight)``, with ``weight`` a ``(C,)`` vector shared by the batch.

    For a class index ``y`` the example's loss is scaled by ``weight[y]``; with ``normalize``
    (PyTorch's cross-entropy and NLL) it also counts ``weight[y]`` in a 'mean', so that
    ``reduce(weighted(f), 'mean') == sum(w[y_i] f_i) / sum(w[y_i])``; without it the mean
    still divides by the number of examples (PyTorch's multi-margin loss).

    For a probability target ``p`` the loss must be linear in ``p`` (cross-entropy is): it is
    evaluated at ``weight * p``, i.e. ``-sum_c w_c p_c log q_c``, and the example counts 1.
    """

    @functools.wraps(loss)
    def weighted_loss(*args: Any, **static: Any) -> Any:
        *args, weight = args
        target = args[1]
        if not is_index(target):
            return loss(args[0], target * weight, *args[2:], **static)
        scale = mx.take(weight, target)
        out = loss(*args, **static)
        if isinstance(out, Weighted):
            return Weighted(scale * out.value, scale * out.weight if normalize else out.weight)
        return Weighted(scale * out, mx.broadcast_to(scale, out.shape)) if normalize else scale * out

    return with_trailing_axes(weighted_loss, loss, None)


def rescaled(loss: Loss, *, normalize: bool = False) -> Loss:
    """``f(*args)`` -> ``f_s(*args, scale) = scale * f(*args)``, ``scale`` batched like the rest.

    Without ``normalize`` a 'mean' still counts every element (PyTorch's ``weight`` of BCE and
    Huber); with it the mean is ``sum(scale * f) / sum(scale)`` (``weight`` of L1 and MSE).
    """

    @functools.wraps(loss)
    def rescaled_loss(*args: Any, **static: Any) -> Any:
        *args, scale = args
        out = loss(*args, **static)
        if isinstance(out, Weighted):
            return Weighted(scale * out.value, scale * out.weight if normalize else out.weight)
        if normalize:
            return Weighted(scale * out, mx.broadcast_to(scale, out.shape).astype(out.dtype))
        return scale * out

    return with_trailing_axes(rescaled_loss, loss, 0)
