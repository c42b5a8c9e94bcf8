"""PyTorch 2.13's ``linear_cross_entropy``: cross-entropy of a linear layer's logits.

``options=None`` is PyTorch's reference path, ``cross_entropy(linear(input, W, b), target)``,
which forms the logits. ``options`` (ours, :class:`LinearCrossEntropyOptions`, or PyTorch's
object of the same name) selects the tiled pass of :func:`lossfn.linear_cross_entropy`, which
never forms them: the same composition of transforms as :func:`cross_entropy`.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import mlx.core as mx

import transforms as T
from transforms._precision import result_dtype, upcast

from .. import _checks as C
from .._classification import linear_cross_entropy as _linear_cross_entropy
from .._linear_ce import default_tile
from ._classification import check_class_options, cross_entropy
from ._graphs import class_graph

Array = mx.array
_POLICIES = ("auto", "accurate", "balanced", "compact")


@dataclasses.dataclass(frozen=True)
class LinearCrossEntropyOptions:
    """How the tiled pass cuts the ``(N, C)`` logits; PyTorch's fields, and ``tile`` of our own.

    - ``tile``: logits per tile (ours). Default: 2**18 on the CPU, 2**24 on a GPU.
    - ``batch_chunk_size``: tokens per tile, each tile then holding whole rows of the
      vocabulary (``tile = batch_chunk_size * C``), PyTorch's meaning.
    - ``chunking_method``: ``'auto'`` is our default tile; ``'aspect_ratio[:k]'`` sizes the
      tokens per tile as PyTorch does, so a tile's logits match the input's size, divided by k.
    - ``acc_policy``, ``acc_dtype``, ``allow_retain_graph``: accepted for compatibility. Every
      tile computes in float32 (PyTorch's ``'accurate'``), and MLX's functional gradients need
      no retained graph.

    Give at most one of ``tile``, ``batch_chunk_size`` and an ``'aspect_ratio'`` method.
    """

    allow_retain_graph: bool = False
    batch_chunk_size: int | None = None
    chunking_method: str | None = "auto"
    acc_policy: str = "auto"
    acc_dtype: Any = None
    tile: int | None = None

    def __post_init__(self) -> None:
        if self.acc_policy not in _POLICIES:
            raise ValueError(f"acc_policy must be one of {_POLICIES}, got {self.acc_policy!r}")
        _aspect_factor(self.chunking_method)
        for name in ("batch_chunk_size", "tile"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")


def _aspect_factor(method: str | None) -> int | None:
    """``k`` of ``'aspect_ratio:k'`` (1 without ``:k``); None for ``'auto'`` or None."""
    if method is None or method == "auto":
        return None
    name, sep, factor = method.partition(":")
    if name != "aspect_ratio" or (sep and not (factor.isdigit() and int(factor) > 0)):
        raise ValueError(f"chunking_method must be 'auto', 'aspect_ratio', 'aspect_ratio:k' (k >= 1) or None, got {method!r}")
    return int(factor) if sep else 1


def tile_of(options: Any, tokens: int, features: int, classes: int) -> int:
    """Logits per tile for ``options`` (ours or PyTorch's, read by field name)."""
    tile = getattr(options, "tile", None)
    rows = getattr(options, "batch_chunk_size", None)
    factor = _aspect_factor(getattr(options, "chunking_method", "auto"))
    if tile is not None:
        if rows is not None or factor is not None:
            raise ValueError(f"options: give tile or a token count (batch_chunk_size, chunking_method), not both; got {options!r}")
        return tile
    if factor is not None:
        # PyTorch's rule: next_pow2(ceil(N / ceil(C / D))) tokens, divided by k.
        target = -(-tokens // -(-classes // features))
        aspect = max(1, min((1 << (target - 1).bit_length()) // factor, tokens))
        if rows is not None and min(rows, tokens) != aspect:
            raise ValueError(
                f"options: batch_chunk_size (={rows}) and chunking_method ({options.chunking_method!r}) give different "
                f"chunk sizes ({rows} vs {aspect}); pass only one"
            )
        rows = aspect
    return max(1, rows) * classes if rows is not None else default_tile()


def _check_shapes(input: Array, W: Array, target: Array, bias: Array | None) -> tuple[int, tuple[int, ...]]:
    """PyTorch's shape checks (its RuntimeErrors as ValueErrors); the classes and the K-dim ``out_features``."""
    C.check_floating(input, "input")
    C.check_floating(W, "linear_weight")
    if input.ndim not in (1, 2):
        raise ValueError(f"input must have shape (in_features,) or (N, in_features): expected dimensionality 1 or 2, got {input.ndim}")
    if W.ndim < 2:
        raise ValueError(f"linear_weight must have shape (C, [d1, ..., dk,] in_features): expected dimensionality at least 2, got {W.ndim}")
    if input.shape[-1] != W.shape[-1]:
        raise ValueError(
            "expected equal input and linear_weight last dimensions (in_features), "
            f"got {input.shape[-1]} and {W.shape[-1]}, respectively"
        )
    classes, out = W.shape[0], tuple(W.shape[1:-1])
    if bias is not None and tuple(bias.shape) != (classes, *out):
        raise ValueError(f"expected linear_bias shape {(classes, *out)}, got {C.shape_str(bias)}")
    if out and input.ndim == 1:
        raise ValueError(
            f"K-dimensional loss defined by linear_weight shape {C.shape_str(W)} requires batched input, "
            f"(N, {input.shape[-1]}), got unbatched input with shape {C.shape_str(input)}"
        )
    return classes, out


def linear_cross_entropy(
    input: Array,
    linear_weight: Array,
    target: Array,
    *,
    linear_bias: Array | None = None,
    weight: Array | None = None,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options: LinearCrossEntropyOptions | Any | None = None,
) -> Array:
    """``cross_entropy(input @ linear_weight.T + linear_bias, target, ...)``; see :class:`lossfn.nn.LinearCrossEntropyLoss`."""
    input, W, target = C.as_array(input, "input"), C.as_array(linear_weight, "linear_weight"), C.as_array(target, "target")
    bias = None if linear_bias is None else C.as_array(linear_bias, "linear_bias")
    classes, out = _check_shapes(input, W, target, bias)
    logits_shape = (*input.shape[:-1], classes, *out)
    probabilities = tuple(target.shape) == logits_shape
    # -1 for the batch: the same graph holds under mx.compile(..., shapeless=True)
    logits_layout = (-1, classes, *out) if input.ndim == 2 else logits_shape
    if probabilities and ignore_index is not None:
        raise ValueError("ignore_index cannot be specified when target contains probabilities")
    ignore_index = -100 if ignore_index is None else ignore_index
    if options is not None and out:
        warnings.warn(
            f"linear_cross_entropy: options ignored; the tiled pass needs out_features == (), got {out}",
            stacklevel=2,
        )
    if options is None or out:
        # Half precision: the logits in float32 and the loss rounded once (PyTorch rounds its logits).
        dtype = result_dtype([input, W, bias, weight])
        h, W, bias = upcast([input, W, None if bias is None else bias.reshape(-1)])
        logits = h @ W.reshape(-1, W.shape[-1]).T
        logits = (logits if bias is None else logits + bias).reshape(logits_layout)
        loss = cross_entropy(logits, target, weight, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
        return loss.astype(dtype)
    return _tiled(input, W, target, bias, weight, reduction, ignore_index, label_smoothing, options, classes)


def _tiled(
    input: Array, W: Array, target: Array, bias: Array | None, weight: Any, reduction: str,
    ignore_index: int, label_smoothing: float, options: Any, classes: int,
) -> Array:
    """The tiled pass, with :func:`cross_entropy`'s checks and layout (rows of tokens)."""
    reduction = C.reduction_of(None, None, reduction)
    index_shape = tuple(input.shape[:-1])
    if tuple(target.shape) == (*index_shape, classes):
        C.check_floating(target, "target (class probabilities)")
    elif tuple(target.shape) == index_shape:
        C.check_integer(target, "target")
    else:
        raise ValueError(
            f"target must have shape {index_shape} (class indices) or {(*index_shape, classes)} (class probabilities) "
            f"for input of shape {C.shape_str(input)} and linear_weight of shape {C.shape_str(W)}; got {C.shape_str(target)}"
        )
    weight, ignore_index = check_class_options(weight, classes, ignore_index, label_smoothing)
    unbatched = input.ndim == 1
    h, y = (input[None], target[None]) if unbatched else (input, target)
    tile = tile_of(options, h.shape[0], h.shape[1], classes)
    graph = class_graph(_linear_cross_entropy, reduction, weight is not None, label_smoothing > 0, static=None)
    args = (h, W, y) + (() if bias is None else (bias,)) + (() if weight is None else (weight,))
    if T.is_index(target) and C.holds(C.indices_valid(target, classes, ignore_index)) is False:
        raise C.class_index_error(target, classes, ignore_index)
    # Checked on its own, not with the loss as cross_entropy is: under mx.grad an evaluation of
    # the loss keeps every intermediate array of its graph, each tile's logits included.
    loss, _ = graph(*args, index=ignore_index, alpha=float(label_smoothing), tile=tile)
    return loss.reshape(()) if unbatched and loss.ndim else loss


