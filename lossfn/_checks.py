"""Argument checks for the PyTorch-compatible layer: clear errors before any computation."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import mlx.core as mx
import numpy as np

from transforms import REDUCTIONS


def as_array(value: Any, name: str) -> mx.array:
    """``value`` as an ``mx.array``; a TypeError naming ``name`` if it cannot be one."""
    if isinstance(value, mx.array):
        return value
    try:
        return mx.array(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an mx.array, got {type(value).__name__}") from err


def input_and_target(input: Any, target: Any) -> tuple[mx.array, mx.array]:
    """``input`` and ``target`` as arrays; a TypeError unless ``input`` is floating point."""
    input, target = as_array(input, "input"), as_array(target, "target")
    check_floating(input, "input")
    return input, target


def reduction_of(
    size_average: bool | None,
    reduce: bool | None,
    reduction: str,
    allowed: Iterable[str] = ("none", "mean", "sum"),
) -> str:
    """The reduction to apply, honouring PyTorch's deprecated ``size_average``/``reduce``."""
    if size_average is not None or reduce is not None:
        keep_dims = reduce is False
        reduction = "none" if keep_dims else ("mean" if size_average is not False else "sum")
        warnings.warn(
            "size_average and reduce args will be deprecated, please use "
            f"reduction='{reduction}' instead.",
            UserWarning,
            stacklevel=3,
        )
    allowed = tuple(allowed)
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")
    assert reduction in REDUCTIONS
    return reduction


def shape_str(x: mx.array) -> str:
    return str(tuple(x.shape))


def check_floating(x: mx.array, name: str) -> None:
    if not mx.issubdtype(x.dtype, mx.inexact):
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")


def check_integer(x: mx.array, name: str) -> None:
    if not mx.issubdtype(x.dtype, mx.integer):
        raise TypeError(
            f"{name} must be an integer array of class indices, got dtype {x.dtype} "
            f"with shape {shape_str(x)}"
        )


def check_same_shape(a: mx.array, b: mx.array, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_b} must have the shape of {name_a}: {name_a} has shape {shape_str(a)}, "
            f"{name_b} has shape {shape_str(b)}"
        )


def broadcast_pair(input: mx.array, target: mx.array) -> tuple[mx.array, mx.array]:
    """Broadcast ``input`` and ``target``, warning as PyTorch does when their sizes differ."""
    if input.shape != target.shape:
        warnings.warn(
            f"Using a target size ({shape_str(target)}) that is different to the input size "
            f"({shape_str(input)}). This will likely lead to incorrect results due to "
            "broadcasting. Please ensure they have the same size.",
            UserWarning,
            stacklevel=4,
        )
        try:
            shape = mx.broadcast_shapes(input.shape, target.shape)
        except ValueError as err:
            raise ValueError(
                f"input of shape {shape_str(input)} and target of shape {shape_str(target)} "
                "cannot be broadcast together"
            ) from err
        input, target = mx.broadcast_to(input, shape), mx.broadcast_to(target, shape)
    return input, target


def broadcast_to(x: mx.array, shape: tuple[int, ...], name: str, to: str) -> mx.array:
    """``x`` broadcast to ``shape``, or a ValueError naming ``x`` and ``to``."""
    try:
        return mx.broadcast_to(x, shape)
    except ValueError as err:
        raise ValueError(
            f"{name} of shape {shape_str(x)} cannot be broadcast to the shape of {to}, "
            f"{tuple(shape)}"
        ) from err


def holds(condition: mx.array) -> bool | None:
    """Whether every element of ``condition`` is true; None if it cannot be read here.

    Value checks (an index range, probabilities in [0, 1]) need the data. Inside
    ``mx.compile``, ``mx.vmap`` or ``mx.grad`` the arrays are traced and cannot be read, so
    those checks are skipped there; shape and dtype checks always run.
    """
    try:
        return bool(mx.all(condition).item())
    except ValueError:
        return None


# Data checks run compiled: one fused pass over the data, where eager MLX makes one pass and
# one temporary per comparison (2x faster). Bounds enter as arrays: new bounds, same kernel.
_valid_indices = mx.compile(lambda t, n, i: ((t >= 0) & (t < n)) | (t == i))
_all_valid_indices = mx.compile(lambda t, n, i: mx.all(_valid_indices(t, n, i)))
_all_in_unit_interval = mx.compile(lambda x: mx.all((x >= 0) & (x <= 1)))


def check_class_indices(target: mx.array, num_classes: int, ignore_index: int | None) -> None:
    """IndexError if a class index is outside ``[0, num_classes)`` and not ``ignore_index``."""
    # Without an ignore_index, 0 stands in for it: it is a valid class anyway.
    bounds = mx.array(num_classes), mx.array(0 if ignore_index is None else ignore_index)
    if holds(_all_valid_indices(target, *bounds)) is False:
        valid = _valid_indices(target, *bounds)
        first = np.asarray(target)[~np.asarray(valid)].reshape(-1)[0]
        raise IndexError(
            f"target holds class index {first}, outside [0, {num_classes})"
            + (f" and not the ignore_index {ignore_index}" if ignore_index is not None else "")
        )


def check_class_weight(weight: mx.array | None, num_classes: int, name: str = "weight") -> None:
    if weight is None:
        return
    check_floating(weight, name)
    if weight.shape != (num_classes,):
        raise ValueError(
            f"{name} must have one entry per class, shape ({num_classes},); got shape "
            f"{shape_str(weight)}"
        )


def check_in_unit_interval(x: mx.array, name: str) -> None:
    if holds(_all_in_unit_interval(x)) is False:
        raise ValueError(f"all elements of {name} should be between 0 and 1")


def check_padded_class_indices(target: mx.array, num_classes: int, padding: int = -1) -> None:
    """IndexError if an entry of a ``padding``-padded list of class indices is outside ``[0, num_classes)``.

    Every entry is checked, also those after the first ``padding`` (as PyTorch does).
    """
    valid = ((target >= 0) & (target < num_classes)) | (target == padding)
    if holds(valid) is False:
        first = np.asarray(target)[~np.asarray(valid)].reshape(-1)[0]
        raise IndexError(
            f"target holds {first}, neither a class index in [0, {num_classes}) nor the padding {padding}"
        )


def broadcast_arrays(**arrays: mx.array) -> list[mx.array]:
    """The named arrays broadcast to their common shape (silently, as PyTorch's element-wise ops),
    or a ValueError naming each array and its shape."""
    try:
        shape = mx.broadcast_shapes(*(x.shape for x in arrays.values()))
    except ValueError as err:
        seen = ", ".join(f"{name} of shape {shape_str(x)}" for name, x in arrays.items())
        raise ValueError(f"{seen} cannot be broadcast together") from err
    return [x if x.shape == shape else mx.broadcast_to(x, shape) for x in arrays.values()]
