"""Multi-label losses of one example: scores ``(C,)`` against a set of labels, a scalar out."""

from __future__ import annotations

import mlx.core as mx

from transforms._classes import nan_unless
from transforms._precision import HALF

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

    In :math:`O(C \log C)`: the non-label scores sorted once, a binary search of each
    :math:`t_j` among them gives the count :math:`n_j` and the sum :math:`s_j` (a suffix sum)
    of those above it, and :math:`\ell = \frac1C \sum_j s_j - n_j t_j`. A score equal to a
    threshold is not counted (PyTorch's gradient at the kink is 0). A NaN score or threshold
    is skipped, as PyTorch's ``z > 0`` skips it (and ``inf - inf``). The list prefix is a
    cumulative product of ``target >= 0``: pure and ``vmap``-able. An entry outside
    ``[-1, C)`` gives ``nan``.
    """
    dtype = input.dtype
    input = input.astype(mx.float32) if dtype in HALF else input  # s_j - n_j t_j cancels: float32
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
    # The counted scores in ascending order, the others (labels, NaN) first as -inf: counted
    # nowhere, as a score <= t is not counted.
    order = mx.argsort(mx.stop_gradient(mx.where(counted, input, -mx.inf)), axis=-1)
    ascending = mx.take_along_axis(mx.where(counted, input, -mx.inf), order, axis=-1)
    first = _first_above(mx.stop_gradient(ascending), mx.stop_gradient(threshold))  # (..., C), in [0, C]
    # Suffix sums of the sorted counted scores, and a 0 past the end (zeros_like: shapeless).
    total = mx.cumsum(mx.take_along_axis(mx.where(counted, input, 0), order, axis=-1), axis=-1, reverse=True)
    s_j = mx.take_along_axis(mx.concatenate([total, mx.zeros_like(total)], axis=-1), first, axis=-1)
    n_j = (num_classes - first).astype(input.dtype)
    skipped = mx.logical_not(listed) | (n_j == 0) | mx.isnan(threshold)  # n_j = 0: also t = inf
    per_label = mx.where(skipped, 0, s_j - n_j * threshold)
    return nan_unless(valid, mx.sum(per_label, axis=-1) / num_classes).astype(dtype)


def _first_above(ascending: mx.array, t: mx.array) -> mx.array:
    """For each ``t[..., j]``, the first position of ``ascending`` (..., C) holding more than it: a binary search.

    ``ceil(log2(C + 1))`` steps of one gather each, branch-free (a ``where`` on these random
    comparisons would compile to a mispredicted branch); a NaN ``t`` gives 0.
    """
    size = ascending.shape[-1]
    lo = mx.zeros_like(t).astype(mx.int32)
    hi = lo + size
    for _ in range(max(size, 1).bit_length()):
        mid = (lo + hi) // 2
        not_above = mx.take_along_axis(ascending, mx.minimum(mid, size - 1), axis=-1) <= t
        right = not_above.astype(mx.int32) * (lo < hi).astype(mx.int32)  # MLX 0.32 vmaps `not_above & (lo < hi)` wrongly
        lo, hi = lo + right * (mid + 1 - lo), mid + right * (hi - mid)
    return lo


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
