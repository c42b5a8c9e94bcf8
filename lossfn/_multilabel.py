"""Multi-label losses of one example: scores ``(C,)`` against a set of labels, a scalar out."""

from __future__ import annotations

import mlx.core as mx

from transforms._classes import nan_unless

from ._classification import bce_with_logits
from ._example import per_example


@per_example(input="(C,)", target="(C,)")
def multilabel_margin_loss(input: mx.array, target: mx.array) -> mx.array:
    r"""Multi-label hinge loss of one example's scores ``(C,)``, a scalar.

    ``target`` ``(C,)`` lists class indices padded with -1: only the entries before the
    first -1 count (the labels :math:`J`, duplicates counted each time); :math:`S` is the set
    of those labels.

    .. math:: \ell = \frac{1}{C} \sum_{j \in J} \sum_{i \notin S} \max(0, x_i - t_j),
              \quad t_j = x_{y_j} - 1

    In :math:`O(C \log C)`: one stable sort of the scores and the thresholds :math:`t_j`
    together gives, for each :math:`t_j`, the count :math:`n_j` and the sum :math:`s_j` of the
    non-label scores above it, and :math:`\ell = \frac1C \sum_j s_j - n_j t_j`. A score equal
    to a threshold sorts before it and is not counted (PyTorch's gradient at the kink is 0).
    A NaN score or threshold is skipped, as PyTorch's ``z > 0`` skips it (and ``inf - inf``). The list prefix is a
    cumulative product of ``target >= 0``: pure and ``vmap``-able. An entry outside
    ``[-1, C)`` gives ``nan``.
    """
    num_classes = input.shape[-1]
    valid = mx.all((target >= -1) & (target < num_classes), axis=-1)
    listed = mx.cumprod(target >= 0, axis=-1).astype(mx.bool_)  # true up to the first -1
    labels = mx.where(listed & (target < num_classes), target, 0)  # a valid index everywhere
    # is_label[..., i]: class i is one of the labels (entries not listed write to slot C, spare).
    # Gathers along an axis, not slices or takes, shaped like the inputs: right under a shapeless compile.
    falses = mx.zeros_like(target).astype(mx.bool_)
    slots = mx.put_along_axis(mx.concatenate([falses, falses], axis=-1), mx.where(listed, labels, num_classes), mx.array(True), axis=-1)
    classes = mx.zeros_like(target) + mx.arange(num_classes)  # (..., C), shaped like target
    is_label = mx.take_along_axis(slots, classes, axis=-1)
    threshold = mx.take_along_axis(input, labels, axis=-1) - 1
    counted = mx.logical_not(is_label | mx.isnan(input))
    keys = mx.concatenate([input, threshold], axis=-1)  # scores first: a tie sorts the score first
    order = mx.argsort(mx.stop_gradient(keys), axis=-1)  # stable on the CPU
    positions = mx.zeros_like(order) + mx.arange(2 * num_classes, dtype=order.dtype)
    inverse = mx.put_along_axis(mx.zeros_like(order), order, positions, axis=-1)  # a scatter: cheaper than a second sort
    rank = mx.take_along_axis(inverse, classes + num_classes, axis=-1)  # where each threshold went
    weights = mx.concatenate([counted, mx.zeros_like(counted)], axis=-1)
    values = mx.where(weights, keys, 0)
    # Suffix sums in sorted order: at a threshold's rank, the counted scores above it.
    above = mx.cumsum(mx.take_along_axis(weights.astype(input.dtype), order, axis=-1), axis=-1, reverse=True)
    total = mx.cumsum(mx.take_along_axis(values, order, axis=-1), axis=-1, reverse=True)
    n_j, s_j = mx.take_along_axis(above, rank, axis=-1), mx.take_along_axis(total, rank, axis=-1)
    per_label = mx.where(listed & (n_j > 0), s_j - n_j * threshold, 0)  # n_j = 0: also an inf or NaN threshold
    return nan_unless(valid, mx.sum(per_label, axis=-1) / num_classes)


@per_example(input="(C,)", target="(C,)", weight="(C,)")
def multilabel_soft_margin_loss(
    input: mx.array, target: mx.array, weight: mx.array | None = None
) -> mx.array:
    r"""One-versus-all logistic loss of one example's logits ``(C,)`` and labels ``(C,)`` in [0, 1], a scalar.

    .. math:: \ell = -\frac{1}{C} \sum_c w_c\, [y_c \log\sigma(x_c) + (1 - y_c) \log\sigma(-x_c)]
              = \frac{1}{C} \sum_c w_c\, \mathrm{bce\_with\_logits}(x_c, y_c)

    ``weight`` ``(C,)`` weighs each class (default 1). Exact for logits of any magnitude.
    """
    loss = bce_with_logits(input, target)
    if weight is not None:
        loss = weight * loss
    return mx.mean(loss, axis=-1)
