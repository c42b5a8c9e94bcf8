"""Multi-label losses of one example: scores ``(C,)`` against a set of labels, a scalar out."""

from __future__ import annotations

import mlx.core as mx

from transforms._classes import nan_unless

from ._classification import bce_with_logits
from ._example import per_example
from ._margin import hinge


@per_example(input="(C,)", target="(C,)")
def multilabel_margin_loss(input: mx.array, target: mx.array) -> mx.array:
    r"""Multi-label hinge loss of one example's scores ``(C,)``, a scalar.

    ``target`` ``(C,)`` lists class indices padded with -1: only the entries before the
    first -1 count (the labels :math:`J`, duplicates counted each time); :math:`S` is the set
    of those labels.

    .. math:: \ell = \frac{1}{C} \sum_{j \in J} \sum_{i \notin S} \max(0, 1 - (x_{y_j} - x_i))

    The list prefix is a cumulative product of ``target >= 0``, so the function is pure and
    ``vmap``-able (no Python branch on data). It costs :math:`O(C^2)`; PyTorch loops over the
    listed labels only, :math:`O(|J| C)`. An entry outside ``[-1, C)`` gives ``nan``.
    """
    num_classes = input.shape[-1]
    valid = mx.all((target >= -1) & (target < num_classes), axis=-1)
    listed = mx.cumprod(target >= 0, axis=-1)  # true up to the first -1, false from there on
    labels = mx.where(listed & (target < num_classes), target, 0)  # a valid index everywhere
    # is_label[..., i]: class i is one of the labels; listed[..., j]: entry j is one of them.
    is_label = mx.any((mx.arange(num_classes) == labels[..., None]) & listed[..., None], axis=-2)
    # violation[..., j, i] = max(0, 1 - (x[y_j] - x_i)); the scores come first in the sum.
    picked = mx.take_along_axis(input, labels, axis=-1)
    violation = hinge(input[..., None, :] + (1 - picked)[..., None])
    counted = listed[..., None] & mx.logical_not(is_label)[..., None, :]
    loss = mx.sum(mx.where(counted, violation, 0), axis=(-2, -1)) / num_classes
    return nan_unless(valid, loss)


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
