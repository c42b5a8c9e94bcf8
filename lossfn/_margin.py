"""Margin losses of one example: the multi-class hinge (multi-margin) and the soft margin; optax's hinge and perceptron losses."""

from __future__ import annotations

import mlx.core as mx

from transforms._classes import nan_unless, take_class

from ._classification import softplus
from ._example import per_example

Scalar = float | mx.array


def hinge(z: mx.array) -> mx.array:
    r""":math:`\max(0, z)`, with PyTorch's gradient: 1 where :math:`z > 0`, 0 elsewhere (0 at the kink)."""
    return mx.where(z > 0, z, 0)


@per_example(input="(C,)", target="()")
def multi_margin_loss(input: mx.array, target: mx.array | int, *, p: int = 1, margin: Scalar = 1.0) -> mx.array:
    r"""Multi-class hinge loss of one example's scores ``(C,)`` and class index ``target`` (0-d), a scalar.

    .. math:: \ell = \frac{1}{C} \sum_{i \ne y} \max(0, m - x_y + x_i)^p

    ``p`` is 1 or 2 (static: it selects the code); ``margin`` may be negative or a 0-d array
    (a traced hyper-parameter). Class weights are ``transforms.weighted(f, normalize=False)``:
    they rescale the example's loss, a 'mean' still divides by the number of examples. An
    index outside ``[0, C)`` gives ``nan``.
    """
    if p not in (1, 2):
        raise ValueError(f"only p == 1 and p == 2 supported, got p={p!r}")
    num_classes = input.shape[-1]
    picked, valid = take_class(input, target)
    violation = hinge(input + (margin - picked)[..., None])
    violation = violation if p == 1 else mx.square(violation)
    # The target's own term is max(0, margin)^p: masked out with where, so it has no gradient.
    is_target = mx.arange(num_classes) == target[..., None]
    loss = mx.sum(mx.where(is_target, 0, violation), axis=-1) / num_classes
    return nan_unless(valid, loss)


@per_example()
def soft_margin_loss(input: mx.array, target: mx.array) -> mx.array:
    r"""Two-class logistic loss, element-wise, for targets :math:`y = \pm 1`:

    .. math:: \ell = \log(1 + e^{-y x}) = \mathrm{softplus}(-y x)

    Exact for any magnitude (PyTorch's ``log1p(exp(-y x))`` overflows to ``inf``, with
    ``nan`` gradients, once :math:`-y x > 88` in float32); :math:`y x = +\infty` costs 0.
    """
    return softplus(-(target * input))


# --- beyond PyTorch's catalogue (optax's) ------------------------------------------------------


def _max_beyond(scores: mx.array, target: mx.array | int, shift: Scalar) -> mx.array:
    r""":math:`\max_c (x_c + \text{shift}\,[c \ne y]) - x_y`, ``nan`` for an index outside ``[0, C)``."""
    picked, valid = take_class(scores, target)
    is_target = mx.arange(scores.shape[-1]) == target[..., None]
    return nan_unless(valid, mx.max(mx.where(is_target, scores, scores + shift), axis=-1) - picked)


@per_example(scores="(C,)", target="()")
def multiclass_hinge_loss(scores: mx.array, target: mx.array | int) -> mx.array:
    r"""Crammer-Singer multi-class hinge of one example's scores ``(C,)`` and class index (optax's), a scalar:

    .. math:: \ell = \max_c (x_c + [c \ne y]) - x_y

    (0 once the true class leads every other by 1). An index outside ``[0, C)`` gives ``nan``.
    """
    return _max_beyond(scores, target, 1.0)


@per_example(scores="(C,)", target="()")
def multiclass_perceptron_loss(scores: mx.array, target: mx.array | int) -> mx.array:
    r"""Multi-class perceptron loss of one example's scores ``(C,)`` and class index (optax's): :math:`\ell = \max_c x_c - x_y`."""
    return _max_beyond(scores, target, 0.0)


@per_example()
def perceptron_loss(input: mx.array, target: mx.array) -> mx.array:
    r"""Binary perceptron loss, element-wise, for targets :math:`y = \pm 1` (optax's): :math:`\ell = \max(0, -y x)`."""
    return hinge(-(target * input))
