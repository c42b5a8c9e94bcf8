"""A loss module beyond ``torch.nn``: torchvision's sigmoid focal loss."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

import transforms as T

from .. import _checks as C
from .._classification import sigmoid_focal_loss
from ._base import _Loss


class SigmoidFocalLoss(_Loss):
    r"""``torchvision.ops.sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction)`` as a module:

    .. math:: \ell = \alpha_t (1 - p_t)^\gamma\, \mathrm{bce\_with\_logits}(x, y)

    (:func:`lossfn.sigmoid_focal_loss`, element-wise). As torchvision: ``reduction`` defaults to
    'none' and 'mean' averages every element; a negative ``alpha`` weighs nothing. PyTorch has
    no such class and ``lossfn.functional`` stays PyTorch's API, so this one calls
    ``transforms.reduce`` itself. Shape: ``inputs`` any shape, ``targets`` the same.
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none") -> None:
        super().__init__(reduction=reduction)
        self.alpha, self.gamma = alpha, gamma

    def _hyper(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "gamma": self.gamma, **super()._hyper()}

    def __call__(self, inputs: mx.array, targets: mx.array) -> mx.array:
        inputs, targets = C.input_and_target(inputs, targets)
        C.check_floating(targets, "targets")
        C.check_same_shape(inputs, targets, "inputs", "targets")
        batch = (inputs.reshape(1), targets.reshape(1)) if inputs.ndim == 0 else (inputs, targets)
        out = T.reduce(sigmoid_focal_loss, self.reduction)(*batch, alpha=self.alpha, gamma=self.gamma)
        return out.reshape(()) if inputs.ndim == 0 else out
