"""PyTorch's multi-label losses: the multi-label hinge (margin) and soft margin losses."""

from __future__ import annotations

import math

import mlx.core as mx

from .. import _checks as C
from .._multilabel import multilabel_margin_loss as _multilabel_margin
from .._multilabel import multilabel_soft_margin_loss as _multilabel_soft_margin
from ._graphs import reduce_graph

Array = mx.array


def _rows(x: Array, num_classes: int) -> Array:
    """``x`` with its leading axes flattened: one example (``num_classes`` scores) per row.

    The row count is left to MLX (``-1``, right under a shapeless compile) unless there are no classes.
    """
    if x.ndim == 2:
        return x
    return x.reshape(-1, num_classes) if num_classes else x.reshape(math.prod(x.shape[:-1]), 0)


def _class_rows(x: Array, input: Array) -> Array:
    """``x``, which broadcasts to ``input``, as rows like ``input``'s; one per class ``(C,)`` or
    fewer dimensions stays as it is, broadcast inside the graph."""
    if x.ndim <= 1:
        return x
    return _rows(x if x.shape == input.shape else mx.broadcast_to(x, input.shape), input.shape[-1])


def _padded_indices_valid(input: Array, target: Array) -> Array:
    return C.padded_indices_valid(target, input.shape[-1])


def multilabel_margin_loss(
    input: Array,
    target: Array,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    """Multi-label hinge loss of scores and -1-padded label lists; see :class:`lossfn.nn.MultiLabelMarginLoss`."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    input, target = C.input_and_target(input, target)
    if input.ndim > 2 or input.size == 0 and not (input.ndim == 2 and input.shape[1] > 0):
        raise ValueError(
            "input must be a non-empty vector (C,) or matrix (N, C) of class scores (or a 0-d "
            f"score, one class); got shape {C.shape_str(input)}"
        )
    num_classes = 1 if input.ndim == 0 else input.shape[-1]
    if input.ndim == 2:
        target_fits = target.shape == input.shape
    else:  # one example: PyTorch accepts any target of <= 1 dimension holding C entries
        target_fits = target.ndim <= 1 and target.size == num_classes
    if not target_fits:
        raise ValueError(
            f"target must have the shape of input, {C.shape_str(input)} (class indices padded with "
            f"-1); got shape {C.shape_str(target)}"
        )
    C.check_integer(target, "target")
    graph = reduce_graph(_multilabel_margin, reduction, check=_padded_indices_valid)
    out, ok = graph(_rows(input, num_classes), _rows(target, num_classes))
    C.raise_unless(ok, out, lambda: C.padded_index_error(target, num_classes), input)
    # 'none' is one loss per example: (N,), or () for one example.
    return out.reshape(()) if out.ndim and input.ndim < 2 else out


def multilabel_soft_margin_loss(
    input: Array,
    target: Array,
    weight: Array | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    """One-versus-all logistic loss over the last (class) axis; see :class:`lossfn.nn.MultiLabelSoftMarginLoss`."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    input, target = C.input_and_target(input, target)
    if input.ndim == 0:
        raise ValueError("input must have a class axis (the last): shape (C,), (N, C) or (..., C); got a 0-d array")
    num_classes = input.shape[-1]
    # PyTorch broadcasts target and weight against the input without a warning.
    target = C.check_broadcasts(target, input.shape, "target", "input").astype(input.dtype)
    rows = [_rows(input, num_classes), _class_rows(target, input)]
    if weight is not None:
        weight = C.as_array(weight, "weight")
        C.check_floating(weight, "weight")
        rows.append(_class_rows(C.check_broadcasts(weight, input.shape, "weight", "input"), input))
    out = reduce_graph(_multilabel_soft_margin, reduction, elementwise=True)(*rows)
    # 'none' is one loss per example: the input's shape without its class axis.
    if out.ndim and input.ndim != 2:
        out = out.reshape(input.shape[:-1]) if input.ndim < 2 else out.reshape(-1, *input.shape[1:-1])
    return out
