"""Margin loss modules: multi-class hinge (multi-margin) and soft margin."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .. import _checks as C
from .. import functional as F
from ._base import _Loss, _WeightedLoss


class MultiMarginLoss(_WeightedLoss):
    r"""Multi-class hinge loss of scores ``x`` and a class index ``y``:

    .. math:: \ell_n = \frac{w_{y_n}}{C} \sum_{i \ne y_n} \max(0, \text{margin} - x_{n, y_n} + x_{n, i})^p

    ``p`` is 1 or 2; ``margin`` may be negative. ``weight`` ``(C,)`` rescales each example by
    the weight of its class; 'mean' still divides by the number of examples ``N`` (not by
    :math:`\sum_n w_{y_n}` as cross-entropy does).

    Shape: ``input`` ``(N, C)`` or ``(C,)``; ``target`` ``(N,)`` or ``()`` class indices in
    ``[0, C)``; output a scalar, or the target's shape for 'none'.
    """

    def __init__(
        self,
        p: int = 1,
        margin: float = 1.0,
        weight: mx.array | None = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        if p != 1 and p != 2:
            raise ValueError(f"only p == 1 and p == 2 supported, got p={p!r}")
        if self.weight is not None and self.weight.ndim != 1:
            raise ValueError(
                f"MultiMarginLoss: expected weight to be None or 1-D, got shape {C.shape_str(self.weight)}"
            )
        self.p = p
        self.margin = margin

    def _hyper(self) -> dict[str, Any]:
        return {"p": self.p, "margin": self.margin, **super()._hyper()}

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        return F.multi_margin_loss(
            input, target, p=self.p, margin=self.margin, weight=self.weight, reduction=self.reduction
        )


class SoftMarginLoss(_Loss):
    r"""Two-class logistic loss for targets :math:`y = \pm 1`: :math:`\ell_n = \log(1 + e^{-y_n x_n})`.

    Exact for any magnitude of :math:`y x` (PyTorch overflows to ``inf`` for
    :math:`-y x > 88` in float32). Shape: ``input`` ``(*)``, ``target`` broadcastable to it;
    output a scalar, or ``(*)`` for 'none'.
    """

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        return F.soft_margin_loss(input, target, reduction=self.reduction)
