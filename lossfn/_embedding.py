"""Embedding and ranking losses of one example: cosine embedding, triplet margin, margin ranking, hinge embedding; cosine similarity and distance.

Vector losses take one example's embeddings ``(D,)`` and return a scalar; the ranking and
hinge embedding losses are element-wise.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import mlx.core as mx

from transforms._batching import vmap_batch
from transforms._sums import accumulator_dtype

from ._example import per_example

Scalar = float | mx.array
Distance = Callable[[mx.array, mx.array], mx.array]

# PyTorch's cosine_embedding_loss adds this to each squared norm (ATen's EPSILON).
_COSINE_EPS = 1e-12


def clamp_min_zero(z: mx.array) -> mx.array:
    r""":math:`\max(0, z)` with PyTorch's ``clamp_min`` gradient: 1 where :math:`z \ge 0`, the kink included, 0 elsewhere.

    A ``nan`` stays ``nan`` in value, with gradient 0 (PyTorch's ``z >= 0`` mask is false there).
    MLX's ``maximum(0, z)`` has exactly these gradients in ``z`` (1 at the tie, 0 at ``nan``;
    tested against PyTorch), without a ``where``: on data of random sign a ``where`` compiles
    to a mispredicted branch on the CPU (margin ranking at 4M: forward+backward 35 -> 13 ms).
    """
    return mx.maximum(0.0, z)


def _minimum(a: mx.array, b: mx.array) -> mx.array:
    """Element-wise minimum whose gradient is split in halves at ties, as ``torch.minimum``'s."""
    return mx.where(a < b, a, mx.where(b < a, b, 0.5 * (a + b)))


def _norm(x: mx.array, p: float) -> mx.array:
    r"""The :math:`p`-norm of ``x`` over its last axis, with PyTorch's gradients where it has a kink.

    ``p`` is a static Python number in :math:`[0, \infty]`: 0 counts the non-zero entries
    (``nan`` counts; gradient 0), ``inf`` is :math:`\max |x_i|` (ties share the gradient).
    Elsewhere :math:`(\sum |x_i|^p)^{1/p}`, computed as :math:`s \lVert x / s \rVert_p` with
    :math:`s = \max_i |x_i|` (no gradient), so that :math:`|x_i|^p` never overflows where the
    norm is finite; where the norm (or, for :math:`p < 1`, an entry) is 0 the gradient is 0, as
    PyTorch's. ``nan`` propagates and ``inf`` gives ``inf``; ``where`` keeps the discarded
    branches finite. For :math:`p = 2` where sums accumulate in float64 (the CPU), the squares
    are summed there instead, with no scale: no float32 entry's square overflows or underflows
    float64, and one reduction does (the triplet losses' forward at (8192, 256): 10.8 -> 5.0 ms).
    """
    if not p >= 0:
        raise ValueError(f"the norm's order p must be non-negative (0 to inf), got p={p}")
    if p == 0:
        return mx.sum(mx.logical_not(x == 0), axis=-1).astype(x.dtype)
    if p == 2 and accumulator_dtype() == mx.float64:
        return _two_norm_widened(x)
    a = mx.abs(x)
    if p == 1:
        return mx.sum(a, axis=-1)
    if p == math.inf:
        return mx.max(a, axis=-1)
    scale = mx.stop_gradient(mx.max(a, axis=-1, keepdims=True))
    usable = (scale > 0) & (scale < math.inf)  # false for 0, inf and nan
    a = a / mx.where(usable, scale, 1)
    if p == 2:
        total = mx.sum(mx.square(a), axis=-1)
    else:
        zero = a == 0  # (nan is not: it propagates)
        total = mx.sum(mx.where(zero, 0, mx.power(mx.where(zero, 1, a), p)), axis=-1)
    zero = total == 0
    safe = mx.where(zero, 1, total)
    norm = mx.where(zero, 0, mx.sqrt(safe) if p == 2 else mx.power(safe, 1 / p))
    scale = mx.squeeze(scale, -1)
    return mx.where(scale == math.inf, math.inf, mx.where(usable.squeeze(-1), scale, 1) * norm)


def _two_norm_widened(x: mx.array) -> mx.array:
    total = mx.sum(mx.square(x.astype(mx.float64)), axis=-1)
    zero = total == 0
    return mx.where(zero, 0, mx.sqrt(mx.where(zero, 1, total))).astype(x.dtype)


def _pairwise(x1: mx.array, x2: mx.array, p: float = 2.0, eps: Scalar = 1e-6) -> mx.array:
    return _norm(x1 - x2 + eps, p)


@per_example(x1="(D,)", x2="(D,)")
def pairwise_distance(x1: mx.array, x2: mx.array, *, p: float = 2.0, eps: Scalar = 1e-6) -> mx.array:
    r"""PyTorch's pairwise distance over the last axis: :math:`\lVert x_1 - x_2 + \epsilon \rVert_p`.

    ``eps`` is added to the difference (not to the norm), as ``torch.pairwise_distance``.
    ``(D,)`` in, a scalar out.
    """
    return _pairwise(x1, x2, p, eps)


def _ranking_hinge(input1: mx.array, input2: mx.array, target: mx.array | int, margin: Scalar) -> mx.array:
    return clamp_min_zero(margin - target * (input1 - input2))


@per_example()
def margin_ranking_loss(input1: mx.array, input2: mx.array, target: mx.array, *, margin: Scalar = 0.0) -> mx.array:
    r"""Ranking hinge, element-wise: :math:`\ell = \max(0, -y (x_1 - x_2) + m)`, for :math:`y = \pm 1`."""
    return _ranking_hinge(input1, input2, target, margin)


@per_example()
def hinge_embedding_loss(input: mx.array, target: mx.array, *, margin: Scalar = 1.0) -> mx.array:
    r"""Hinge embedding loss, element-wise, of distances ``input`` and labels :math:`y = \pm 1`:

    .. math:: \ell = x \text{ if } y = 1, \quad \max(0, m - x) \text{ if } y = -1

    As PyTorch, a label that is neither contributes both terms.
    """
    return mx.where(target == 1, 0, clamp_min_zero(margin - input)) + mx.where(target == -1, 0, input)


def _cosine(x1: mx.array, x2: mx.array) -> mx.array:
    r""":math:`x_1 \cdot x_2 / \sqrt{(\lVert x_1\rVert^2 + \epsilon)(\lVert x_2\rVert^2 + \epsilon)}`, PyTorch's
    cosine in the embedding loss (:math:`\epsilon = 10^{-12}` keeps zero vectors at cosine 0)."""
    squares = (mx.sum(mx.square(x1), axis=-1) + _COSINE_EPS) * (mx.sum(mx.square(x2), axis=-1) + _COSINE_EPS)
    return mx.sum(x1 * x2, axis=-1) / mx.sqrt(squares)


@per_example(input1="(D,)", input2="(D,)", target="()")
def cosine_embedding_loss(input1: mx.array, input2: mx.array, target: mx.array, *, margin: Scalar = 0.0) -> mx.array:
    r"""Cosine embedding loss of one pair of embeddings ``(D,)`` and a label ``target`` (0-d), a scalar.

    .. math:: \ell = 1 - \cos(x_1, x_2) \text{ if } y = 1, \quad \max(0, \cos(x_1, x_2) - m) \text{ if } y = -1

    and 0 for any other label (as PyTorch).
    """
    cos = _cosine(input1, input2)
    return mx.where(target == 1, 1 - cos, 0) + mx.where(target == -1, clamp_min_zero(cos - margin), 0)


def _triplet_hinge(d_pos: mx.array, d_neg: mx.array, d_swap: mx.array | None, margin: Scalar) -> mx.array:
    if d_swap is not None:
        d_neg = _minimum(d_neg, d_swap)
    return _ranking_hinge(d_neg, d_pos, 1, margin)


@per_example()
def triplet_margin_from_distances(
    positive_distance: mx.array,
    negative_distance: mx.array,
    swap_distance: mx.array | None = None,
    *,
    margin: Scalar = 1.0,
) -> mx.array:
    r"""The triplet hinge on precomputed distances, element-wise: :math:`\max(0, m + d_+ - d_-)`.

    With ``swap_distance`` (positive to negative), :math:`d_- = \min(d_-, d_{swap})`. This is
    :func:`margin_ranking_loss` of :math:`(d_-, d_+)` with target 1.
    """
    return _triplet_hinge(positive_distance, negative_distance, swap_distance, margin)


def _triplet(anchor: mx.array, positive: mx.array, negative: mx.array, distance: Distance, margin: Scalar, swap: bool) -> mx.array:
    swap_distance = distance(positive, negative) if swap else None
    return _triplet_hinge(distance(anchor, positive), distance(anchor, negative), swap_distance, margin)


def _triplet_with_distance_batch(*triple: mx.array, distance_function: Distance | None = None, **static: Any) -> mx.array:
    """The batch rule: the default distance works on a batch; a user's works on one example, so it is vmapped."""
    maths = triplet_margin_with_distance_loss.__wrapped__
    if distance_function is None:
        return maths(*triple, **static)
    return vmap_batch(functools.partial(maths, distance_function=distance_function, **static), triple, (0, 0, 0))


@per_example(anchor="(D,)", positive="(D,)", negative="(D,)", batch_rule=_triplet_with_distance_batch)
def triplet_margin_with_distance_loss(
    anchor: mx.array,
    positive: mx.array,
    negative: mx.array,
    *,
    distance_function: Distance | None = None,
    margin: Scalar = 1.0,
    swap: bool = False,
) -> mx.array:
    r"""Triplet loss of one (anchor, positive, negative) triple ``(D,)`` under any distance, a scalar.

    .. math:: \ell = \max(0, m + d(a, p) - d(a, n)), \quad d(a, n) \leftarrow \min(d(a, n), d(p, n)) \text{ if swap}

    ``distance_function`` maps two embeddings of one example to a scalar (default:
    :func:`pairwise_distance`, :math:`p = 2`, :math:`\epsilon = 10^{-6}`, as PyTorch); it is
    traced, differentiated and vmapped with the loss, so it must be a pure MLX function.
    """
    return _triplet(anchor, positive, negative, distance_function or _pairwise, margin, swap)


@per_example(anchor="(D,)", positive="(D,)", negative="(D,)")
def triplet_margin_loss(
    anchor: mx.array,
    positive: mx.array,
    negative: mx.array,
    *,
    margin: Scalar = 1.0,
    p: float = 2.0,
    eps: Scalar = 1e-6,
    swap: bool = False,
) -> mx.array:
    r"""Triplet loss of one triple ``(D,)`` under the :math:`p`-norm pairwise distance, a scalar.

    .. math:: \ell = \max(0, m + \lVert a - p + \epsilon\rVert_p - \lVert a - n + \epsilon\rVert_p)

    :func:`triplet_margin_with_distance_loss` with ``pairwise_distance(p=p, eps=eps)``; ``p``
    is static (it selects the norm's code).
    """
    distance = functools.partial(_pairwise, p=p, eps=eps)
    return _triplet(anchor, positive, negative, distance, margin, swap)


# --- beyond PyTorch's catalogue (optax's) ------------------------------------------------------


@per_example(input1="(D,)", input2="(D,)")
def cosine_similarity(input1: mx.array, input2: mx.array, *, epsilon: Scalar = 0.0) -> mx.array:
    r"""Cosine similarity of one pair of vectors ``(D,)``, a scalar (optax's ``cosine_similarity``):

    .. math:: s = \frac{x_1}{\sqrt{\max(\lVert x_1\rVert^2, \epsilon)}} \cdot \frac{x_2}{\sqrt{\max(\lVert x_2\rVert^2, \epsilon)}}

    ``epsilon`` bounds the squared norms below (a zero vector then has similarity 0, not ``nan``).
    """
    return mx.sum(unit(input1, epsilon) * unit(input2, epsilon), axis=-1)


def unit(x: mx.array, epsilon: Scalar = 0.0) -> mx.array:
    r""":math:`x / \sqrt{\max(\lVert x \rVert^2, \epsilon)}` over the last axis: :func:`cosine_similarity`'s normalisation."""
    return x / mx.sqrt(mx.maximum(mx.sum(mx.square(x), axis=-1, keepdims=True), epsilon))


@per_example(input1="(D,)", input2="(D,)")
def cosine_distance(input1: mx.array, input2: mx.array, *, epsilon: Scalar = 0.0) -> mx.array:
    r"""Cosine distance of one pair of vectors ``(D,)``: :math:`1 - \mathrm{cosine\_similarity}(x_1, x_2)` (optax's)."""
    return 1 - cosine_similarity.__wrapped__(input1, input2, epsilon=epsilon)
