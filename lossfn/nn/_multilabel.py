"""Multi-label loss modules: multi-label hinge (margin) and soft margin."""

from __future__ import annotations

import mlx.core as mx

from .. import functional as F
from ._base import _Loss, _WeightedLoss


class MultiLabelMarginLoss(_Loss):
    r"""Multi-label hinge loss of scores ``x`` ``(C,)`` and a list of labels padded with -1:

    .. math:: \ell_n = \frac{1}{C} \sum_{j \in J_n} \sum_{i \notin S_n} \max(0, 1 - (x_{n, y_{n,j}} - x_{n, i}))

    :math:`J_n` are the positions of ``target[n]`` before its first -1 (a label listed twice
    counts twice), :math:`S_n` the set of labels they hold. Every entry, also after the first
    -1, must be in ``[-1, C)``.

    Shape: ``input`` ``(C,)`` or ``(N, C)``; ``target`` integer, the same shape; output a
    scalar, or ``(N,)`` (``()`` unbatched) for 'none'.
    """

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        return F.multilabel_margin_loss(input, target, reduction=self.reduction)


class MultiLabelSoftMarginLoss(_WeightedLoss):
    r"""One-versus-all logistic loss over classes, one value per example:

    .. math:: \ell_n = -\frac{1}{C} \sum_c w_c\, [y_{n,c} \log\sigma(x_{n,c}) + (1 - y_{n,c}) \log\sigma(-x_{n,c})]

    ``weight`` ``(C,)`` (or broadcastable to the input) weighs each class. Exact for logits
    of any magnitude. Shape: ``input`` ``(N, C)``, ``(C,)`` or ``(..., C)``; ``target`` the
    same; output a scalar, or the input's shape without the class axis for 'none'.
    """

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        return F.multilabel_soft_margin_loss(input, target, weight=self.weight, reduction=self.reduction)
