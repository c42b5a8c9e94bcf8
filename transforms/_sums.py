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

import contextlib
import math
from typing import Any, NamedTuple

import mlx.core as mx

from ._precision import HALF
from ._streams import Shards
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
    rows = _float32_if_half(rows)
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
    return x.reshape(-1, _row_size(x))


def _float32_if_half(x: mx.array) -> mx.array:
    """Half precision summed in runs of float32 (never in its own dtype); other dtypes as they are."""
    return x.astype(mx.float32) if x.dtype in HALF else x


def _row_size(x: mx.array) -> int:
    return 1 if x.ndim <= 1 or x.size == 0 else math.prod(x.shape[1:])


def _widened(x: mx.array) -> mx.array:
    dtype = accumulator_dtype()
    if x.dtype == dtype:
        return x
    # Materialised first (contiguous): fused into the kernel that computes x, the conversion to
    # float64 makes MLX's CPU code branch on every where/maximum of the loss, 5-8x slower. A
    # small x is not worth the extra graph node. (Either way the sum is the same.)
    return (mx.contiguous(x) if dtype == mx.float64 and x.size >= _MATERIALISE else x).astype(dtype)


def _flat_total(parts: list[mx.array], streams: list[mx.Stream | None]) -> mx.array | None:
    """The total of all of ``parts`` (their flat arrays end to end), in the accumulator dtype,
    from float32 sums of runs of ``_RUN`` elements of each (zero-padded at the end); ``None``
    for a short total or where the graph may not depend on its size (see
    ``_tracing.static_shapes``). Each part's runs are summed on its stream.

    For what ``_runs`` cannot stage (scalar examples, rows of a size without a divisor): 5x
    faster than widening every element (measured at 2**24).
    """
    if sum(x.size for x in parts) < SHAPE_DEPENDENT_ABOVE or not static_shapes(parts):
        return None
    if any(x.size % _RUN for x in parts[:-1]):  # a cut inside a run: summed as one array, as one stream would
        parts, streams = [_joined([x.reshape(-1) for x in parts])], [None]
    return _staged_flat(*parts, streams=streams)


@mx.custom_function
def _staged_flat(*parts: mx.array, streams: list[mx.Stream | None]) -> mx.array:
    runs = []
    for x, stream in zip(parts, streams):
        with _on(stream):
            flat = _float32_if_half(x.reshape(-1))
            pad = -flat.size % _RUN  # the last part's only: the others are multiples of _RUN
            flat = mx.concatenate([flat, mx.zeros((pad,), flat.dtype)]) if pad else flat
            runs.append(mx.sum(flat.reshape(-1, _RUN), axis=-1))
    return mx.sum(_widened(_joined(runs)))


@_staged_flat.vjp
def _staged_flat_vjp(parts: Any, cotangent: mx.array, output: mx.array, streams: list[Any]) -> Any:
    # A sum's gradient, as one broadcast scalar (a custom function gets its primals alone):
    # autodiff through the runs would broadcast a (runs, 1) cotangent, which MLX's CPU
    # kernels of the loss's backward read 2x slower. One primal comes alone, not in a tuple.
    if isinstance(parts, mx.array):
        return mx.broadcast_to(cotangent.astype(parts.dtype), parts.shape)
    return tuple(mx.broadcast_to(cotangent.astype(x.dtype), x.shape) for x in parts)


def _on(stream: mx.Stream | None) -> Any:
    return contextlib.nullcontext() if stream is None else mx.stream(stream)


def _joined(arrays: list[mx.array]) -> mx.array:
    return arrays[0] if len(arrays) == 1 else mx.concatenate(arrays)


class _Staged(NamedTuple):
    rows: int  # how many examples
    size: int  # how many elements
    k: int  # the run length of the examples' rows
    runs: mx.array | None  # their ``_runs``, end to end
    flat: mx.array | None  # or the flat total, where the rows cannot stage (k == 1)


def _staged(x: mx.array | Shards) -> _Staged:
    """Stage 1 of ``x``'s sum: its examples as rows, and their ``_runs`` (each shard's on its
    stream), or the flat total where the rows cannot stage."""
    parts, streams = (x.outs, x.streams) if isinstance(x, Shards) else ([x], [None])
    rows, size = sum(1 if p.ndim == 0 else p.shape[0] for p in parts), sum(p.size for p in parts)
    k = _run_length(_row_size(parts[0]))
    flat = _flat_total(parts, streams) if k == 1 else None
    if flat is not None:
        return _Staged(rows, size, k, None, flat)
    runs = []
    for part, stream in zip(parts, streams):
        with _on(stream):
            # A 1-d part (one element an example) is its own runs: no reshape there and back, a graph node each.
            runs.append(_runs(_examples(part))[0] if part.ndim != 1 else _float32_if_half(part))
    return _Staged(rows, size, k, _joined(runs), None)


def total(x: mx.array | Shards, axis: int | None = None) -> mx.array:
    """Sum of ``x`` in the accumulator dtype: of every element (the first axis a batch), or along ``axis``.

    ``Shards`` of a batch (``_streams``) are summed bitwise as their concatenation.
    """
    if axis is None:
        staged = _staged(x)
        return mx.sum(_widened(staged.runs)) if staged.flat is None else staged.flat
    x = x if axis in (-1, x.ndim - 1) else mx.moveaxis(x, axis, -1)
    rows = _row_totals(_runs(x.reshape(-1, x.shape[-1]))[0])
    return rows.reshape(-1, *x.shape[1:-1]) if x.ndim > 1 else rows.reshape(())


def mean(x: mx.array | Shards) -> mx.array:
    """Mean of every element of ``x`` in the accumulator dtype; ``nan`` for none. The count is read at run time."""
    staged = _staged(x)
    if staged.flat is not None:
        return staged.flat / staged.size
    runs_mean = mx.mean(_widened(staged.runs))
    return runs_mean if staged.k == 1 else runs_mean / staged.k  # a division by 1 is a graph node, and its vjp another


def batch_mean(x: mx.array | Shards) -> mx.array:
    """The sum of ``x`` ``(N, ...)`` over its ``N`` examples' elements, divided by ``N`` (read at run time)."""
    staged = _staged(x)
    return mx.mean(_row_totals(staged.runs)) if staged.flat is None else staged.flat / staged.rows


def accurate_sum(x: mx.array, axis: int | None = None) -> mx.array:
    """Sum of ``x`` (all elements, or along ``axis``), accumulated as ``total``, returned in ``x``'s dtype.

    Half-precision inputs are accumulated alike and rounded once, at the end. Integer and
    boolean inputs (counts) come back as float32.
    """
    dtype = x.dtype if mx.issubdtype(x.dtype, mx.floating) else mx.float32
    return total(x, axis).astype(dtype)
