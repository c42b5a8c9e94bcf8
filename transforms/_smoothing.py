"""Label smoothing: ``smooth_labels`` mixes the target with the uniform distribution."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ._batching import Loss, layout_of, named_like, spread, transform, with_trailing_axes
from ._classes import is_index, nan_unless, valid_class
from ._precision import in_float32
from ._reduce import Weighted


def smooth_labels(loss: Loss, alpha: float | mx.array, *, linear: bool = False) -> Loss:
    """``f(x, y, *rest)`` -> the loss against the target ``(1 - alpha) y + alpha / C``.

    ``C = x.shape[-1]``. For a probability target that target is passed to ``f``. For a class
    index ``y`` the smoothed loss is the expectation over the smoothed label::

        (1 - alpha) f(x, y) + alpha / C * sum_c f(x, c)

    which equals ``f`` at the smoothed distribution for a loss linear in its target
    (cross-entropy), and defines smoothing for any other class-index loss. The sum is one
    ``vmap`` over classes, so work that does not depend on the class (a log-softmax) is done
    once. If ``f`` returns a :class:`Weighted`, the example keeps the weight of its true
    label: ``smooth_labels(weighted(cross_entropy), a)`` is PyTorch's weighted smoothing.
    With ``linear`` (``f`` takes distributions and is linear in them, as cross-entropy is)
    ``f`` is called once, at the smoothed distribution: no gather over the classes, and work
    shared by both terms is done and differentiated once. A class index outside ``[0, C)``
    gives ``nan``. A loss whose ``layout`` names a smoothing keyword (one that never forms its
    scores, such as ``linear_cross_entropy``) is given ``alpha`` by that keyword instead.
    """
    keyword = layout_of(loss).smoothing
    if keyword is not None:
        return transform(lambda inner, batch_ndim, *a, **s: inner(*a, **{keyword: alpha}, **s), loss)
    if linear:
        return transform(lambda inner, batch_ndim, *a, **s: _smooth_linear(inner, batch_ndim, alpha, *a, **s), loss)

    @named_like(loss)
    @in_float32
    def smoothed_loss(x: Any, target: Any, *rest: Any, **static: Any) -> Any:
        num_classes = x.shape[-1]
        if not is_index(target):
            return loss(x, (1 - alpha) * target + alpha / num_classes, *rest, **static)
        hard = loss(x, target, *rest, **static)
        every = mx.vmap(lambda c: loss(x, c, *rest, **static))(mx.arange(num_classes))

        def mix(h: mx.array, e: mx.array) -> mx.array:
            return (1 - alpha) * h + alpha * mx.mean(e, axis=0)

        if isinstance(hard, Weighted):
            return Weighted(mix(hard.value, every.value), hard.weight)
        return mix(hard, every)

    # No batch rule: the classes are a vmap, and a batch of this loss is a vmap too.
    return with_trailing_axes(smoothed_loss, loss)


def _smooth_linear(inner: Loss, batch_ndim: int, alpha: Any, x: Any, target: Any, *rest: Any, **static: Any) -> Any:
    num_classes = x.shape[-1]
    if not is_index(target):
        return inner(x, (1 - alpha) * target + alpha / num_classes, *rest, **static)
    hard = inner(x, target, *rest, **static)  # lends only its weight: its value is never computed
    smoothed = (1 - alpha) * (mx.arange(num_classes) == target[..., None]) + alpha / num_classes
    out = inner(x, smoothed.astype(x.dtype), *rest, **static)
    value = out.value if isinstance(out, Weighted) else out
    # The smoothed distribution of an invalid index is plausible: mark it.
    value = nan_unless(spread(valid_class(target, num_classes), value, batch_ndim), value)
    return Weighted(value, hard.weight) if isinstance(hard, Weighted) else value
