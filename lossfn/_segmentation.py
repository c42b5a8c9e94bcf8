"""Segmentation losses of one image: a whole mask is one example (Dice, Tversky)."""

from __future__ import annotations

import mlx.core as mx

from transforms._sums import accurate_sum

from ._example import per_example

Scalar = float | mx.array


def _spatial_sums(x: mx.array) -> mx.array:
    """Sums over every axis after the class axis: ``(..., C, H, W)`` -> ``(..., C)``."""
    return accurate_sum(x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1]), axis=-1)


def _dice(probs: mx.array, target: mx.array, smooth: Scalar, alpha: Scalar, beta: Scalar, weights: mx.array | None = None) -> mx.array:
    """The loss of probabilities ``(..., C, H, W)``: the mean over classes of ``1 - coefficient``, weighted by ``weights`` ``(..., C)``."""
    intersection = _spatial_sums(probs * target)
    predicted, actual = _spatial_sums(probs), _spatial_sums(target)
    denominator = intersection + alpha * (predicted - intersection) + beta * (actual - intersection) + smooth
    loss = 1 - (intersection + smooth) / denominator
    return mx.mean(loss if weights is None else weights * loss, axis=-1)


@per_example(input="(C, H, W)", target="(C, H, W)")
def dice_loss(
    input: mx.array, target: mx.array, *, smooth: Scalar = 1.0, alpha: Scalar = 0.5, beta: Scalar = 0.5, apply_softmax: bool = True
) -> mx.array:
    r"""Soft Dice loss of one image (Milletari et al. 2016; Tversky's with ``alpha``, ``beta``; optax's ``dice_loss``), a scalar:

    .. math:: \ell = \frac{1}{C} \sum_c 1 - \frac{I_c + s}{I_c + \alpha (P_c - I_c) + \beta (T_c - I_c) + s},
              \quad I_c = \sum_{hw} p_{chw} t_{chw},\; P_c = \sum_{hw} p_{chw},\; T_c = \sum_{hw} t_{chw}

    ``input`` ``(C, H, W)`` logits (softmax over the classes), or probabilities with
    ``apply_softmax=False``; ``target`` ``(C, H, W)``, one-hot or soft. ``alpha = beta = 0.5`` is
    Dice, other values Tversky's index. A class absent from the target (:math:`T_c = 0`, all
    background) costs :math:`1 - s / (\alpha P_c + s)`: 0 where the prediction is empty too,
    approaching 1 as it predicts the class; the smoothing ``s > 0`` keeps it finite.
    """
    probs = mx.softmax(input, axis=-3) if apply_softmax else input
    return _dice(probs, target, smooth, alpha, beta)


@per_example(input="(H, W)", target="(H, W)")
def binary_dice_loss(input: mx.array, target: mx.array, *, smooth: Scalar = 1.0, apply_sigmoid: bool = True) -> mx.array:
    r"""Soft Dice loss of one binary mask ``(H, W)`` of logits (sigmoid) or probabilities, a scalar (optax's
    ``binary_dice_loss``): :func:`dice_loss` with one class. An empty target costs
    :math:`1 - s / (P / 2 + s)`."""
    probs = mx.sigmoid(input) if apply_sigmoid else input
    return _dice(probs[..., None, :, :], target[..., None, :, :], smooth, 0.5, 0.5)


@per_example(input="(C, H, W)", target="(C, H, W)")
def generalized_dice_loss(input: mx.array, target: mx.array, *, smooth: Scalar = 1.0, apply_softmax: bool = True) -> mx.array:
    r"""Generalized Dice loss of one image (Sudre et al. 2017; optax's ``multiclass_generalized_dice_loss`` on one image):

    .. math:: \ell = \frac{1}{C} \sum_c w_c (1 - d_c),\quad w_c = C \frac{1 / (T_c^2 + 10^{-7})}{\sum_k 1 / (T_k^2 + 10^{-7})}

    with :math:`d_c` the Dice coefficient of class :math:`c` (:func:`dice_loss`) and :math:`T_c`
    the class's area in the target: rare classes weigh more. optax takes the areas over its whole
    batch; a per-example loss takes them over its image, so ``reduce`` of it equals optax's loss
    of each image alone (tested), not of the batch.
    """
    probs = mx.softmax(input, axis=-3) if apply_softmax else input
    inverse = 1 / (mx.square(_spatial_sums(target)) + 1e-7)
    weights = inverse / mx.sum(inverse, axis=-1, keepdims=True) * target.shape[-3]
    return _dice(probs, target, smooth, 0.5, 0.5, weights)
