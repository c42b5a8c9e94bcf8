"""PyTorch's sequence loss: connectionist temporal classification (CTC)."""

from __future__ import annotations

import warnings
from typing import Any

import mlx.core as mx
import numpy as np

import transforms as T

from .. import _checks as C
from .._ctc_scan import CompileThroughWarning, ctc_batch

Array = mx.array


def _warn_if_compiled_through(log_probs: Array) -> None:
    """Warn where a user's ``mx.compile`` traces the loss on the CPU (see :func:`ctc_loss`):
    where ``log_probs`` cannot be evaluated (under ``mx.grad`` they can, at no cost)."""
    if mx.default_device().type == mx.DeviceType.cpu and not C.evaluable(log_probs):
        warnings.warn(
            f"ctc_loss is traced by mx.compile: its scan of T = {log_probs.shape[0]} frames is "
            "unrolled into the compiled graph, whose first call compiles about 35 kernels with "
            "g++ (a GRU + CTC step at T = 40: about 30 s with a cold kernel cache). Compile around "
            "ctc_loss, not through it: step = transforms.value_and_grad_around(model, loss) "
            "compiles the model's forward and backward and runs the loss between them (that "
            "step's first call: about 3 s, and as fast afterwards). Filter "
            "lossfn.CompileThroughWarning to compile through it on purpose.",
            CompileThroughWarning,
            stacklevel=3,
        )


def _lengths(value: Any, name: str, batch_size: int) -> Array:
    """``value`` (array, list, tuple or int) as ``(N,)`` integers, one entry per example."""
    lengths = C.as_array(value, name)
    if not mx.issubdtype(lengths.dtype, mx.integer):
        raise TypeError(f"{name} must be integral, got dtype {lengths.dtype}")
    if lengths.size != batch_size:
        raise ValueError(
            f"{name} must have one entry per example (batch size {batch_size}), got shape "
            f"{C.shape_str(lengths)}"
        )
    return lengths.reshape(batch_size)


def _check_lengths(targets: Array, il: np.ndarray, tl: np.ndarray, num_frames: int) -> None:
    """Input lengths in ``[0, T]``; target lengths at least 0, and at most the padded width
    (padded targets) or summing to the number of labels (concatenated ones)."""
    # Minima and maxima: a microsecond each on a batch's lengths, where np.all of a mask costs three.
    if il.min(initial=0) < 0 or il.max(initial=0) > num_frames:
        raise ValueError(f"input_lengths must be in [0, T] = [0, {num_frames}], got {il.tolist()}")
    if tl.min(initial=0) < 0:
        raise ValueError(f"target_lengths must not be negative, got {tl.tolist()}")
    if targets.ndim == 2 and tl.max(initial=0) > targets.shape[1]:
        raise ValueError(
            f"target_lengths must be at most the width of the padded targets "
            f"{C.shape_str(targets)}, got {tl.tolist()}"
        )
    if targets.ndim == 1 and tl.sum() != targets.size:
        raise ValueError(
            f"concatenated targets must hold sum(target_lengths) = {tl.sum()} labels, "
            f"got shape {C.shape_str(targets)}"
        )


def _padded(targets: Array, target_lengths: Array, batch_size: int, width: int | None) -> Array:
    """Targets as ``(N, S)``: padded ``(N, S)`` as they are, concatenated ``(sum(lengths),)``
    split up to the longest target (``width``), or to every label when traced (None)."""
    if targets.ndim == 2:
        return targets
    width = targets.size if width is None else width
    starts = mx.cumsum(target_lengths) - target_lengths
    index = mx.clip(starts[:, None] + mx.arange(width)[None, :], 0, max(targets.size - 1, 0))
    return targets[index] if targets.size else mx.zeros((batch_size, width), dtype=targets.dtype)


def _check_labels(targets: np.ndarray, tl: np.ndarray, num_classes: int, blank: int) -> None:
    """The labels within the target lengths lie in ``[0, C)`` and are not the blank."""
    used = targets if targets.ndim == 1 else targets[np.arange(targets.shape[1])[None, :] < tl[:, None]]
    if used.min(initial=0) < 0 or used.max(initial=0) >= num_classes:
        outside = (used < 0) | (used >= num_classes)
        raise IndexError(f"targets holds label {used[outside][0]}, outside [0, {num_classes})")
    if (used == blank).any():
        raise ValueError(f"targets must not contain the blank label {blank}")


def ctc_loss(
    log_probs: Array,
    targets: Array,
    input_lengths: Any,
    target_lengths: Any,
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
) -> Array:
    """Connectionist temporal classification loss; see :class:`lossfn.nn.CTCLoss`.

    The per-example losses come from :func:`lossfn.ctc_loss`'s batched kernel (what
    ``transforms.reduce`` runs under its vmap, without the trace); 'mean' divides each by its
    target length (at least 1) before averaging, as PyTorch does.

    **Compile around it, not through it.** Called eagerly or under ``mx.grad`` its scan runs
    outside any trace (NumPy's on the CPU, one compiled step per frame on a GPU); inside
    ``mx.compile`` the ``T`` steps are unrolled into the graph, whose first call compiles for
    seconds (a GRU + CTC step at ``T = 40``: 32 s with a cold kernel cache, on a 2-core AMD EPYC).
    ``transforms.value_and_grad_around(model, loss)`` compiles the model's forward and backward
    and runs the loss between them: 3.3 s for that step's first call, and as fast as compiled
    through afterwards. Traced by ``mx.compile`` on the CPU it warns
    (:class:`lossfn.CompileThroughWarning`).
    """
    reduction = C.reduction_of(None, None, reduction)
    log_probs = C.as_array(log_probs, "log_probs")
    C.check_floating(log_probs, "log_probs")
    if log_probs.ndim not in (2, 3):
        raise ValueError(
            f"log_probs must have shape (T, N, C) or (T, C), got shape {C.shape_str(log_probs)}"
        )
    if log_probs.size == 0:
        raise ValueError(f"log_probs must not be empty, got shape {C.shape_str(log_probs)}")
    unbatched = log_probs.ndim == 2
    if unbatched:
        log_probs = log_probs[:, None, :]
    num_frames, batch_size, num_classes = log_probs.shape
    if not 0 <= blank < num_classes:
        raise ValueError(f"blank must be in [0, C) = [0, {num_classes}), got {blank}")
    input_lengths = _lengths(input_lengths, "input_lengths", batch_size)
    target_lengths = _lengths(target_lengths, "target_lengths", batch_size)
    targets = C.as_array(targets, "targets")
    if targets.ndim not in (1, 2):
        raise ValueError(
            f"targets must be padded (N, S) or concatenated (sum(target_lengths),), got shape "
            f"{C.shape_str(targets)}"
        )
    if targets.ndim == 2 and targets.shape[0] != batch_size:
        raise ValueError(
            f"targets of shape {C.shape_str(targets)} must have one row per example (batch size {batch_size})"
        )
    lengths = C.readable(input_lengths, target_lengths)
    if lengths is not None:
        _check_lengths(targets, *lengths, num_frames)
    targets = targets.astype(mx.int32)
    labels = C.readable(targets)
    if lengths is not None and labels is not None:
        _check_labels(labels[0], lengths[1], num_classes, blank)
    width = int(lengths[1].max(initial=0)) if lengths is not None else None
    targets = _padded(targets, target_lengths, batch_size, width)
    _warn_if_compiled_through(log_probs)
    checked = lengths is not None and labels is not None  # every length and label: in range, or raised on
    # Half precision is computed in float32 (the scan always is) and rounded once, at the end.
    losses = ctc_batch(log_probs.astype(mx.float32), targets, input_lengths, target_lengths, blank, zero_infinity, checked)
    if reduction == "none":
        return (losses[0] if unbatched else losses).astype(log_probs.dtype)
    if reduction == "mean":
        losses = losses / mx.maximum(target_lengths, 1).astype(losses.dtype)
    return T.reduce_batch(losses, reduction).astype(log_probs.dtype)
