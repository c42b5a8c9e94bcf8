"""Class weights and element-wise scales: ``weighted`` and ``rescaled`` append a weight to a loss's arguments."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ._batching import Loss, layout_of, name_of, num_classes, replaced, spread, transform
from ._classes import is_index, take_shared
from ._reduce import Weighted


def weighted(loss: Loss, *, normalize: bool = True) -> Loss:
    """``f(x, y, *rest)`` -> ``f_w(x, y, *rest, weight)``, with ``weight`` a ``(C,)`` vector shared by the batch.

    ``C`` is the last axis of the scores ``x``. For a class index ``y`` the example's loss is
    scaled by ``weight[y]``; with ``normalize`` (PyTorch's cross-entropy and NLL) it also
    counts ``weight[y]`` in a 'mean', so that ``reduce(weighted(f), 'mean') == sum(w[y_i]
    f_i) / sum(w[y_i])``; without it the mean still divides by the number of examples
    (PyTorch's multi-margin loss).

    For a probability target ``p`` the loss must be linear in ``p`` (cross-entropy is): it is
    evaluated at ``weight * p``, i.e. ``-sum_c w_c p_c log q_c``, and the example counts 1.
    (The target is the loss's second argument, or where its ``layout`` says. A loss whose
    layout names a ``weight`` keyword weights in its own pass, with the same semantics.)
    """
    layout = layout_of(loss)
    position = layout.target

    def body(inner: Loss, batch_ndim: int, *args: Any, **static: Any) -> Any:
        if len(args) < position + 2:
            raise TypeError(
                f"weighted({name_of(loss)}) takes (input, target, ..., weight) and got {len(args)} "
                "positional arguments: the class weight, shape (C,), is missing; pass it last"
            )
        *args, weight = args
        target = args[position]
        _check_class_weight(weight, args, loss)
        if layout.weight is not None and normalize:
            return inner(*args, **{layout.weight: weight}, **static)
        if not is_index(target):
            return inner(*replaced(args, position, target * weight), **static)
        out = inner(*args, **static)
        value = out.value if isinstance(out, Weighted) else out
        scale = spread(take_shared(weight, target), value, batch_ndim)
        if isinstance(out, Weighted):
            return Weighted(scale * out.value, scale * out.weight if normalize else out.weight)
        return Weighted(scale * value, scale * mx.ones_like(value)) if normalize else scale * value

    return transform(body, loss, None)


def _check_class_weight(weight: Any, args: list[Any], loss: Loss) -> None:
    """A ValueError unless ``weight`` has one entry per class (by default, the scores' last axis)."""
    x = args[0]
    if not isinstance(weight, mx.array) or not isinstance(x, mx.array) or not x.ndim:
        return
    classes = num_classes(loss, args)
    if weight.shape != (classes,):
        raise ValueError(
            f"weighted({name_of(loss)}): weight must have one entry per class, shape ({classes},) "
            f"for scores of shape {tuple(x.shape)} (the classes are the last axis); got shape {tuple(weight.shape)}"
        )


def rescaled(loss: Loss, *, normalize: bool = False) -> Loss:
    """``f(*args)`` -> ``f_s(*args, scale) = scale * f(*args)``, ``scale`` batched like the rest.

    ``scale`` is one number per example or one per element of the example's loss (it
    broadcasts against the loss). Without ``normalize`` a 'mean' still counts every element
    (PyTorch's ``weight`` of BCE and Huber); with it the mean is ``sum(scale * f) /
    sum(scale)`` (``weight`` of L1 and MSE).
    """

    def body(inner: Loss, batch_ndim: int, *args: Any, **static: Any) -> Any:
        if len(args) < 2:
            raise TypeError(
                f"rescaled({name_of(loss)}) takes (*arguments, scale) and got {len(args)} positional "
                "arguments: the scale is missing; pass it last"
            )
        *args, scale = args
        out = inner(*args, **static)
        value = out.value if isinstance(out, Weighted) else out
        scale = spread(scale, value, batch_ndim)
        if isinstance(out, Weighted):
            return Weighted(scale * out.value, scale * out.weight if normalize else out.weight)
        if normalize:
            return Weighted(scale * value, (scale * mx.ones_like(value)).astype(value.dtype))
        return scale * value

    return transform(body, loss, 0)
