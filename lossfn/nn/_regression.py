"""Regression loss modules: L1, MSE, smooth L1, Huber."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .. import functional as F
from ._base import _Loss


class L1Loss(_Loss):
    r"""Mean absolute error, :math:`\ell_n = |x_n - y_n|`, reduced by ``reduction``.

    Shape: ``input`` any shape ``(*)``, ``target`` the same (broadcast with a warning);
    output a scalar, or ``(*)`` for 'none'.
    """

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        return F.l1_loss(input, target, reduction=self.reduction)


class MSELoss(_Loss):
    r"""Mean squared error, :math:`\ell_n = (x_n - y_n)^2`, reduced by ``reduction``.

    Shape: ``input`` ``(*)``, ``target`` the same (broadcast with a warning); output a
    scalar, or ``(*)`` for 'none'.
    """

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        return F.mse_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    r"""Smooth L1: :math:`0.5 d^2 / \beta` if :math:`d = |x - y| < \beta`, else :math:`d - 0.5\beta`.

    ``beta >= 0`` (``beta = 0`` is L1). Shapes as :class:`L1Loss`.
    """

    def __init__(self, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def _hyper(self) -> dict[str, Any]:
        return {**super()._hyper(), "beta": self.beta}

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    r"""Huber: :math:`0.5 d^2` if :math:`d = |x - y| < \delta`, else :math:`\delta (d - 0.5\delta)`.

    ``delta > 0``. Shapes as :class:`L1Loss`.
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction=reduction)
        self.delta = delta

    def _hyper(self) -> dict[str, Any]:
        return {**super()._hyper(), "delta": self.delta}

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)
