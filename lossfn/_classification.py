"""Classification losses of one example: class scores ``(C,)`` and a class index or distribution."""

from __future__ import annotations

import mlx.core as mx

from transforms._reduce import accurate_sum
from transforms._weighting import is_index


def nll_loss(log_probs: mx.array, target: mx.array | int) -> mx.array:
    r"""Negative log-likelihood of one example, a scalar.

    .. math:: \ell = -\log p_y \quad\text{or, for a distribution } q:\quad \ell = -\sum_c q_c \log p_c

    ``log_probs`` has shape ``(C,)``; ``target`` is a class index (integer, 0-d) or a
    distribution of shape ``(C,)``.
    """
    if is_index(target):
        return -mx.take(log_probs, target, axis=-1)
    return -accurate_sum(target * log_probs, axis=-1)  # staged: a float32 row sum drifts over 32000 classes


def cross_entropy(logits: mx.array, target: mx.array | int) -> mx.array:
    r"""Cross-entropy of one example's logits ``(C,)`` with a class index or a distribution ``(C,)``.

    .. math:: \ell = -\sum_c y_c \log\mathrm{softmax}(x)_c = \mathrm{logsumexp}(x) \sum_c y_c - \sum_c y_c x_c

    Computed as ``logsumexp(x) - x_y`` for an index, and as ``nll_loss(x - logsumexp(x), y)``
    for a distribution: one sum over the classes, as ``logsumexp(x) * sum(y)`` would add the
    float32 rounding of ``sum(y)`` (systematic for a smoothed label: 1e-3 relative at
    C = 32000). ``logsumexp`` shifts by the max, so logits of any magnitude (1e4 and beyond)
    are stable in value and gradient.
    """
    if is_index(target):
        return nll_loss(logits, target) + mx.logsumexp(logits, axis=-1)
    return nll_loss(logits - mx.logsumexp(logits, axis=-1, keepdims=True), target)


def binary_cross_entropy(input: mx.array, target: mx.array) -> mx.array:
    r"""Binary cross-entropy of probabilities, element-wise, logs clamped at -100 as PyTorch does.

    .. math:: \ell = -[y \max(\log x, -100) + (1 - y) \max(\log(1 - x), -100)]

    The gradients are PyTorch's: :math:`(x - y) / \max(x (1 - x), 10^{-12})` in ``x``, finite
    at ``x`` exactly 0 or 1 where the clamped logarithm has none, and
    :math:`\log(1 - x) - \log x` (unclamped) in ``y``. A custom vjp supplies them.
    """
    return _bce(input, target)


def _log1m(x: mx.array) -> mx.array:
    """``log(1 - x)``, accurate for tiny ``x`` like ``log1p(-x)`` at the cost of one ``log``.

    Kahan's trick: with ``u = 1 - x`` rounded, ``log(u) * (-x) / (u - 1)`` cancels the rounding
    of ``u`` (relative error < 2e-7, measured). MLX's CPU ``log1p`` costs three ``log``s.
    """
    u = 1 - x
    return mx.where(u == 1, -x, mx.log(u) * (-x) / (u - 1))


@mx.custom_function
def _bce(input: mx.array, target: mx.array) -> mx.array:
    return (target - 1) * mx.maximum(_log1m(input), -100) - target * mx.maximum(mx.log(input), -100)


@_bce.vjp
def _bce_vjp(primals: list[mx.array], cotangent: mx.array, output: mx.array) -> tuple[mx.array, mx.array]:
    input, target = primals
    grad_input = (input - target) / mx.maximum(input * (1 - input), 1e-12)
    grad_target = _log1m(input) - mx.log(input)
    return _unbroadcast(cotangent * grad_input, input.shape), _unbroadcast(cotangent * grad_target, target.shape)


@_bce.vmap
def _bce_vmap(inputs: list[mx.array], axes: list[int | None]) -> tuple[mx.array, int]:
    # Element-wise: batch by moving each mapped axis to the front and broadcasting. Without
    # this rule, grad(vmap(f)) would differentiate the forward and ignore the custom vjp.
    input, target = (x if ax is None else mx.moveaxis(x, ax, 0) for x, ax in zip(inputs, axes))
    if axes[0] is None:
        input = mx.broadcast_to(input, target.shape[:1] + input.shape)
    if axes[1] is None:
        target = mx.broadcast_to(target, input.shape[:1] + target.shape)
    return _bce(input, target), 0


def _unbroadcast(grad: mx.array, shape: tuple[int, ...]) -> mx.array:
    """Sum ``grad`` down to ``shape`` (the shape of a primal that was broadcast)."""
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    return grad.sum(axis=axes, keepdims=False).reshape(shape) if axes else grad


def binary_cross_entropy_with_logits(
    input: mx.array, target: mx.array, pos_weight: mx.array | None = None
) -> mx.array:
    r"""Binary cross-entropy of logits, element-wise, with an optional weight on positives.

    .. math:: \ell = (1 - y)\, x + (1 + (w_+ - 1)\, y)\, \mathrm{softplus}(-x)

    which is :math:`-[w_+ y \log\sigma(x) + (1 - y)\log(1 - \sigma(x))]`; ``softplus`` is
    ``logaddexp(0, .)``, exact for logits of any magnitude.
    """
    log_weight = 1 if pos_weight is None else 1 + (pos_weight - 1) * target
    return (1 - target) * input + log_weight * mx.logaddexp(0, -input)
