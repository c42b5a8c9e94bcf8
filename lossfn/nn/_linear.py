"""The loss module that owns its linear layer: ``LinearCrossEntropyLoss`` (PyTorch 2.13)."""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
from mlx import nn

from .. import functional as F
from ..functional._linear import LinearCrossEntropyOptions
from ._base import _WeightedLoss


class LinearCrossEntropyLoss(_WeightedLoss):
    r"""Cross-entropy of the logits of its own linear layer, :math:`z = W h + b`:

    .. math:: \ell_n = -\sum_c w_c\, q_{n,c} \log \mathrm{softmax}(W h_n + b)_c,\quad
              q_n = (1 - \alpha)\, \mathrm{onehot}(y_n) + \alpha / C

    as :class:`CrossEntropyLoss` ('mean' divides by :math:`\sum_n w_{y_n}` over targets that
    are not ``ignore_index``, -100 when None). ``self.linear`` is an ``mlx.nn.Linear`` from
    ``in_features`` to ``num_classes * prod(out_features)`` (trainable; ``weight`` is a buffer).
    With ``options`` (a :class:`LinearCrossEntropyOptions`) the logits are never formed: see
    :func:`lossfn.linear_cross_entropy`. ``device`` is accepted for PyTorch's signature (MLX's
    memory is unified); ``dtype`` casts the layer.

    Shape: ``input`` ``(in_features,)`` or ``(N, in_features)``; ``target`` class indices
    ``()``, ``(N,)``, ``(N, d1, ..., dk)`` for ``out_features = (d1, ..., dk)``, or
    probabilities ``(N, C, d1, ..., dk)``; output a scalar, or the index shape for 'none'.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        out_features: tuple[int, ...] = (),
        bias: bool = False,
        device: Any = None,
        dtype: Any = None,
        reduction: str = "mean",
        weight: mx.array | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        options: LinearCrossEntropyOptions | None = None,
    ) -> None:
        if weight is not None and tuple(weight.shape) != (num_classes,):
            raise ValueError(f"weight must have one entry per class: expected shape {(num_classes,)}, got {tuple(weight.shape)}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"expected label_smoothing to be in range [0, 1], got {label_smoothing}")
        super().__init__(weight, reduction=reduction)
        self.num_classes = num_classes
        self.out_features = tuple(out_features)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.options = options
        self.linear = nn.Linear(in_features, math.prod(self.out_features, start=num_classes), bias=bias)
        if dtype is not None:
            self.linear.set_dtype(dtype)

    def _hyper(self) -> dict[str, Any]:
        return {
            "in_features": self.linear.weight.shape[1], "num_classes": self.num_classes, "out_features": self.out_features,
            "bias": "bias" in self.linear, **super()._hyper(), "ignore_index": self.ignore_index,
            "label_smoothing": self.label_smoothing, "options": self.options,
        }

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        shape = (self.num_classes, *self.out_features)
        return F.linear_cross_entropy(
            input,
            self.linear.weight.reshape(*shape, -1),
            target,
            linear_bias=self.linear.bias.reshape(shape) if "bias" in self.linear else None,
            weight=self.weight,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            options=self.options,
        )
