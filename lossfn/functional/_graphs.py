"""The machinery shared by the PyTorch-compatible functions: compiled graphs and batch layouts.

A *graph* is a compiled composition of a per-example loss with transforms, cached per
static configuration (the reduction, which transforms are present). Numeric
hyper-parameters enter it as arrays, so new data, new weights or a new margin of the same
shapes never retrace. A *layout* turns PyTorch's batch into one example per row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import mlx.core as mx

import transforms as T

Array = mx.array


# --- graphs -------------------------------------------------------------------------------


@functools.cache
def reduce_graph(
    loss: Callable[..., Any], reduction: str, weighting: str | None = None, static: tuple[str, ...] = ()
) -> Any:
    """``reduce(loss)``, with an optional weighting transform appended:

    - ``'rescale'`` / ``'normalize'``: ``rescaled(loss, normalize=...)``, an element-wise weight
      (PyTorch's ``weight`` of BCE and Huber / of L1 and MSE);
    - ``'class'``: ``weighted(loss, normalize=False)``, a class weight that scales an example
      while a 'mean' still divides by the number of examples (PyTorch's multi-margin loss).

    Keywords named in ``static`` (a norm's order ``p``) select the graph; other numeric keywords
    (``margin``, ``beta``) enter it as arrays.
    """

    def composed(*args: Array, **hyper: Any) -> Array:
        if weighting == "class":
            f = T.weighted(loss, normalize=False)
        elif weighting is not None:
            f = T.rescaled(loss, normalize=weighting == "normalize")
        else:
            f = loss
        return T.reduce(f, reduction)(*args, **hyper)

    return T.compiled(composed, static=static)


@functools.cache
def class_graph(loss: Callable[..., Any], reduction: str, weighted: bool, smoothed: bool) -> Any:
    """PyTorch's class-index loss: ``reduce(ignore_index(smooth_labels(weighted(loss))))``."""

    def composed(x: Array, y: Array, *weight: Array, index: Array, alpha: Array) -> Array:
        f = T.weighted(loss) if weighted else loss
        f = T.smooth_labels(f, alpha, linear=True) if smoothed else f  # PyTorch smooths only CE
        return T.reduce(T.ignore_index(f, index), reduction)(x, y, *weight)

    return T.compiled(composed)


# --- layouts ------------------------------------------------------------------------------


def run_elementwise(graph: Any, input: Array, *args: Array, **hyper: Any) -> Array:
    """Run an element-wise graph; a 0-d input is a batch of one, returned 0-d."""
    if input.ndim == 0:
        out = graph(input.reshape(1), *(a.reshape(1) for a in args), **hyper)
        return out.reshape(()) if out.ndim else out
    return graph(input, *args, **hyper)


def run_classwise(graph: Any, input: Array, target: Array, *shared: Array, **hyper: Any) -> Array:
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
