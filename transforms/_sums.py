"""Accurate sums and means: the accumulation behind every reduction.

MLX's float32 ``sum`` on the CPU accumulates sequentially, so a long sum saturates
(``mx.sum(mx.ones(2**25)) == 2**24``) and a mean of 16M losses drifts by percents. A sum over
a batch ``(N, ...)`` is therefore taken in two stages:

1. each example's elements in float32 runs of at most 256 (within 1e-7), by a reshape of the
   example's own, static axes (where its size has no divisor in [32, 256], no runs);
2. the run totals in the *accumulator dtype*: float64 on the CPU, float32 on a GPU, whose
   reductions are tree-shaped and which has no float64.

Nothing depends on the batch size, which is read at run time: the same graph is right under
``mx.compile(..., shapeless=True)`` for any batch, where a staging of the batch axis itself
(a reshape or slice by its size) would keep the traced size. Where the shapes are fixed
(eagerly, under ``mx.grad``, in ``transforms.compiled``'s graphs), what stage 1 cannot stage
(scalar examples, above all a 1-D element-wise loss) is staged as one flat array instead.
"""

from __future__ import annotations

import math

import mlx.core as mx

from ._precision import HALF
from ._tracing import SHAPE_DEPENDENT_ABOVE, static_shapes

_RUN = 256  # the longest float32 run: within 1e-7 relative, and as fast as one flat sum
_SHORTEST_RUN = 32  # below this a run saves too little: the example is widened whole
_MATERIALISE = 1 << 16


def accumulator_dtype() -> mx.Dtype:
    """The dtype sums accumulate in: float64 on the CPU, float32 on a GPU."""
    return mx.float64 if mx.default_device().type == mx.DeviceType.cpu else mx.float32


def _run_length(size: int) -> int:
    """The longest run, at most ``_RUN``, that divides a row of ``size`` elements (1: none)."""
    if size <= _RUN:
        return size
    return next((k for k in range(_RUN, _SHORTEST_RUN - 1, -1) if size % k == 0), 1)


def _runs(rows: mx.array) -> tuple[mx.array, int]:
    """Rows ``(M, S)``, ``S`` static: sums over runs of ``k`` elements of each row, and ``k``.

    ``(M, S // k)``, or ``(M,)`` where a row is one run. (A reduction over an axis of size 1
    crashes MLX 0.32's shapeless compile, so none is made.)
    """
    if rows.dtype in HALF:
        rows = rows.astype(mx.float32)
    size = rows.shape[-1]
    k = _run_length(size)
    if k == size:
        return (rows.reshape(-1) if size == 1 else mx.sum(rows, axis=-1)), k
    return (rows, 1) if k == 1 else (mx.sum(rows.reshape(-1, size // k, k), axis=-1), k)


def _row_totals(runs: mx.array) -> mx.array:
    """The accumulated total of each row of ``_runs``' output, ``(M,)``."""
    return mx.sum(_widened(runs), axis=-1) if runs.ndim == 2 else _widened(runs)


def _examples(x: mx.array) -> mx.array:
    """``x`` ``(N, ...)`` as rows ``(N, S)``, one example per row (a 0-d or 1-d ``x``: one element per row)."""
    return x.reshape(-1, 1) if x.ndim <= 1 or x.size == 0 else x.reshape(-1, math.prod(x.shape[1:]))


def _widened(x: mx.array) -> mx.array:
    dtype = accumulator_dtype()
    if x.dtype == dtype:
        return x
    # Materialised first (contiguous): fused into the kernel that computes x, the conversion to
    # float64 makes MLX's CPU code branch on every where/maximum of the loss, 5-8x slower. A
    # small x is not worth the extra graph node. (Either way the sum is the same.)
    return (mx.contiguous(x) if dtype == mx.float64 and x.size >= _MATERIALISE else x).astype(dtype)


def _flat_total(x: mx.array) -> mx.array | None:
    """The total of all of ``x``, in the accumulator dtype, from float32 sums of runs of ``_RUN``
    elements of its flat array (zero-padded at the end); ``None`` for a short ``x`` or where
    the graph may not depend on its size (see ``_tracing.static_shapes``).

    For what ``_runs`` cannot stage (scalar examples, rows of a size without a divisor): 5x
    faster than widening every element (measured at 2**24).
    """
    if x.size < SHAPE_DEPENDENT_ABOVE or not static_shapes([x]):
        return None
    return _staged_flat(x)


@mx.custom_function
def _staged_flat(x: mx.array) -> mx.array:
    flat = x.reshape(-1).astype(mx.float32) if x.dtype in HALF else x.reshape(-1)
    pad = -flat.size % _RUN
    flat = mx.concatenate([flat, mx.zeros((pad,), flat.dtype)]) if pad else flat
    return mx.sum(_widened(mx.sum(flat.reshape(-1, _RUN), axis=-1)))


@_staged_flat.vjp
def _staged_flat_vjp(x: mx.array, cotangent: mx.array, output: mx.array) -> mx.array:
    # A sum's gradient, as one broadcast scalar (a one-argument custom function gets its
    # primal alone): autodiff through the runs would broadcast a (runs, 1) cotangent, which
    # MLX's CPU kernels of the loss's backward read 2x slower.
    return mx.broadcast_to(cotangent.astype(x.dtype), x.shape)


def _staged(x: mx.array) -> tuple[mx.array, mx.array, int, mx.array | None]:
    """``x``'s examples as rows, their ``_runs`` and run length, and the flat total where the rows cannot stage."""
    rows = _examples(x)
    runs, k = _runs(rows)
    return rows, runs, k, _flat_total(x) if k == 1 else None


def total(x: mx.array, axis: int | None = None) -> mx.array:
    """Sum of ``x`` in the accumulator dtype: of every element (the first axis a batch), or along ``axis``."""
    if axis is None:
        _, runs, _, flat = _staged(x)
        return mx.sum(_widened(runs)) if flat is None else flat
    x = x if axis in (-1, x.ndim - 1) else mx.moveaxis(x, axis, -1)
    rows = _row_totals(_runs(x.reshape(-1, x.shape[-1]))[0])
    return rows.reshape(-1, *x.shape[1:-1]) if x.ndim > 1 else rows.reshape(())


def mean(x: mx.array) -> mx.array:
    """Mean of every element of ``x`` in the accumulator dtype; ``nan`` for none. The count is read at run time."""
    _, runs, k, flat = _staged(x)
    return mx.mean(_widened(runs)) / k if flat is None else flat / x.size


def batch_mean(x: mx.array) -> mx.array:
    """The sum of ``x`` ``(N, ...)`` over its ``N`` examples' elements, divided by ``N`` (read at run time)."""
    rows, runs, _, flat = _staged(x)
    return mx.mean(_row_totals(runs)) if flat is None else flat / rows.shape[0]


def accurate_sum(x: mx.array, axis: int | None = None) -> mx.array:
    """Sum of ``x`` (all elements, or along ``axis``), accumulated as ``total``, returned in ``x``'s dtype.

    Half-precision inputs are accumulated alike and rounded once, at the end. Integer and
    boolean inputs (counts) come back as float32.
    """
    dtype = x.dtype if mx.issubdtype(x.dtype, mx.floating) else mx.float32
    return total(x, axis).astype(dtype)
