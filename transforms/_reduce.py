"""Batching a per-example loss and reducing the batch: ``batched`` and ``reduce``.

The reduction law, for a per-example loss ``f`` and a batch of ``N`` examples::

    reduce(f, 'none')(*b)      == stack([f(*e) for e in b])
    reduce(f, 'sum')(*b)       == sum(reduce(f, 'none')(*b))
    reduce(f, 'mean')(*b)      == sum(values) / sum(weights)    # weights default to 1 per element
    reduce(f, 'batchmean')(*b) == sum(values) / N

A loss that returns a :class:`Weighted` pair (``weighted``, ``ignore_index``) says how much
each example counts in the mean; an all-masked 'mean' is therefore ``0 / 0 = nan`` and an
all-masked 'sum' is ``0``, as in PyTorch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple, get_args

import mlx.core as mx
import optree

Reduction = Literal["none", "sum", "mean", "batchmean"]
REDUCTIONS: tuple[str, ...] = get_args(Reduction)
InAxes = Sequence["int | None"]
Loss = Callable[..., Any]

# Partial sums are formed over runs of at most this many elements. MLX's float32 ``sum``
# accumulates sequentially, so a long run saturates (mx.sum(mx.ones(2**25)) == 2**24) and
# even 4096-element runs drift past 1e-6 relative. Runs of 256, then sums of 256 run totals,
# and so on, stay near 1e-7 (measured), and row sums of 256 are no slower than one flat sum.
_RUN = 256


class Weighted(NamedTuple):
    """A loss ``value`` together with the ``weight`` it carries in a 'mean'."""

    value: mx.array
    weight: mx.array


def accurate_sum(x: mx.array, axis: int | None = None) -> mx.array:
    """Sum of ``x`` (all elements, or along ``axis``) in stages of ``_RUN``, so float32 does not saturate.

    Half-precision inputs are accumulated in float32 and returned in their own dtype.
    """
    dtype = x.dtype
    x = x.reshape(-1) if axis is None else mx.moveaxis(x, axis, -1)
    if mx.issubdtype(dtype, mx.floating) and dtype != mx.float32 and dtype != mx.float64:
        x = x.astype(mx.float32)
    lead = x.shape[:-1]
    while x.shape[-1] > _RUN:
        head = (x.shape[-1] // _RUN) * _RUN
        partial = x[..., :head].reshape(*lead, -1, _RUN).sum(axis=-1)
        x = partial if head == x.shape[-1] else mx.concatenate([partial, x[..., head:].sum(axis=-1, keepdims=True)], axis=-1)
    return x.sum(axis=-1).astype(dtype)


def batch_axes(loss: Loss, num_args: int) -> tuple[int | None, ...]:
    """The vmap axis of each positional argument of ``loss``: 0 unless a transform said otherwise.

    Transforms that append an argument (``weighted``'s class weights, shared by the whole
    batch) record its axis in ``loss.trailing_axes``.
    """
    trailing = tuple(getattr(loss, "trailing_axes", ()))
    if len(trailing) > num_args:
        raise TypeError(
            f"{_name(loss)} takes at least {len(trailing)} positional arguments, got {num_args}"
        )
    return (0,) * (num_args - len(trailing)) + trailing


def with_trailing_axes(fn: Loss, base: Loss, *axes: int | None) -> Loss:
    """Record on ``fn`` that it takes ``base``'s arguments followed by arguments batched on ``axes``."""
    fn.trailing_axes = tuple(getattr(base, "trailing_axes", ())) + axes  # type: ignore[attr-defined]
    return fn


def batched(loss: Loss, in_axes: InAxes | None = None) -> Loss:
    """``loss`` mapped over the leading axis of its arguments (``mx.vmap``); keywords stay static.

    ``in_axes`` defaults to 0 for every argument except those a transform declared shared.
    """

    @functools.wraps(loss)
    def batched_loss(*args: Any, **static: Any) -> Any:
        axes = tuple(in_axes) if in_axes is not None else batch_axes(loss, len(args))
        per_example = functools.partial(loss, **static) if static else loss
        return mx.vmap(per_example, in_axes=axes)(*args)

    return batched_loss


def reduce_values(out: Any, reduction: Reduction, batch_size: int) -> Any:
    """Reduce a batch of per-example outputs (an array or a :class:`Weighted`) by ``reduction``."""
    check_reduction(reduction)
    if reduction == "none":
        return out.value if isinstance(out, Weighted) else out
    value = out.value if isinstance(out, Weighted) else out
    total = accurate_sum(value)
    if reduction == "sum":
        return total
    if reduction == "batchmean":
        return total / batch_size
    if isinstance(out, Weighted):
        return _divide_or_nan(total, accurate_sum(mx.broadcast_to(out.weight, value.shape)))
    return total / value.size


def _divide_or_nan(total: mx.array, weight: mx.array) -> mx.array:
    """``total / weight``; ``nan`` with a zero gradient where nothing was counted (PyTorch's all-ignored mean)."""
    empty = weight == 0
    return mx.where(empty, mx.array(float("nan"), total.dtype), total / mx.where(empty, 1, weight))


def reduce(loss: Loss, reduction: Reduction = "mean", *, in_axes: InAxes | None = None) -> Loss:
    """Batch ``loss`` over the leading axis, then reduce: same arguments, batched; one array out.

    ``reduce(f, 'none')`` returns the stacked per-example losses; 'sum' their total; 'mean'
    ``sum(values) / sum(weights)`` (the element count for an unweighted loss); 'batchmean'
    the total divided by the batch size ``N``.
    """
    check_reduction(reduction)
    batched_loss = batched(loss, in_axes)

    @functools.wraps(loss)
    def reduced_loss(*args: Any, **static: Any) -> mx.array:
        if not args:
            raise TypeError(f"{_name(loss)}: reduce needs at least one batched argument")
        axes = tuple(in_axes) if in_axes is not None else batch_axes(loss, len(args))
        sizes = {_leading_size(a, ax) for a, ax in zip(args, axes) if ax is not None}
        sizes.discard(None)
        if len(sizes) > 1:
            raise ValueError(
                f"{_name(loss)}: batched arguments disagree on the batch size, saw {sorted(sizes)}"
            )
        batch_size = sizes.pop() if sizes else 1
        return reduce_values(batched_loss(*args, **static), reduction, batch_size)

    return reduced_loss


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _leading_size(tree: Any, axis: int) -> int | None:
    leaves = [x for x in optree.tree_leaves(tree) if isinstance(x, mx.array)]
    if not leaves:
        return None
    leaf = leaves[0]
    if leaf.ndim == 0:
        raise ValueError(f"cannot batch over a 0-d argument (shape {tuple(leaf.shape)})")
    return leaf.shape[axis]


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", repr(fn))
