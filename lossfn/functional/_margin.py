"""PyTorch's margin losses: the multi-class hinge (multi-margin) and the soft margin."""

from __future__ import annotations

import mlx.core as mx

from .. import _checks as C
from .._margin import multi_margin_loss as _multi_margin
from .._margin import soft_margin_loss as _soft_margin
from ._graphs import reduce_graph, run_elementwise

Array = mx.array


def multi_margin_loss(
    input: Array,
    target: Array,
    p: int = 1,
    margin: float = 1.0,
    weight: Array | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    """Multi-class hinge loss of scores and class indices; see :class:`lossfn.nn.MultiMarginLoss`."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    if p != 1 and p != 2:
        raise ValueError(f"only p == 1 and p == 2 supported, got p={p!r}")
    input, target = C.input_and_target(input, target)
    if input.ndim > 2 or input.size == 0 and not (input.ndim == 2 and input.shape[1] > 0):
        raise ValueError(
            "input must be a non-empty vector (C,) or matrix (N, C) of class scores (or a 0-d "
            f"score, one class); got shape {C.shape_str(input)}"
        )
    num_classes = 1 if input.ndim == 0 else input.shape[-1]
    batch_size = 1 if input.ndim <= 1 else input.shape[0]
    if target.ndim > 1 or target.size != batch_size:
        raise ValueError(
            f"target must hold one class index per example, shape ({batch_size},) or (), for input "
            f"of shape {C.shape_str(input)}; got shape {C.shape_str(target)}"
        )
    C.check_integer(target, "target")
    if weight is not None:
        weight = C.as_array(weight, "weight")
        C.check_class_weight(weight, num_classes)
    weighting = "class" if weight is not None else None
    graph = reduce_graph(_multi_margin, reduction, weighting, static=("p",), check=_indices_valid)
    shared = () if weight is None else (weight,)
    out, ok = graph(input.reshape(-1, num_classes), target.reshape(-1), *shared, p=int(p), margin=float(margin))
    C.raise_unless(ok, out, lambda: C.class_index_error(target, num_classes, None), input)
    # 'none' comes back in the target's layout: (N,), or () for one example.
    return out.reshape(()) if out.ndim and target.ndim == 0 else out


def _indices_valid(input: Array, target: Array, *weight: Array, **hyper: Array) -> Array:
    return C.indices_valid(target, input.shape[-1])


def soft_margin_loss(
    input: Array,
    target: Array,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    """Two-class logistic loss for targets of +-1; see :class:`lossfn.nn.SoftMarginLoss`."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    input, target = C.input_and_target(input, target)
    target = C.check_broadcasts(target, input.shape, "target", "input").astype(input.dtype)
    return run_elementwise(reduce_graph(_soft_margin, reduction, elementwise=True), input, target)
