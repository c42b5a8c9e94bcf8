"""Accurate sums and means: the accumulation behind every reduction.

MLX's float32 ``sum`` on the CPU accumulates sequentially, so a long sum saturates
(``mx.sum(mx.ones(2**25)) == 2**24``) and a mean of 16M losses drifts by percents. On the
CPU the library therefore accumulates in float64, whose sequential error stays below 1e-8
relative at 2**27 elements. MLX's GPU reductions are tree-shaped and have no float64, so
there they accumulate in float32. Either way the sum is one reduction over the array as it
is, with no reshape or slice that depends on its size: correct under
``mx.compile(..., shapeless=True)``, where a size baked in at tracing would be wrong later.
"""

from __future__ import annotations

import mlx.core as mx


_MATERIALISE = 1 << 16


def accumulator_dtype() -> mx.Dtype:
    """The dtype sums accumulate in: float64 on the CPU, float32 on a GPU."""
    return mx.float64 if mx.default_device().type == mx.DeviceType.cpu else mx.float32


def _widened(x: mx.array) -> mx.array:
    dtype = accumulator_dtype()
    if x.dtype == dtype:
        return x
    # Materialised first (contiguous): fused into the kernel that computes x, the conversion to
    # float64 makes MLX's CPU code branch on every where/maximum of the loss, 5-8x slower. A
    # small x is not worth the extra graph node. (Either way the sum is the same.)
    return (mx.contiguous(x) if dtype == mx.float64 and x.size >= _MATERIALISE else x).astype(dtype)


def total(x: mx.array, axis: int | tuple[int, ...] | None = None) -> mx.array:
    """Sum of ``x`` (every element, or over ``axis``) in the accumulator dtype."""
    return mx.sum(_widened(x), axis=axis)


def mean(x: mx.array, axis: int | tuple[int, ...] | None = None) -> mx.array:
    """Mean of ``x`` in the accumulator dtype; ``nan`` for no elements. The count is read at run time."""
    return mx.mean(_widened(x), axis=axis)


def accurate_sum(x: mx.array, axis: int | None = None) -> mx.array:
    """Sum of ``x`` (all elements, or along ``axis``), accumulated in float64 on the CPU, returned in ``x``'s dtype.

    Half-precision inputs are accumulated alike and rounded once, at the end. Integer and
    boolean inputs (counts) come back as float32.
    """
    dtype = x.dtype if mx.issubdtype(x.dtype, mx.floating) else mx.float32
    return total(x, axis).astype(dtype)
