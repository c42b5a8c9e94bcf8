"""``torch.nn``-style loss classes as ``mlx.nn.Module``s, each calling :mod:`lossfn.functional`.

A class stores its hyper-parameters; calling it is one call into ``lossfn.functional``.
Class weights are *buffers*: saved with the module, never trainable, whatever
``freeze``/``unfreeze`` is later applied to a model that holds the loss.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn

from . import _checks as C
from . import functional as F


class _BufferNames(set):
    """A module's frozen-key set that always contains its buffers, even after ``unfreeze``."""

    def __init__(self, buffers: set[str]) -> None:
        super().__init__()
        self.buffers = buffers

    def __contains__(self, key: object) -> bool:
        return key in self.buffers or super().__contains__(key)


class _Loss(nn.Module):
    """Base of every loss: holds ``reduction`` ('none' | 'mean' | 'sum')."""

    reductions: tuple[str, ...] = ("none", "mean", "sum")

    def __init__(self, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean") -> None:
        super().__init__()
        self._no_grad = _BufferNames(set())
        self.reduction = C.reduction_of(size_average, reduce, reduction, self.reductions)

    def register_buffer(self, name: str, value: Any) -> None:
        """Store ``value`` (an array, or None) as a non-trainable member ``name``."""
        self._no_grad.buffers.add(name)
        setattr(self, name, None if value is None else C.as_array(value, name))

    def _hyper(self) -> dict[str, Any]:
        """The hyper-parameters shown by ``repr``, in the order of the constructor."""
        return {"reduction": self.reduction}

    def _extra_repr(self) -> str:
        parts = [f"{k}={v!r}" if not isinstance(v, mx.array) else f"{k}=array{tuple(v.shape)}" for k, v in self._hyper().items()]
        return ", ".join(parts)


class _WeightedLoss(_Loss):
    """A loss with a per-class (or per-element) ``weight`` buffer."""

    def __init__(
        self,
        weight: mx.array | None = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)

    def _hyper(self) -> dict[str, Any]:
        weight = {} if self.weight is None else {"weight": self.weight}
        return {**weight, **super()._hyper()}


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
