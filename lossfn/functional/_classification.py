"""PyTorch's classification losses: cross-entropy, NLL, BCE, BCE with logits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx

import transforms as T

from .. import _checks as C
from .._classification import binary_cross_entropy as _bce
from .._classification import binary_cross_entropy_with_logits as _bce_logits
from .._classification import cross_entropy as _cross_entropy
from .._classification import nll_loss as _nll_loss
from ._graphs import class_graph, reduce_graph, run_classwise, run_elementwise

Array = mx.array


def _check_class_input(input: Array, target: Array, *, allow_probabilities: bool) -> int:
    """Check CE/NLL shapes and dtypes; return the number of classes."""
    C.check_floating(input, "input")
    if input.ndim == 0:
        raise ValueError("input must have a class axis: shape (C,), (N, C) or (N, C, d1, ..., dk); got a 0-d array")
    num_classes = input.shape[0] if input.ndim == 1 else input.shape[1]
    if input.shape == target.shape and allow_probabilities:
        C.check_floating(target, "target (class probabilities)")
        return num_classes
    index_shape = () if input.ndim == 1 else input.shape[:1] + input.shape[2:]
    if target.shape != index_shape:
        expected = f"{index_shape} (class indices)"
        if allow_probabilities:
            expected += f" or {tuple(input.shape)} (class probabilities)"
        hint = ""
        if input.ndim >= 3 and tuple(target.shape) == tuple(input.shape[:-1]):
            hint = (
                ". The class axis is dimension 1, as in PyTorch, and target matches input with its last axis removed: "
                "for class-last logits (B, T, C), pass mx.moveaxis(input, -1, 1), or use "
                "transforms.reduce(lossfn.cross_entropy)(input, target), which takes (B, T, C) with (B, T) as they are"
            )
        raise ValueError(
            f"target must have shape {expected} for input of shape {C.shape_str(input)}; "
            f"got {C.shape_str(target)}{hint}"
        )
    C.check_integer(target, "target")
    return num_classes


def check_class_options(weight: Any, num_classes: int, ignore_index: Any, label_smoothing: float) -> tuple[Array | None, int]:
    """PyTorch's checks of a class loss's options: the class weight (as an array) and the ignore index (an int)."""
    if weight is not None:
        weight = C.as_array(weight, "weight")
        C.check_class_weight(weight, num_classes)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    return weight, C.check_integer_index(ignore_index, "ignore_index")


def _class_loss(
    loss: Callable[..., Any],
    input: Any,
    target: Any,
    weight: Any,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    allow_probabilities: bool,
) -> Array:
    input, target = C.as_array(input, "input"), C.as_array(target, "target")
    num_classes = _check_class_input(input, target, allow_probabilities=allow_probabilities)
    weight, ignore_index = check_class_options(weight, num_classes, ignore_index, label_smoothing)
    graph = class_graph(loss, reduction, weight is not None, label_smoothing > 0)
    shared = () if weight is None else (weight,)
    out, ok = run_classwise(graph, input, target, *shared, index=ignore_index, alpha=float(label_smoothing))
    gather = loss is _nll_loss and T.is_index(target)  # one score a row: no large intermediate
    C.raise_unless(ok, out, lambda: C.class_index_error(target, num_classes, ignore_index), input, keeps_little=gather)
    return out


def cross_entropy(
    input: Array,
    target: Array,
    weight: Array | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Array:
    """Cross-entropy of logits with class indices or probabilities; see :class:`lossfn.nn.CrossEntropyLoss`."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    return _class_loss(
        _cross_entropy, input, target, weight, ignore_index, reduction, label_smoothing, True
    )


def nll_loss(
    input: Array,
    target: Array,
    weight: Array | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    """Negative log-likelihood of log-probabilities; see :class:`lossfn.nn.NLLLoss`."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    return _class_loss(_nll_loss, input, target, weight, ignore_index, reduction, 0.0, False)


def _binary(
    loss: Callable[..., Any],
    input: Any,
    target: Any,
    weight: Any,
    reduction: str,
    *extra: Array,
    check: Callable[..., Array] | None = None,
) -> Any:
    """Run a binary loss of ``(input, target, *extra)`` with BCE's element-wise ``weight``."""
    if weight is None:
        return run_elementwise(reduce_graph(loss, reduction, check=check, elementwise=True), input, target, *extra)
    weight = C.check_broadcasts(C.as_array(weight, "weight"), input.shape, "weight", "input")
    graph = reduce_graph(loss, reduction, "rescale", check=check, elementwise=True)
    return run_elementwise(graph, input, target, *extra, weight)


def _probabilities(input: Array, target: Array, *weight: Array) -> Array:
    return C.in_unit_interval(input, target)  # one reduction; which one failed is found on failure


def binary_cross_entropy(
    input: Array,
    target: Array,
    weight: Array | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    """Binary cross-entropy of probabilities; see :class:`lossfn.nn.BCELoss`."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    input, target = C.input_and_target(input, target)
    C.check_floating(target, "target")
    C.check_same_shape(input, target, "input", "target")
    out, ok = _binary(_bce, input, target, weight, reduction, check=_probabilities)

    def error() -> Exception:  # which array failed, found on failure only
        return C.unit_interval_error("input" if not C.in_unit_interval(input).item() else "target")

    C.raise_unless(ok, out, error, input, keeps_little=True)  # its gradient is _bce's custom vjp
    return out


def binary_cross_entropy_with_logits(
    input: Array,
    target: Array,
    weight: Array | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: Array | None = None,
) -> Array:
    """Binary cross-entropy of logits; see :class:`lossfn.nn.BCEWithLogitsLoss`."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    input, target = C.input_and_target(input, target)
    C.check_floating(target, "target")
    C.check_same_shape(input, target, "input", "target")
    extra = ()
    if pos_weight is not None:
        pos_weight = C.as_array(pos_weight, "pos_weight")
        extra = (C.check_broadcasts(pos_weight, input.shape, "pos_weight", "input"),)
    return _binary(_bce_logits, input, target, weight, reduction, *extra)
