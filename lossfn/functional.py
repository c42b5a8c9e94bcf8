"""Drop-in counterparts of ``torch.nn.functional``'s losses, taking ``mx.array``.

Same names, positional order, keywords and defaults as PyTorch 2.13, and the same output
shapes for batched, unbatched and K-dimensional inputs. Each one checks its arguments, lays
the batch out as one example per row, and calls a compiled *composition* of a per-example
loss from :mod:`lossfn` with :mod:`transforms`; there is no loss maths in this module.
The full specification of each loss is on its class in :mod:`lossfn.nn`.

Compiled graphs are cached per static configuration (the reduction, which transforms are
present); numeric hyper-parameters enter them as arrays, so new data, new weights or a new
margin of the same shapes never retrace.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import mlx.core as mx

import transforms as T

from . import _checks as C
from ._classification import binary_cross_entropy as _bce
from ._classification import binary_cross_entropy_with_logits as _bce_logits
from ._classification import cross_entropy as _cross_entropy
from ._classification import nll_loss as _nll_loss
from ._regression import huber_loss as _huber
from ._regression import l1_loss as _l1
from ._regression import mse_loss as _mse
from ._regression import smooth_l1_loss as _smooth_l1

Array = mx.array


# --- graphs: one compiled composition per static configuration ---------------------------


@functools.cache
def elementwise_graph(loss: Callable[..., Any], reduction: str, scaling: str | None = None) -> Any:
    """``reduce(loss)``, or ``reduce(rescaled(loss))`` with ``scaling`` 'rescale' | 'normalize'."""

    def composed(*args: Array, **hyper: Any) -> Array:
        f = loss if scaling is None else T.rescaled(loss, normalize=scaling == "normalize")
        return T.reduce(f, reduction)(*args, **hyper)

    return T.compiled(composed)


@functools.cache
def class_graph(loss: Callable[..., Any], reduction: str, weighted: bool, smoothed: bool) -> Any:
    """PyTorch's class-index loss: ``reduce(ignore_index(smooth_labels(weighted(loss))))``."""

    def composed(x: Array, y: Array, *weight: Array, index: Array, alpha: Array) -> Array:
        f = T.weighted(loss) if weighted else loss
        f = T.smooth_labels(f, alpha) if smoothed else f
        return T.reduce(T.ignore_index(f, index), reduction)(x, y, *weight)

    return T.compiled(composed)


# --- layouts: how a PyTorch batch becomes one example per row ------------------------------


def _elementwise(graph: Any, input: Array, *args: Array, **hyper: Any) -> Array:
    """Run an element-wise graph; a 0-d input is a batch of one, returned 0-d."""
    if input.ndim == 0:
        out = graph(input.reshape(1), *(a.reshape(1) for a in args), **hyper)
        return out.reshape(()) if out.ndim else out
    return graph(input, *args, **hyper)


def _classwise(graph: Any, input: Array, target: Array, *shared: Array, **hyper: Any) -> Array:
    """Run a class graph on ``(N, C, d1..dk)`` or ``(C,)`` scores, one row per position.

    The class axis moves last and the positions flatten into rows; an index target
    ``(N, d1..dk)`` flattens alike and a probability target moves like the input.
    'none' comes back in the target's layout: ``(N, d1..dk)``, or ``()`` unbatched.
    """
    num_classes = input.shape[0] if input.ndim == 1 else input.shape[1]
    positions = (input.shape[:1] + input.shape[2:]) if input.ndim > 1 else ()
    rows = mx.moveaxis(input, 1, -1).reshape(-1, num_classes) if input.ndim > 1 else input[None]
    if T.is_index(target):
        target_rows = target.reshape(-1)
    else:
        target_rows = mx.moveaxis(target, 1, -1).reshape(-1, num_classes) if target.ndim > 1 else target[None]
    out = graph(rows, target_rows, *shared, **hyper)
    return out.reshape(positions) if out.ndim else out


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
        raise ValueError(
            f"target must have shape {expected} for input of shape {C.shape_str(input)}; "
            f"got {C.shape_str(target)}"
        )
    C.check_integer(target, "target")
    return num_classes


# --- regression ---------------------------------------------------------------------------


def _regression(
    loss: Callable[..., Any],
    input: Any,
    target: Any,
    reduction: str,
    weight: Any,
    scaling: str,
    **hyper: Any,
) -> Array:
    input, target = C.as_array(input, "input"), C.as_array(target, "target")
    C.check_floating(input, "input")
    input, target = C.broadcast_pair(input, target)
    if weight is None:
        return _elementwise(elementwise_graph(loss, reduction), input, target, **hyper)
    weight = C.as_array(weight, "weight")
    if weight.shape != input.shape:
        raise ValueError(
            f"weight must have the shape of input: input has shape {C.shape_str(input)}, "
            f"weight has shape {C.shape_str(weight)}"
        )
    return _elementwise(elementwise_graph(loss, reduction, scaling), input, target, weight, **hyper)


def l1_loss(
    input: Array,
    target: Array,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: Array | None = None,
) -> Array:
    """Mean absolute error; see :class:`lossfn.nn.L1Loss`. With ``weight``, 'mean' is ``sum(w l) / sum(w)``."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    return _regression(_l1, input, target, reduction, weight, "normalize")


def mse_loss(
    input: Array,
    target: Array,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: Array | None = None,
) -> Array:
    """Mean squared error; see :class:`lossfn.nn.MSELoss`. With ``weight``, 'mean' is ``sum(w l) / sum(w)``."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    return _regression(_mse, input, target, reduction, weight, "normalize")


def smooth_l1_loss(
    input: Array,
    target: Array,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    beta: float = 1.0,
) -> Array:
    """Smooth L1 loss; see :class:`lossfn.nn.SmoothL1Loss`."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss does not support negative values for beta, got beta={beta}")
    return _regression(_smooth_l1, input, target, reduction, None, "rescale", beta=float(beta))


def huber_loss(
    input: Array,
    target: Array,
    reduction: str = "mean",
    delta: float = 1.0,
    weight: Array | None = None,
) -> Array:
    """Huber loss; see :class:`lossfn.nn.HuberLoss`. With ``weight``, 'mean' is ``mean(w l)``."""
    reduction = C.reduction_of(None, None, reduction)
    if delta <= 0:
        raise ValueError(f"huber_loss does not support non-positive values for delta, got delta={delta}")
    return _regression(_huber, input, target, reduction, weight, "rescale", delta=float(delta))


# --- classification -----------------------------------------------------------------------


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
    if weight is not None:
        weight = C.as_array(weight, "weight")
        C.check_class_weight(weight, num_classes)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    if T.is_index(target):
        C.check_class_indices(target, num_classes, ignore_index)
    graph = class_graph(loss, reduction, weight is not None, label_smoothing > 0)
    shared = () if weight is None else (weight,)
    return _classwise(graph, input, target, *shared, index=int(ignore_index), alpha=float(label_smoothing))


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
) -> Array:
    """Run a binary loss of ``(input, target, *extra)`` with BCE's element-wise ``weight``."""
    if weight is None:
        return _elementwise(elementwise_graph(loss, reduction), input, target, *extra)
    weight = C.broadcast_to(C.as_array(weight, "weight"), input.shape, "weight", "input")
    return _elementwise(elementwise_graph(loss, reduction, "rescale"), input, target, *extra, weight)


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
    input, target = C.as_array(input, "input"), C.as_array(target, "target")
    C.check_floating(input, "input")
    C.check_floating(target, "target")
    C.check_same_shape(input, target, "input", "target")
    C.check_in_unit_interval(input, "input")
    C.check_in_unit_interval(target, "target")
    return _binary(_bce, input, target, weight, reduction)


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
    input, target = C.as_array(input, "input"), C.as_array(target, "target")
    C.check_floating(input, "input")
    C.check_floating(target, "target")
    C.check_same_shape(input, target, "input", "target")
    extra = ()
    if pos_weight is not None:
        pos_weight = C.as_array(pos_weight, "pos_weight")
        extra = (C.broadcast_to(pos_weight, input.shape, "pos_weight", "input"),)
    return _binary(_bce_logits, input, target, weight, reduction, *extra)
