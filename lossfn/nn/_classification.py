"""Classification loss modules: cross-entropy, NLL, BCE, BCE with logits."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .. import functional as F
from ._base import _WeightedLoss


class CrossEntropyLoss(_WeightedLoss):
    r"""Cross-entropy of logits with a class index or class probabilities.

    .. math:: \ell_n = -\sum_c w_c\, q_{n,c} \log \mathrm{softmax}(x_n)_c,\quad
              q_n = (1 - \alpha)\, \mathrm{onehot}(y_n) + \alpha / C

    ('mean' divides by :math:`\sum_n w_{y_n}` over targets that are not ``ignore_index``;
    for probability targets it divides by the number of positions.)

    Shape: ``input`` ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``; ``target`` class
    indices ``()``, ``(N,)``, ``(N, d1, ..., dk)`` or probabilities shaped like ``input``;
    output a scalar, or the index shape for 'none'.
    """

    def __init__(
        self,
        weight: mx.array | None = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def _hyper(self) -> dict[str, Any]:
        return {**super()._hyper(), "ignore_index": self.ignore_index, "label_smoothing": self.label_smoothing}

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        return F.cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class NLLLoss(_WeightedLoss):
    r"""Negative log-likelihood of log-probabilities: :math:`\ell_n = -w_{y_n} x_{n, y_n}`.

    'mean' divides by :math:`\sum_n w_{y_n}` over targets that are not ``ignore_index``.
    Shapes as :class:`CrossEntropyLoss` with index targets.
    """

    def __init__(
        self,
        weight: mx.array | None = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def _hyper(self) -> dict[str, Any]:
        return {**super()._hyper(), "ignore_index": self.ignore_index}

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class BCELoss(_WeightedLoss):
    r"""Binary cross-entropy of probabilities, logs clamped at -100:

    .. math:: \ell_n = -w_n [y_n \log x_n + (1 - y_n) \log(1 - x_n)]

    ``weight`` broadcasts to the input and only rescales ('mean' divides by the element
    count). Shape: ``input`` ``(*)`` in [0, 1], ``target`` the same shape.
    """

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_WeightedLoss):
    r"""Binary cross-entropy of logits, stable for any magnitude:

    .. math:: \ell_n = -w_n [p\, y_n \log\sigma(x_n) + (1 - y_n) \log(1 - \sigma(x_n))]

    ``pos_weight`` (broadcast over the last axis, e.g. ``(C,)``) weighs positives;
    ``weight`` rescales. Shape: ``input`` ``(*)``, ``target`` the same shape.
    """

    def __init__(
        self,
        weight: mx.array | None = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
        pos_weight: mx.array | None = None,
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.register_buffer("pos_weight", pos_weight)

    def _hyper(self) -> dict[str, Any]:
        hyper = super()._hyper()
        if self.pos_weight is not None:
            hyper["pos_weight"] = self.pos_weight
        return hyper

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        return F.binary_cross_entropy_with_logits(
            input, target, weight=self.weight, reduction=self.reduction, pos_weight=self.pos_weight
        )
