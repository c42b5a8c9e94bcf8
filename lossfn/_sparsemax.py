"""Sparsemax and its Fenchel-Young losses (Martins & Astudillo 2016; optax's).

``sparsemax(z)`` is the Euclidean projection of the scores onto the probability simplex:
``p = max(z - tau, 0)``, with ``tau`` such that ``sum(p) = 1``; unlike softmax it gives exact
zeros. Its losses are to sparsemax what cross-entropy is to softmax.
"""

from __future__ import annotations

import mlx.core as mx

from transforms._classes import nan_unless, take_class
from transforms._precision import in_float32

from ._example import per_example


def _threshold(z: mx.array) -> mx.array:
    r""":math:`\tau(z)` over the last axis, ``(..., 1)``: with the scores sorted down, :math:`z_{(1)} \ge z_{(2)} \ge \dots`,
    the support is the largest :math:`k` with :math:`1 + k z_{(k)} > \sum_{j \le k} z_{(j)}`, and
    :math:`\tau = (\sum_{j \le k} z_{(j)} - 1) / k`. Differentiable with its support held fixed
    (which is sparsemax's Jacobian)."""
    ordered = -mx.sort(-mx.stop_gradient(z), axis=-1)
    ranks = mx.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    in_support = 1 + ranks * ordered > mx.cumsum(ordered, axis=-1)
    k = mx.sum(in_support, axis=-1, keepdims=True)
    tau0 = (mx.take_along_axis(mx.cumsum(ordered, axis=-1), (k - 1).astype(mx.int32), axis=-1) - 1) / k
    support = z > tau0
    return (mx.sum(mx.where(support, z, 0), axis=-1, keepdims=True) - 1) / mx.sum(support, axis=-1, keepdims=True)


@in_float32
def sparsemax(scores: mx.array) -> mx.array:
    r"""Sparsemax over the last axis (any leading axes): :math:`\mathrm{argmin}_{p \in \Delta} \lVert p - z \rVert^2 = \max(z - \tau(z), 0)`.

    Half precision is computed in float32 and rounded once, as every loss is.
    """
    return mx.maximum(scores - _threshold(scores), 0)


@per_example(scores="(C,)", target="()")
def multiclass_sparsemax_loss(scores: mx.array, target: mx.array | int) -> mx.array:
    r"""Sparsemax loss of one example's scores ``(C,)`` and class index (optax's ``multiclass_sparsemax_loss``), a scalar:

    .. math:: \ell = p \cdot z + \tfrac12 (1 - \lVert p \rVert^2) - z_y,\quad p = \mathrm{sparsemax}(z)

    0 exactly when :math:`p` is the one-hot of :math:`y`; its gradient is :math:`p - e_y` (taken
    with :math:`p` held fixed, as the Fenchel-Young form allows). An index outside ``[0, C)``
    gives ``nan``.
    """
    p = mx.stop_gradient(sparsemax(scores))
    picked, valid = take_class(scores, target)
    return nan_unless(valid, mx.sum(p * scores, axis=-1) + 0.5 * (1 - mx.sum(p * p, axis=-1)) - picked)


def _sparse_plus(x: mx.array) -> mx.array:
    r"""0 below -1, :math:`(x + 1)^2 / 4` between, :math:`x` above 1: sparsemax's softplus."""
    middle = mx.clip(x, -1, 1)
    return mx.where(x >= 1, x, mx.square(middle + 1) / 4)


@per_example()
def sparsemax_loss(input: mx.array, target: mx.array) -> mx.array:
    r"""Binary sparsemax loss of logits, element-wise, for labels 0 or 1 (optax's ``sparsemax_loss``):

    .. math:: \ell = \mathrm{sparse\_plus}(-x) \text{ if } y = 1, \quad \mathrm{sparse\_plus}(x) \text{ if } y = 0
    """
    return _sparse_plus(mx.where(target != 0, -input, input))
