"""The machinery shared by the PyTorch-compatible functions: compiled graphs and batch layouts.

A *graph* is a compiled composition of a per-example loss with transforms, cached per
static configuration (the reduction, which transforms are present). Numeric
hyper-parameters enter it as arrays, so new data, new weights or a new margin of the same
shapes never retrace. A graph may carry a *check*: a condition on its arguments (an index
range, probabilities in [0, 1]) computed in the same graph, returned beside the loss, so that
one evaluation gives both (``_checks.raise_unless``). A *layout* turns PyTorch's batch into
one example per row; layouts reshape with ``-1`` for the batch, so that they hold under
``mx.compile(..., shapeless=True)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import mlx.core as mx

import transforms as T
from transforms._batching import layout_of, num_classes

from .. import _checks as C

Array = mx.array
Check = Callable[..., Array]


def _broadcasting(composed: Callable[..., Any]) -> Callable[..., Any]:
    """``composed`` with every argument broadcast against the first, inside the graph.

    An addition of zeros: MLX fuses it into the loss's kernel and infers its shape again under
    a shapeless compile, where an eager ``broadcast_to`` would keep the traced shape.
    """

    def broadcast(x: Array, *rest: Array, **hyper: Any) -> Any:
        return composed(x, *(r if r.shape == x.shape else r + mx.zeros_like(x) for r in rest), **hyper)

    return broadcast


def _with_check(composed: Callable[..., Array], check: Check | None) -> Callable[..., Any]:
    if check is None:
        return composed
    return lambda *args, **hyper: (composed(*args, **hyper), check(*args, **hyper))


@functools.cache
def reduce_graph(
    loss: Callable[..., Any],
    reduction: str,
    weighting: str | None = None,
    static: tuple[str, ...] = (),
    check: Check | None = None,
    elementwise: bool = False,
) -> Any:
    """``reduce(loss)``, with an optional weighting transform appended:

    - ``'rescale'`` / ``'normalize'``: ``rescaled(loss, normalize=...)``, an element-wise weight
      (PyTorch's ``weight`` of BCE and Huber / of L1 and MSE);
    - ``'class'``: ``weighted(loss, normalize=False)``, a class weight that scales an example
      while a 'mean' still divides by the number of examples (PyTorch's multi-margin loss).

    Keywords named in ``static`` (a norm's order ``p``) select the graph; other numeric keywords
    (``margin``, ``beta``) enter it as arrays. With ``check`` the graph returns ``(loss, ok)``.
    An ``elementwise`` graph broadcasts its arguments against the first (the input).
    """
    if weighting == "class":
        f = T.weighted(loss, normalize=False)
    elif weighting is not None:
        f = T.rescaled(loss, normalize=weighting == "normalize")
    else:
        f = loss
    composed = T.reduce(f, reduction)
    composed = _broadcasting(composed) if elementwise else composed
    return T.compiled(_with_check(composed, check), static=static)


def _indices_valid(loss: Callable[..., Any]) -> Check:
    """Whether every class index of a call of ``loss`` is a class or the ignore index."""
    position = layout_of(loss).target

    def check(*args: Array, index: Array, alpha: Array, **static: Any) -> Array:
        y = args[position]
        return C.indices_valid(y, num_classes(loss, args), index) if T.is_index(y) else mx.array(True)

    return check


@functools.cache
def class_graph(loss: Callable[..., Any], reduction: str, weighted: bool, smoothed: bool, static: tuple[str, ...] | None = ()) -> Any:
    """PyTorch's class-index loss: ``reduce(ignore_index(smooth_labels(weighted(loss))))``, and
    whether every index is a class or the ignore index: ``(loss, ok)``. Keywords named in
    ``static`` select the graph; ``static=None``: not compiled (``linear_cross_entropy``'s
    tiles, whose order of evaluation a compiled graph does not keep)."""

    def composed(*args: Array, index: Array, alpha: Array, **static: Any) -> Array:
        f = T.weighted(loss) if weighted else loss
        f = T.smooth_labels(f, alpha, linear=True) if smoothed else f  # PyTorch smooths only CE
        return T.reduce(T.ignore_index(f, index), reduction)(*args, **static)

    checked = _with_check(composed, _indices_valid(loss))
    return checked if static is None else T.compiled(checked, static=static)


# --- layouts ------------------------------------------------------------------------------


def run_elementwise(graph: Any, input: Array, *args: Array, **hyper: Any) -> Any:
    """Run an element-wise graph; a 0-d input is a batch of one, returned 0-d."""
    if input.ndim == 0:
        return _squeezed(graph(input.reshape(1), *(a.reshape(1) for a in args), **hyper))
    return graph(input, *args, **hyper)


def _squeezed(out: Any) -> Any:
    """A graph's output for a batch of one, as one example: 'none' loses its batch axis."""
    if isinstance(out, tuple):
        return (_squeezed(out[0]), *out[1:])
    return out.reshape(()) if out.ndim else out


def run_classwise(graph: Any, input: Array, target: Array, *shared: Array, **hyper: Any) -> Any:
    """Run a class graph on ``(N, C, d1..dk)`` or ``(C,)`` scores, one row per position.

    The class axis moves last and the positions flatten into rows; an index target
    ``(N, d1..dk)`` flattens alike and a probability target moves like the input.
    'none' comes back in the target's layout: ``(N, d1..dk)``, or ``()`` unbatched.
    """
    if input.ndim == 1:
        out, ok = graph(input[None], target[None], *shared, **hyper)
        return _squeezed(out), ok
    targets = (target if target.ndim == 1 else target.reshape(-1)) if T.is_index(target) else _rows(target)
    out, ok = graph(_rows(input), targets, *shared, **hyper)
    if out.ndim and input.ndim > 2:
        out = out.reshape(-1, *input.shape[2:])
    return out, ok


def _rows(x: Array) -> Array:
    """``(N, C, d1..dk)`` as rows ``(N d1..dk, C)``: the class axis last."""
    return x if x.ndim == 2 else mx.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
