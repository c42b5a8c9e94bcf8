"""Batching a per-example loss and reducing the batch: ``batched`` and ``reduce``.

The reduction law, for a per-example loss ``f`` and a batch of ``N`` examples::

    reduce(f, 'none')(*b)      == stack([f(*e) for e in b])
    reduce(f, 'sum')(*b)       == sum(reduce(f, 'none')(*b))
    reduce(f, 'mean')(*b)      == sum(values) / sum(weights)    # weights default to 1 per element
    reduce(f, 'batchmean')(*b) == sum(values) / N

A loss that returns a :class:`Weighted` pair (``weighted``, ``ignore_index``) says how much
each example counts in the mean; an all-masked 'mean' is therefore ``0 / 0 = nan`` and an
all-masked 'sum' is ``0``, as in PyTorch. So is an empty batch.

Sums accumulate in float64 on the CPU (see ``_sums``), half-precision arguments are computed
in float32 and the result rounded once to the result dtype (see ``_precision``), and every
count is read at run time, so the reduction is right under ``mx.compile(..., shapeless=True)``.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, get_args

import mlx.core as mx

from . import _scale_out
from ._batching import InAxes, Loss, as_arrays, name_of, named_like, promoted, run_batched
from ._precision import cast_floats, result_dtype
from ._streams import Shards
from ._sums import batch_mean, mean, total

Reduction = Literal["none", "sum", "mean", "batchmean"]
REDUCTIONS: tuple[str, ...] = get_args(Reduction)


class Weighted(NamedTuple):
    """A loss ``value`` together with the ``weight`` it carries in a 'mean'."""

    value: mx.array
    weight: mx.array


def value_of(out: Any) -> Any:
    """The values of an output (an array or a ``Weighted``), or of each of its ``Shards``."""
    if isinstance(out, Shards):
        return out.map(value_of)
    return out.value if isinstance(out, Weighted) else out


def batched(loss: Loss, in_axes: InAxes | None = None) -> Loss:
    """``loss`` over the leading axis of its arguments (its batch rule, or ``mx.vmap``); keywords stay static.

    ``in_axes`` defaults to 0 for every argument except those a transform declared shared.
    """

    @named_like(loss)
    def batched_loss(*args: Any, **static: Any) -> Any:
        args = as_arrays(args)
        return cast_floats(run_batched(loss, promoted(loss, args), in_axes, static), result_dtype(args))

    return batched_loss


def reduce(loss: Loss, reduction: Reduction = "mean", *, in_axes: InAxes | None = None, group: Any = None) -> Loss:
    """Batch ``loss`` over the leading axis, then reduce: same arguments, batched; one array out.

    ``reduce(f, 'none')`` returns the stacked per-example losses; 'sum' their total; 'mean'
    ``sum(values) / sum(weights)`` (the element count for an unweighted loss); 'batchmean'
    the total divided by the batch size ``N``.

    With ``group`` (an ``mx.distributed`` group) the batch is this process's shard of a global
    batch: see :func:`reduce_values`.
    """
    check_reduction(reduction)

    @named_like(loss)
    def reduced_loss(*args: Any, **static: Any) -> mx.array:
        if not args:
            raise TypeError(f"{name_of(loss)}: reduce needs at least one batched argument")
        args = as_arrays(args)
        local = reduction != "none" and group is None and _scale_out.current() is None  # may take Shards
        out = run_batched(loss, promoted(loss, args), in_axes, static, reduced=local)
        return cast_floats(reduce_batch(out, reduction, group=group), result_dtype(args))

    return reduced_loss


def reduce_values(out: Any, reduction: Reduction, *, group: Any = None) -> Any:
    """Reduce a batch of per-example outputs (an array or a :class:`Weighted`, batch axis first) by ``reduction``.

    The result has the values' dtype; 'batchmean' divides by the length of the leading axis.

    With ``group``, an ``mx.distributed`` group whose every process holds a shard of one global
    batch, the result is the global batch's, on every process: the totals and the denominator
    (the weight sum, element count or batch size) are summed over the group, one ``all_sum``
    of two numbers. The denominator carries no gradient, and the gradient of ``all_sum`` is
    its cotangent, so each process's gradient is *its share*: their **sum** over the group is
    the gradient of the global batch's loss (``all_sum`` the gradients; ``mlx.nn.average_gradients``
    divides by the group's size, see ``sum_gradients``). 'none' is this shard's.
    """
    check_reduction(reduction)
    value = value_of(out)
    if reduction == "none":
        return value
    if group is not None:
        return _global(out, reduction, group).astype(value.dtype)
    if reduction == "sum":
        result = total(value)
    elif reduction == "batchmean":
        result = batch_mean(value)
    elif isinstance(out.outs[0] if isinstance(out, Shards) else out, Weighted):
        result = _divide_or_nan(total(value), total(_weights(out)))
    else:
        result = mean(value)
    return result.astype(value.dtype)


def reduce_batch(out: Any, reduction: Reduction, *, group: Any = None) -> Any:
    """``reduce_values`` of a batch, as the scope it runs in says (``transforms._scale_out``).

    Outside a scope, ``reduce_values(out, reduction, group=group)``. In ``across(g)``, with
    ``group=g``. Counting micro-batches: this batch's numerator, its denominator recorded. Applying:
    the numerator divided by the next of the given denominators.
    """
    scope = _scale_out.current()
    if reduction == "none" or scope is None:
        return reduce_values(out, reduction, group=group)
    if scope.mode == "group":
        return reduce_values(out, reduction, group=scope.group)
    numerator, denominator = _parts(out, reduction)
    if scope.mode == "count":
        scope.counts.append(denominator)
        return numerator.astype(value_of(out).dtype)
    divided = numerator if reduction == "sum" else _divide_or_nan(numerator, scope.next_denominator())
    return divided.astype(value_of(out).dtype)


def _parts(out: Any, reduction: Reduction) -> tuple[mx.array, mx.array]:
    """A batch's numerator and denominator (without gradient): a 'mean' is their ratio."""
    value = value_of(out)
    if reduction == "mean" and isinstance(out, Weighted):
        count = _weights(out)
    elif reduction == "mean":
        count = mx.ones_like(value)
    else:  # the batch size (its examples); 'sum' divides by nothing
        count = mx.ones(value.shape[:1], value.dtype)
    return total(value), mx.stop_gradient(total(count))


def _weights(out: Any) -> Any:
    """The weight of each element of ``out.value`` (a per-example weight broadcast over its elements); of each shard's."""
    if isinstance(out, Shards):
        return out.map(_weights)
    return out.weight if out.weight.shape == out.value.shape else out.weight + mx.zeros_like(out.value)


def _global(out: Any, reduction: Reduction, group: Any) -> mx.array:
    """The reduction of the global batch whose shard on this process is ``out`` (see ``reduce_values``)."""
    summed = mx.distributed.all_sum(mx.stack(_parts(out, reduction)), group=group)
    return summed[0] if reduction == "sum" else _divide_or_nan(summed[0], summed[1])


def _divide_or_nan(total: mx.array, weight: mx.array) -> mx.array:
    """``total / weight``; ``nan`` with a zero gradient where nothing was counted (PyTorch's all-ignored mean)."""
    empty = weight == 0
    return mx.where(empty, mx.array(float("nan"), total.dtype), total / mx.where(empty, 1, weight))


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")

