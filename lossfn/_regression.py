"""Regression losses of one example, element-wise: the output has the shape of ``input``."""

from __future__ import annotations

import mlx.core as mx

Scalar = float | mx.array


def l1_loss(input: mx.array, target: mx.array) -> mx.array:
    r"""Absolute error, element-wise: :math:`\ell = |x - y|`."""
    return mx.abs(input - target)


def mse_loss(input: mx.array, target: mx.array) -> mx.array:
    r"""Squared error, element-wise: :math:`\ell = (x - y)^2`."""
    return mx.square(input - target)


def smooth_l1_loss(input: mx.array, target: mx.array, *, beta: Scalar = 1.0) -> mx.array:
    r"""Smooth L1, element-wise, with :math:`d = |x - y|`:

    .. math:: \ell = 0.5 d^2 / \beta \text{ if } d < \beta \text{ else } d - 0.5 \beta

    ``beta = 0`` is the L1 loss. ``beta`` may be a 0-d array (a traced hyper-parameter).
    """
    d = mx.abs(input - target)
    # The quadratic branch divides by beta; keep its (unselected) gradient finite at beta = 0.
    safe_beta = mx.where(beta > 0, beta, 1)
    return mx.where(d < beta, 0.5 * mx.square(d) / safe_beta, d - 0.5 * beta)


def huber_loss(input: mx.array, target: mx.array, *, delta: Scalar = 1.0) -> mx.array:
    r"""Huber loss, element-wise: :math:`\ell = \delta \cdot \mathrm{smooth\_l1}(x, y; \beta=\delta)`,

    i.e. :math:`0.5 d^2` if :math:`d < \delta` else :math:`\delta (d - 0.5 \delta)`.
    """
    return delta * smooth_l1_loss(input, target, beta=delta)
