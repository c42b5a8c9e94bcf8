"""Classification losses of one example: class scores ``(C,)`` and a class index or distribution."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from transforms._batching import Layout
from transforms._classes import is_index, nan_unless, take_class, take_shared, valid_class
from transforms._reduce import Weighted
from transforms._sums import accurate_sum

from . import _fastmath as fm
from ._example import per_example
from ._linear_ce import Config, check_cap, core, default_tile, soft_cap

Scalar = float | mx.array


def _nll(log_probs: mx.array, target: mx.array) -> mx.array:
    if is_index(target):
        picked, valid = take_class(log_probs, target)
        return nan_unless(valid, -picked)  # an index outside [0, C) costs nan
    # Staged: a float32 row sum drifts over 32000 classes.
    return -accurate_sum(target * log_probs, axis=-1)


def _reads_every_class(args: Sequence[Any]) -> bool:
    # A class index reads one score per example: on two streams the gradient's concatenation
    # cost more than the gather (fwd+bwd at (8192, 1000): 5.3 ms against 2.4 on one).
    return not is_index(args[1])


@per_example(log_probs="(C,)", target=("()", "(C,)"), layout=Layout(worth_sharding=_reads_every_class))
def nll_loss(log_probs: mx.array, target: mx.array | int) -> mx.array:
    r"""Negative log-likelihood of one example, a scalar.

    .. math:: \ell = -\log p_y \quad\text{or, for a distribution } q:\quad \ell = -\sum_c q_c \log p_c

    ``log_probs`` has shape ``(C,)``; ``target`` is a class index (integer, 0-d) or a
    distribution of shape ``(C,)``. An index outside ``[0, C)`` gives ``nan``.
    """
    return _nll(log_probs, target)


def _max_and_log_sum_exp(logits: mx.array) -> tuple[mx.array, mx.array]:
    r"""``m = max(x)`` (no gradient) and :math:`\log \sum_c e^{x_c - m}`, over the last axis.

    Working from ``x - m`` keeps the loss exact for logits of any magnitude: ``logsumexp(x)``
    rounds to a float32 ulp of ``|x|`` (1e-3 at 1e4), which ``logsumexp(x) - x_y`` keeps. The
    sum is staged (``accurate_sum``): a flat float32 sum over a 128k vocabulary drifts by 1e-5.
    """
    m = mx.stop_gradient(mx.max(logits, axis=-1, keepdims=True))
    return m, mx.log(accurate_sum(fm.exp_nonpositive(logits - m), axis=-1))


@per_example(logits="(C,)", target=("()", "(C,)"))
def cross_entropy(
    logits: mx.array,
    target: mx.array | int,
    *,
    z_loss: float | mx.array = 0.0,
    softcap: float | None = None,
    return_lse: bool = False,
) -> mx.array | tuple[mx.array, mx.array]:
    r"""Cross-entropy of one example's logits ``(C,)`` with a class index or a distribution ``(C,)``.

    .. math:: \ell = -\sum_c y_c \log\mathrm{softmax}(z)_c + \beta\, \mathrm{logsumexp}(z)^2,
              \quad z = c \tanh(x / c)

    With :math:`m = \max_c z_c` and :math:`s = \log \sum_c e^{z_c - m}`, computed as
    :math:`s + (m - z_y)` for an index and as ``nll_loss((z - m) - s, y)`` for a distribution,
    so that every term is small where the loss is: exact for logits of any magnitude and
    invariant to shifting them. The distribution is summed once, as ``logsumexp(z) * sum(y)``
    would add the float32 rounding of ``sum(y)`` (1e-3 relative for a smoothed label at
    C = 32000). An index outside ``[0, C)`` gives ``nan``.

    ``z_loss`` :math:`\beta` adds PaLM's penalty on the log-partition (1e-4 there);
    ``softcap`` :math:`c` caps the logits first, Gemma 2's soft-capping (30 there; None: no
    cap). With ``return_lse`` the result is ``(loss, logsumexp(z))``, the log-partition for
    logging, from the same pass (use it under ``transforms.batched`` or ``mx.vmap``).
    """
    logits = soft_cap(logits, check_cap(softcap))
    m, s = _max_and_log_sum_exp(logits)
    if is_index(target):
        loss = (_nll(logits, target) + mx.squeeze(m, -1)) + s
    else:
        loss = _nll((logits - m) - s[..., None], target)
    lse = mx.squeeze(m, -1) + s
    loss = _with_z_loss(loss, lse, z_loss)
    return (loss, lse) if return_lse else loss


def _with_z_loss(loss: mx.array, lse: mx.array, z_loss: float | mx.array, weight: mx.array | None = None) -> mx.array:
    """``loss + z_loss * lse**2``, the z-loss weighted like its example where a class weight is given."""
    if _is_zero(z_loss):
        return loss
    penalty = z_loss * mx.square(lse)
    return loss + (penalty if weight is None else weight * penalty)


def _is_zero(x: float | mx.array) -> bool:
    """Whether ``x`` is the Python number 0 (an array may be traced: its term is kept)."""
    return isinstance(x, (int, float)) and x == 0


def _classes_of_linear(args: Any) -> int:
    return args[1].shape[0]


@per_example(
    h="(D,)",
    W="(V, D)",
    target=("()", "(V,)"),
    b="(V,)",
    layout=Layout(target=2, shared=(1, 3), classes=_classes_of_linear, weight="weight", smoothing="label_smoothing", promote=False),
)
def linear_cross_entropy(
    h: mx.array,
    W: mx.array,
    target: mx.array | int,
    b: mx.array | None = None,
    *,
    weight: mx.array | None = None,
    label_smoothing: float | mx.array = 0.0,
    z_loss: float | mx.array = 0.0,
    softcap: float | None = None,
    tile: int | None = None,
    return_lse: bool = False,
) -> Any:
    r"""Cross-entropy of one token's hidden state ``h`` ``(D,)`` through a vocabulary ``W`` ``(V, D)``.

    .. math:: \ell = \mathrm{cross\_entropy}(z, y),\quad z = c \tanh((W h + b) / c)

    ``target`` is a class index ``()`` or a distribution ``(V,)``; ``b`` ``(V,)`` an optional
    bias; ``W`` and ``b`` are shared by a batch (``None`` in its vmap axes). The keywords are
    :func:`cross_entropy`'s (``z_loss``, ``softcap``, ``return_lse``) and PyTorch's class
    ``weight`` ``(V,)`` and ``label_smoothing``, which the pass applies itself
    (``transforms.weighted`` and ``smooth_labels`` hand them over): with a weight the result is
    a :class:`transforms.Weighted` counting :math:`w_y`, and smoothing follows PyTorch,
    :math:`(1 - \alpha) w_y \ell_y + \frac{\alpha}{V} \sum_c w_c \ell_c`.

    A batch never forms its ``(N, V)`` logits: tokens and vocabulary are cut into tiles of at
    most ``tile`` logits (default 2**18 on the CPU, 2**24 on a GPU), with an online
    log-sum-exp and a backward pass that recomputes each tile (``lossfn._linear_ce``).
    Half-precision ``h`` and ``W`` are computed in float32 a tile at a time. Not meant for
    small vocabularies, where ``cross_entropy(W @ h + b, y)`` is cheaper. (Written over leading
    axes, ``h`` ``(..., D)``: the same code is its batch rule.)
    """
    lead, (num_classes, features) = h.shape[:-1], W.shape
    index = is_index(target)
    smooth = not _is_zero(label_smoothing)
    if index:
        y = target.reshape(-1)
        scores = (mx.ones(num_classes) if weight is None else weight) if smooth else None
    else:
        p = target.reshape(-1, num_classes)
        p = (1 - label_smoothing) * p + label_smoothing / num_classes if smooth else p
        scores = p if weight is None else p * weight
    config = Config(
        bias=b is not None,
        target=index,
        scores="none" if scores is None else ("classes" if scores.ndim == 1 else "tokens"),
        cap=check_cap(softcap),
        tile=tile or default_tile(),
    )
    inputs = [h.reshape(-1, features), W] + ([b] if b is not None else []) + ([y] if index else [])
    lse, ce_y, ce_s = core(config)(*inputs, *([] if scores is None else [scores]))
    if not index:
        loss = _with_z_loss(ce_s, lse, z_loss)
        out: Any = loss.reshape(lead)
    else:
        w_y = None if weight is None else take_shared(weight, y)
        hard = ce_y if w_y is None else w_y * ce_y
        loss = (1 - label_smoothing) * hard + (label_smoothing / num_classes) * ce_s if smooth else hard
        loss = nan_unless(valid_class(y, num_classes), _with_z_loss(loss, lse, z_loss, w_y)).reshape(lead)
        out = loss if w_y is None else Weighted(loss, w_y.reshape(lead))
    return (out, lse.reshape(lead)) if return_lse else out


@per_example()
def binary_cross_entropy(input: mx.array, target: mx.array) -> mx.array:
    r"""Binary cross-entropy of probabilities, element-wise, logs clamped at -100 as PyTorch does.

    .. math:: \ell = -[y \max(\log x, -100) + (1 - y) \max(\log(1 - x), -100)]

    The gradients are PyTorch's: :math:`(x - y) / \max(x (1 - x), 10^{-12})` in ``x``, finite
    at ``x`` exactly 0 or 1 where the clamped logarithm has none, and
    :math:`\log(1 - x) - \log x` (unclamped) in ``y``. A custom vjp supplies them. A
    probability outside ``[0, 1]`` (``x`` or ``y``) gives ``nan``.
    """
    in_range = (input >= 0) & (input <= 1) & (target >= 0) & (target <= 1)
    return nan_unless(in_range, _bce(input, target))


@mx.custom_function
def _bce(input: mx.array, target: mx.array) -> mx.array:
    return (target - 1) * mx.maximum(fm.log1p(-input), -100) - target * mx.maximum(mx.log(input), -100)


@_bce.vjp
def _bce_vjp(primals: list[mx.array], cotangent: mx.array, output: mx.array) -> tuple[mx.array, mx.array]:
    input, target = primals
    grad_input = (input - target) / mx.maximum(input * (1 - input), 1e-12)
    grad_target = fm.log1p(-input) - mx.log(input)
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


def _positive_part(z: mx.array) -> mx.array:
    """``max(z, 0)`` with gradient exactly 1 or 0, and 1/2 at 0 (so that softplus's is sigma(0)).

    As ``z/2 + |z|/2`` (``|z|``'s gradient at 0 is 0), not a ``where``: in a fused CPU kernel
    that compiles to a branch, mispredicted on logits of random sign (5 ns per element
    against 0.3), and ``maximum`` has gradient 0 at 0. ``z`` is floored at the largest
    negative float first (a branch that data never takes), so ``-inf`` gives 0, not
    ``-inf + inf``.
    """
    z = mx.maximum(z, mx.finfo(z.dtype).min)
    return 0.5 * z + 0.5 * mx.abs(z)


def softplus(z: mx.array) -> mx.array:
    r""":math:`\log(1 + e^z) = \max(z, 0) + \log(1 + e^{-|z|})`, exact for any :math:`z`.

    Its gradient is :math:`\sigma(z)`, accurate in both tails (MLX's ``logaddexp(0, z)`` has a
    gradient of 0 below :math:`z = -17`): :math:`\max(z, 0)`'s two halves give exactly 0 or 1
    (tested at :math:`z = \pm 22`, where the tail's :math:`e^{-|z|}` is all of the answer).
    """
    return _positive_part(z) + fm.log1p(fm.exp(-mx.abs(z)))


def bce_with_logits(input: mx.array, target: mx.array, pos_weight: mx.array | None = None) -> mx.array:
    """The maths of :func:`binary_cross_entropy_with_logits`, for the losses built on it."""
    tail = fm.log1p(fm.exp(-mx.abs(input)))  # shared: softplus(+-x) = max(+-x, 0) + tail
    on_positives = target if pos_weight is None else pos_weight * target
    return on_positives * (_positive_part(-input) + tail) + (1 - target) * (_positive_part(input) + tail)


@per_example()
def binary_cross_entropy_with_logits(
    input: mx.array, target: mx.array, pos_weight: mx.array | None = None
) -> mx.array:
    r"""Binary cross-entropy of logits, element-wise, with an optional weight on positives.

    .. math:: \ell = w_+ y\, \mathrm{softplus}(-x) + (1 - y)\, \mathrm{softplus}(x)
              = -[w_+ y \log\sigma(x) + (1 - y)\log(1 - \sigma(x))]

    Two non-negative terms sharing one exponential: exact for logits of any magnitude, also
    where the loss is small (PyTorch's :math:`(1 - y) x + \mathrm{softplus}(-x)` cancels there,
    1e-4 relative at :math:`|x| = 50`), its gradient accurate in the confident tails.
    """
    return bce_with_logits(input, target, pos_weight)


# --- beyond PyTorch's catalogue ------------------------------------------------------------


@per_example()
def sigmoid_focal_loss(input: mx.array, target: mx.array, *, alpha: float | None = 0.25, gamma: Scalar = 2.0) -> mx.array:
    r"""Focal loss of logits, element-wise (Lin et al. 2017; torchvision's ``sigmoid_focal_loss``, optax's):

    .. math:: \ell = \alpha_t (1 - p_t)^\gamma\, \mathrm{bce\_with\_logits}(x, y),\quad
              1 - p_t = y\,\sigma(-x) + (1 - y)\,\sigma(x),\quad \alpha_t = \alpha y + (1 - \alpha)(1 - y)

    ``alpha`` None (or negative, torchvision's convention) weighs nothing; at ``gamma = 0`` and
    ``alpha`` None it is BCE with logits. :math:`\sigma(\pm x)` are taken each from its own side,
    so the focal factor is exact in the confident tails. Shapes: ``input`` and ``target`` alike.
    """
    loss = bce_with_logits(input, target)
    one_minus_p_t = target * mx.sigmoid(-input) + (1 - target) * mx.sigmoid(input)
    loss = mx.power(one_minus_p_t, gamma) * loss
    if alpha is None or (isinstance(alpha, (int, float)) and alpha < 0):
        return loss
    return (alpha * target + (1 - alpha) * (1 - target)) * loss


@per_example(logits="(C,)", target=("()", "(C,)"))
def poly1_cross_entropy(logits: mx.array, target: mx.array | int, *, epsilon: Scalar = 2.0) -> mx.array:
    r"""Poly-1 cross-entropy of one example's logits ``(C,)`` (Leng et al. 2022, PolyLoss; optax's ``poly_loss_cross_entropy``):

    .. math:: \ell = \mathrm{cross\_entropy}(x, y) + \epsilon \sum_c y_c (1 - \mathrm{softmax}(x)_c)

    against a class index (:math:`1 - p_y`) or a distribution ``(C,)``. At ``epsilon = 0`` it is
    :func:`cross_entropy`; an index outside ``[0, C)`` gives ``nan``.
    """
    ce = cross_entropy.__wrapped__(logits, target)  # its maths: the example is checked already
    if is_index(target):
        return ce + epsilon * (1 - mx.exp(-ce))  # p_y = exp(-ce)
    return ce + epsilon * accurate_sum(target * (1 - mx.softmax(logits, axis=-1)), axis=-1)
