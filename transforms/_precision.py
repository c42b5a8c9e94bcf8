"""Half precision: losses are computed in float32 and rounded once to their inputs' dtype.

A float16 loss computed in float16 overflows past 65504 (a sum, or an element count) and
loses a digit in every operation. The rule here, as PyTorch's CPU kernels do for each of
their operations: float16 and bfloat16 arguments are promoted to float32, the loss and its
reduction run there, and the result is returned in the *result dtype*, the promotion of the
floating-point arguments' dtypes (float16 logits give a float16 loss; float16 logits with
float32 class weights give a float32 one). Gradients come back in each argument's own dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import optree

HALF = (mx.float16, mx.bfloat16)


def _is_float_array(x: Any) -> bool:
    return isinstance(x, mx.array) and mx.issubdtype(x.dtype, mx.floating)


@functools.cache
def _promote(a: mx.Dtype, b: mx.Dtype) -> mx.Dtype:
    return (mx.zeros((), a) + mx.zeros((), b)).dtype


def result_dtype(args: Any) -> mx.Dtype | None:
    """The promotion of the dtypes of the floating-point arrays in ``args`` (a pytree); None if none."""
    dtypes = {x.dtype for x in optree.tree_leaves(args) if _is_float_array(x)}
    return functools.reduce(_promote, sorted(dtypes, key=str)) if dtypes else None


def has_half(args: Any) -> bool:
    """Whether ``args`` (a pytree) holds a float16 or bfloat16 array."""
    return any(_is_float_array(x) and x.dtype in HALF for x in optree.tree_leaves(args))


def upcast(args: Any) -> Any:
    """``args`` (a pytree) with every float16/bfloat16 array promoted to float32."""
    return optree.tree_map(lambda x: x.astype(mx.float32) if _is_float_array(x) and x.dtype in HALF else x, args)


def cast_floats(out: Any, dtype: mx.Dtype | None) -> Any:
    """The floating-point arrays of ``out`` (a pytree, ``Weighted`` included) cast to ``dtype``."""
    if dtype is None:
        return out
    return optree.tree_map(lambda x: x.astype(dtype) if _is_float_array(x) and x.dtype != dtype else x, out)


def in_float32(loss: Callable[..., Any], *, cast_args: bool = True) -> Callable[..., Any]:
    """``loss`` evaluated in float32 for half-precision positional arguments, its result in their result dtype.

    Without ``cast_args`` the loss is given its arguments as they are (it computes in float32
    itself, a tile at a time) and only its result is rounded.
    """

    @functools.wraps(loss)
    def promoted(*args: Any, **static: Any) -> Any:
        if not has_half(args):
            return loss(*args, **static)
        return cast_floats(loss(*(upcast(args) if cast_args else args), **static), result_dtype(args))

    return promoted
