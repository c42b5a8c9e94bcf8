"""Argument checks for the PyTorch-compatible layer: clear errors before any computation."""

from __future__ import annotations

import functools
import math
import operator
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import mlx.core as mx
import numpy as np

from transforms import REDUCTIONS
from transforms._tracing import SHAPE_DEPENDENT_ABOVE, transformation


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
    if not mx.issubdtype(x.dtype, mx.floating):
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
    """``broadcast_first(input, target)``, warning as PyTorch does when their sizes differ."""
    if input.shape != target.shape:
        warnings.warn(
            f"Using a target size ({shape_str(target)}) that is different to the input size "
            f"({shape_str(input)}). This will likely lead to incorrect results due to "
            "broadcasting. Please ensure they have the same size.",
            UserWarning,
            stacklevel=4,
        )
        try:
            mx.broadcast_shapes(input.shape, target.shape)
        except ValueError as err:
            raise ValueError(
                f"input of shape {shape_str(input)} and target of shape {shape_str(target)} "
                "cannot be broadcast together"
            ) from err
    input, target = broadcast_first(input=input, target=target)
    return input, target


def broadcast_to(x: mx.array, shape: tuple[int, ...], name: str, to: str) -> mx.array:
    """``x`` broadcast to ``shape``, or a ValueError naming ``x`` and ``to``."""
    check_broadcasts(x, shape, name, to)
    return x if x.shape == tuple(shape) else mx.broadcast_to(x, shape)


def check_broadcasts(x: mx.array, shape: tuple[int, ...], name: str, to: str) -> mx.array:
    """``x`` as it is, or a ValueError naming ``x`` and ``to`` if it does not broadcast to ``shape``.

    For an element-wise graph, which broadcasts its arguments itself (``_graphs``).
    """
    try:
        fits = tuple(mx.broadcast_shapes(x.shape, tuple(shape))) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{name} of shape {shape_str(x)} cannot be broadcast to the shape of {to}, "
            f"{tuple(shape)}"
        )
    return x


def evaluable(*arrays: mx.array) -> bool:
    """Whether the arrays can be evaluated here (free where they are already): not where
    ``mx.compile`` or ``mx.vmap`` traces them (see :func:`holds`)."""
    try:
        mx.eval(*arrays)
    except ValueError:
        return False
    return True


def readable(*arrays: mx.array) -> list[np.ndarray] | None:
    """The arrays as NumPy, from one evaluation, or None where they cannot be evaluated."""
    return [np.asarray(a) for a in arrays] if evaluable(*arrays) else None


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


def raise_unless(
    ok: mx.array, out: Any, error: Callable[[], Exception], input: mx.array | None = None, *, keeps_little: bool = False
) -> None:
    """Raise ``error()`` unless ``ok``, a check computed in the loss's own graph, holds.

    ``out`` is evaluated with it: one evaluation gives the loss and the verdict, where a check
    of its own would cost a second one. A reduced (0-d) ``out`` is evaluated first, and ``ok``
    only if the loss is ``nan``: the graph makes every bad example's loss ``nan``, so a number
    proves the data valid without the check's pass over it (``gaussian_nll_loss`` at 4M:
    22 -> 18 ms forward). Under ``mx.grad`` (found by a probe of a large
    ``input``) the graph runs inlined and ``ok`` alone is evaluated: its own operations, not
    the forward pass ahead of the backward, which would keep every intermediate alive
    (``gaussian_nll_loss`` at 4M: 1.25x the forward+backward time). A loss whose forward
    keeps no large intermediate (``keeps_little``: a gradient that is a custom vjp of its
    inputs alone, a gather of one score a row) has its reduced value read first under
    ``mx.grad`` too (forward+backward, against evaluating the check alone:
    ``binary_cross_entropy`` at 4M 0.87-0.89x, measured in one session; ``nll_loss`` at
    (8192, 1000) 3.1 ms against 3.9, MLX's 3.0). Skipped where the arrays
    cannot be read (traced): the graph's in-graph validation then makes the bad examples'
    losses ``nan``.
    """
    under_grad = (
        not keeps_little and input is not None and input.size >= SHAPE_DEPENDENT_ABOVE and transformation([input]) == "grad"
    )
    reduced = not under_grad and isinstance(out, mx.array) and out.ndim == 0
    try:
        if reduced:
            mx.eval(out)
            if not math.isnan(out.item()):
                return  # bad data makes the loss nan (the in-graph validation): a number needs no check
        mx.eval(ok) if under_grad or reduced else mx.eval(out, ok)
    except ValueError:
        return
    if not ok.item():
        raise error()


# Conditions, traced into a loss's graph: each returns one boolean.


def none_hold(bad: mx.array) -> mx.array:
    """No element of ``bad`` is true: a count of them, 0. MLX sums booleans 2x faster than it
    reduces them with ``all`` or ``any`` (2.0 against 4.3 ms at 4M, eagerly and compiled)."""
    return mx.sum(bad) == 0


def indices_valid(target: mx.array, num_classes: int, ignore_index: Any = None) -> mx.array:
    """Every class index lies in ``[0, num_classes)`` or is the ``ignore_index``."""
    outside = (target < 0) | (target >= num_classes)
    return none_hold(outside if ignore_index is None else outside & (target != ignore_index))


def in_unit_interval(*arrays: mx.array) -> mx.array:
    """Every element of every array lies in ``[0, 1]`` (one reduction of same-shaped arrays).

    It keeps ``all``, under which ``nan`` fails as the condition reads: a count of the negation
    saves little (3.8 against 4.3 ms at 4M).
    """
    inside = [(x >= 0) & (x <= 1) for x in arrays]
    return mx.all(functools.reduce(operator.and_, inside))


def padded_indices_valid(target: mx.array, num_classes: int, padding: int = -1) -> mx.array:
    return none_hold(((target < 0) | (target >= num_classes)) & (target != padding))


# Errors, built from the data once a condition failed.


def _first(values: mx.array, bad: mx.array) -> Any:
    return np.asarray(values)[np.asarray(bad)].reshape(-1)[0]


def class_index_error(target: mx.array, num_classes: int, ignore_index: int | None) -> Exception:
    valid = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        valid = valid | (target == ignore_index)
    return IndexError(
        f"target holds class index {_first(target, ~valid)}, outside [0, {num_classes})"
        + (f" and not the ignore_index {ignore_index}" if ignore_index is not None else "")
    )


def unit_interval_error(name: str) -> Exception:
    return ValueError(f"all elements of {name} should be between 0 and 1")


def padded_index_error(target: mx.array, num_classes: int, padding: int = -1) -> Exception:
    """Every entry is checked, also those after the first ``padding`` (as PyTorch does)."""
    valid = ((target >= 0) & (target < num_classes)) | (target == padding)
    return IndexError(
        f"target holds {_first(target, ~valid)}, neither a class index in [0, {num_classes}) nor the padding {padding}"
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


def check_integer_index(value: Any, name: str) -> int:
    """``value`` as a Python int, or a TypeError (PyTorch refuses a float ``ignore_index``)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    return int(value)


def broadcast_arrays(**arrays: mx.array) -> list[mx.array]:
    """The named arrays broadcast to their common shape (silently, as PyTorch's element-wise ops),
    or a ValueError naming each array and its shape."""
    shape = common_shape(**arrays)
    return [x if x.shape == shape else mx.broadcast_to(x, shape) for x in arrays.values()]


def broadcast_first(**arrays: mx.array) -> list[mx.array]:
    """``broadcast_arrays`` for an element-wise graph: the first array broadcast to the common
    shape, the others as they are (the graph broadcasts them, see ``_graphs``)."""
    shape = common_shape(**arrays)
    first, *rest = arrays.values()
    return [first if first.shape == shape else mx.broadcast_to(first, shape), *rest]


def common_shape(**arrays: mx.array) -> tuple[int, ...]:
    """The shape the named arrays broadcast to, or a ValueError naming each array and its shape."""
    try:
        return tuple(mx.broadcast_shapes(*(x.shape for x in arrays.values())))
    except ValueError as err:
        seen = ", ".join(f"{name} of shape {shape_str(x)}" for name, x in arrays.items())
        raise ValueError(f"{seen} cannot be broadcast together") from err
