"""PyTorch's embedding and ranking losses: cosine embedding, triplet margin (with any distance),
margin ranking, hinge embedding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx

import transforms as T

from .. import _checks as C
from .._embedding import cosine_embedding_loss as _cosine_embedding
from .._embedding import hinge_embedding_loss as _hinge_embedding
from .._embedding import margin_ranking_loss as _margin_ranking
from .._embedding import pairwise_distance as _pairwise_distance
from .._embedding import triplet_margin_from_distances as _triplet_from_distances
from .._embedding import triplet_margin_loss as _triplet_margin
from ._graphs import reduce_graph, run_elementwise

Array = mx.array


def _one_example(graph: Any, *example: Array, **hyper: Any) -> Array:
    """Run a graph of per-example vector losses on ONE example (a batch of one), returned 0-d."""
    out = graph(*(x[None] for x in example), **hyper)
    return out.reshape(()) if out.ndim else out


def _floating(**arrays: Any) -> list[Array]:
    out = []
    for name, x in arrays.items():
        x = C.as_array(x, name)
        C.check_floating(x, name)
        out.append(x)
    return out


def pairwise_distance(x1: Array, x2: Array, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Array:
    r"""``torch.nn.functional.pairwise_distance``: :math:`\lVert x_1 - x_2 + \epsilon \rVert_p` over the last axis.

    Not a loss, but the default distance of the triplet losses, here to build batched
    distance functions for :func:`triplet_margin_with_distance_loss` as in PyTorch.
    """
    x1, x2 = C.broadcast_arrays(**dict(zip(("x1", "x2"), _floating(x1=x1, x2=x2))))
    if x1.ndim <= 1:
        distance = _pairwise_distance(x1.reshape(-1), x2.reshape(-1), p=float(p), eps=eps)
    else:
        rows = [x.reshape(-1, x.shape[-1]) for x in (x1, x2)]
        distance = T.batched(_pairwise_distance)(*rows, p=float(p), eps=eps).reshape(-1, *x1.shape[1:-1])
    return distance[..., None] if keepdim else distance


def cosine_embedding_loss(
    input1: Array,
    input2: Array,
    target: Array,
    margin: float = 0,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    """Cosine embedding loss of pairs ``(N, D)`` or ``(D,)``; see :class:`lossfn.nn.CosineEmbeddingLoss`."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    input1, input2 = _floating(input1=input1, input2=input2)
    target = C.as_array(target, "target")
    if target.ndim > 1:
        raise ValueError(
            f"0D or 1D target tensor expected, multi-target not supported; got target of shape {C.shape_str(target)}"
        )
    if not input1.ndim == input2.ndim == target.ndim + 1:
        raise ValueError(
            f"{target.ndim}D target tensor expects {target.ndim + 1}D input tensors, but found inputs "
            f"with sizes {C.shape_str(input1)} and {C.shape_str(input2)}."
        )
    input1, input2 = C.broadcast_arrays(input1=input1, input2=input2)
    graph = reduce_graph(_cosine_embedding, reduction)
    if target.ndim == 0:
        return _one_example(graph, input1, input2, target, margin=float(margin))
    # The batch axis broadcasts too, as in PyTorch: inputs (1, D) against a target (N,), or the reverse.
    try:
        (rows,) = mx.broadcast_shapes(input1.shape[:1], target.shape)
    except ValueError as err:
        raise ValueError(
            f"target of shape {C.shape_str(target)} does not match the batch of the inputs, "
            f"of shape {C.shape_str(input1)}"
        ) from err
    input1, input2 = (x if x.shape[0] == rows else mx.broadcast_to(x, (rows, x.shape[1])) for x in (input1, input2))
    target = target if target.shape[0] == rows else mx.broadcast_to(target, (rows,))
    return graph(input1, input2, target, margin=float(margin))


def _check_triplet(anchor: Array, positive: Array, negative: Array, margin: float) -> None:
    if margin <= 0:
        raise ValueError(f"margin must be greater than 0, got {margin}")
    if not anchor.ndim == positive.ndim == negative.ndim:
        raise ValueError(
            "The anchor, positive, and negative tensors are expected to have the same number of "
            f"dimensions, but got: anchor {anchor.ndim}D, positive {positive.ndim}D, and negative "
            f"{negative.ndim}D inputs"
        )


def triplet_margin_loss(
    anchor: Array,
    positive: Array,
    negative: Array,
    margin: float = 1.0,
    p: float = 2,
    eps: float = 1e-6,
    swap: bool = False,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    """Triplet margin loss under the ``p``-norm distance; see :class:`lossfn.nn.TripletMarginLoss`.

    ``p`` selects the compiled graph (a new value compiles a new one); ``margin`` and ``eps`` do not.
    """
    reduction = C.reduction_of(size_average, reduce, reduction)
    triple = _floating(anchor=anchor, positive=positive, negative=negative)
    _check_triplet(*triple, margin)
    triple = C.broadcast_arrays(anchor=triple[0], positive=triple[1], negative=triple[2])
    if not p >= 0:
        raise ValueError(f"p must be non-negative (0 to inf), got p={p}")
    graph = reduce_graph(_triplet_margin, reduction, static=("p",))
    hyper = dict(margin=float(margin), p=float(p), eps=float(eps), swap=bool(swap))
    if triple[0].ndim > 1:  # (N, D) or (N, ..., D): the distance is over the last axis
        return graph(*triple, **hyper)
    return _one_example(graph, *(x.reshape(-1) for x in triple), **hyper)  # (D,), or () as (1,)


def triplet_margin_with_distance_loss(
    anchor: Array,
    positive: Array,
    negative: Array,
    *,
    distance_function: Callable[[Array, Array], Array] | None = None,
    margin: float = 1.0,
    swap: bool = False,
    reduction: str = "mean",
) -> Array:
    """Triplet margin loss under any distance; see :class:`lossfn.nn.TripletMarginWithDistanceLoss`.

    As in PyTorch, ``distance_function`` is *batched*: it is called on the inputs as given
    (``(N, D)`` pairs, or ``(D,)`` unbatched) and returns one distance per example. It runs as
    ordinary (differentiable) MLX code; only the margin and the reduction are compiled. The
    default, ``None``, is the pairwise distance (``p = 2``, ``eps = 1e-6``), i.e. exactly
    :func:`triplet_margin_loss`, compiled whole.
    """
    reduction = C.reduction_of(None, None, reduction)
    triple = _floating(anchor=anchor, positive=positive, negative=negative)
    if distance_function is None:
        return triplet_margin_loss(*triple, margin=margin, swap=swap, reduction=reduction)
    _check_triplet(*triple, margin)
    anchor, positive, negative = triple  # given to distance_function as they are, as in PyTorch
    distances = [distance_function(anchor, positive), distance_function(anchor, negative)]
    if swap:
        distances.append(distance_function(positive, negative))
    names = ("positive_distance", "negative_distance", "swap_distance")
    distances = C.broadcast_first(**{n: C.as_array(d, n) for n, d in zip(names, distances)})
    graph = reduce_graph(_triplet_from_distances, reduction, elementwise=True)
    return run_elementwise(graph, *distances, margin=float(margin))


def margin_ranking_loss(
    input1: Array,
    input2: Array,
    target: Array,
    margin: float = 0,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    """Margin ranking loss, element-wise; see :class:`lossfn.nn.MarginRankingLoss`."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    input1, input2 = _floating(input1=input1, input2=input2)
    target = C.as_array(target, "target")
    if not input1.ndim == input2.ndim == target.ndim:
        raise ValueError(
            "margin_ranking_loss : All input tensors should have same dimension but got sizes: "
            f"input1: {C.shape_str(input1)}, input2: {C.shape_str(input2)}, target: {C.shape_str(target)}"
        )
    arrays = C.broadcast_first(input1=input1, input2=input2, target=target)
    return run_elementwise(reduce_graph(_margin_ranking, reduction, elementwise=True), *arrays, margin=float(margin))


def hinge_embedding_loss(
    input: Array,
    target: Array,
    margin: float = 1.0,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    """Hinge embedding loss, element-wise; see :class:`lossfn.nn.HingeEmbeddingLoss`."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    (input,) = _floating(input=input)
    arrays = C.broadcast_first(input=input, target=C.as_array(target, "target"))
    return run_elementwise(reduce_graph(_hinge_embedding, reduction, elementwise=True), *arrays, margin=float(margin))
