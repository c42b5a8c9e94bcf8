"""How a per-example loss runs on a batch: its batch rule, or ``mx.vmap``.

Every loss of :mod:`lossfn`, and every transform of one, has a *batch rule*: the same maths
written over the example's trailing axes, run once on the whole batch (the leading axis of
each batched argument). Any other loss is mapped with ``mx.vmap``. Both give the same
numbers; the rule exists because MLX's ``vmap`` writes the batch size into the graph in the
rules of several primitives (``take``, ``take_along_axis``, a row's maximum subtracted from
the row), so a vmapped loss inside ``mx.compile(..., shapeless=True)`` fails on the next
batch size, or computes a wrong number. A batch rule uses only operations whose shapes MLX
infers again for each call. On the vmap path a guard turns the result into ``nan`` if the
batch size at run time is not the one traced, since nothing can raise inside the graph.

An empty batch runs as a batch of one zero example whose output is then sliced away, so its
'sum' is 0, its 'mean' ``nan`` and its gradients have the arguments' (empty) shapes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from numbers import Number
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np
import optree

from ._precision import in_float32, upcast
from ._streams import sharded

InAxes = Sequence["int | None"]
Loss = Callable[..., Any]
# body(inner, batch_ndim, *args, **static): a transform written once for one example
# (batch_ndim 0) and for a batch rule (batch_ndim 1, the batch the leading axis).
Body = Callable[..., Any]


# --- a loss's arguments ---------------------------------------------------------------------


class Layout(NamedTuple):
    """Where a loss's positional arguments are: what the transforms need to know of it.

    ``target``: the position of the target (a class index or a distribution); ``shared``: the
    positions of arguments shared by a batch (a linear layer's weight), ``None`` in its vmap
    axes; ``classes``: the number of classes of a call's arguments (default: the last axis of
    the first, the scores). A loss that weights or smooths in its own pass (one that never
    forms its scores) names the keywords that do it: ``weighted`` passes its class weight as
    ``weight``, ``smooth_labels`` its factor as ``smoothing``. ``promote`` False: the loss
    computes half precision in float32 itself (tile by tile), so no transform casts its
    arguments. ``worth_sharding(args)``: whether a large batch of these arguments is worth
    cutting over CPU streams (default: always; see ``transforms._streams``).
    """

    target: int = 1
    shared: tuple[int, ...] = ()
    classes: Callable[[Sequence[Any]], int] | None = None
    weight: str | None = None
    smoothing: str | None = None
    promote: bool = True
    worth_sharding: Callable[[Sequence[Any]], bool] | None = None


def layout_of(loss: Loss) -> Layout:
    return getattr(loss, "layout", None) or Layout()


def promoted(loss: Loss, args: Any) -> Any:
    """``args`` with half precision promoted to float32, unless ``loss`` does that itself."""
    return upcast(args) if layout_of(loss).promote else args


def num_classes(loss: Loss, args: Sequence[Any]) -> int:
    """The number of classes of a call of ``loss`` with ``args``."""
    classes = layout_of(loss).classes
    return classes(args) if classes is not None else args[0].shape[-1]


def replaced(args: Sequence[Any], position: int, value: Any) -> tuple[Any, ...]:
    """``args`` with the one at ``position`` replaced."""
    return (*args[:position], value, *args[position + 1 :])


def batch_axes(loss: Loss, num_args: int) -> tuple[int | None, ...]:
    """The vmap axis of each positional argument of ``loss``: 0 unless the loss or a transform said otherwise.

    A loss declares its shared arguments in its ``layout``; transforms that append an argument
    (``weighted``'s class weights, shared by the whole batch) record its axis in
    ``loss.trailing_axes``.
    """
    trailing = tuple(getattr(loss, "trailing_axes", ()))
    if len(trailing) > num_args:
        raise TypeError(f"{name_of(loss)} takes at least {len(trailing)} positional arguments, got {num_args}")
    shared = layout_of(loss).shared
    return tuple(None if i in shared else 0 for i in range(num_args - len(trailing))) + trailing


def with_trailing_axes(fn: Loss, base: Loss, *axes: int | None) -> Loss:
    """Record on ``fn`` that it takes ``base``'s arguments (its layout) followed by arguments batched on ``axes``."""
    fn.trailing_axes = tuple(getattr(base, "trailing_axes", ())) + axes  # type: ignore[attr-defined]
    if hasattr(base, "layout"):
        fn.layout = base.layout  # type: ignore[attr-defined]
    return fn


def batch_rule(loss: Loss) -> Loss | None:
    """``loss``'s batch rule, if it has one: the loss of a whole batch, batch axis first, in one call."""
    return getattr(loss, "batch_rule", None)


def named_like(loss: Loss) -> Callable[[Loss], Loss]:
    """``functools.wraps`` that copies the name and docstring only: a wrapper computes something
    else, so it must not inherit the wrapped loss's batch rule or shared axes."""
    return functools.wraps(loss, updated=())


def transform(body: Body, loss: Loss, *trailing_axes: int | None) -> Loss:
    """The per-example loss ``body(loss, 0, ...)``; its batch rule is ``body(rule, 1, ...)`` where ``loss`` has one.

    ``trailing_axes`` records the batch axes of arguments the transform appends. Like every
    loss, the transformed one computes half precision in float32 and rounds its result once
    (a transform inside it then sees float32 and rounds nothing).
    """

    def per_example(*args: Any, **static: Any) -> Any:
        return body(loss, 0, *args, **static)

    transformed = named_like(loss)(in_float32(per_example) if layout_of(loss).promote else per_example)

    rule = batch_rule(loss)
    if rule is not None:
        transformed.batch_rule = lambda *args, **static: body(rule, 1, *args, **static)  # type: ignore[attr-defined]
    return with_trailing_axes(transformed, loss, *trailing_axes)


def spread(x: mx.array, like: mx.array, batch_ndim: int) -> mx.array:
    """``x`` with axes of size 1 inserted after its ``batch_ndim`` batch axes, to broadcast against ``like``.

    Per example (``batch_ndim`` 0) this is NumPy's broadcasting from the right; for a batch
    the batch axes stay aligned: a per-example scale ``(N,)`` spreads over losses ``(N, D)``.
    """
    if not isinstance(x, mx.array) or x.ndim >= like.ndim:
        return x
    return mx.expand_dims(x, tuple(range(batch_ndim, batch_ndim + like.ndim - x.ndim)))


# --- running a loss on a batch ---------------------------------------------------------------


def as_arrays(args: Sequence[Any]) -> tuple[Any, ...]:
    """Positional arguments with NumPy arrays, numbers and (nested) lists of numbers as ``mx.array``.

    Other containers are pytrees: their NumPy and number leaves are converted.
    """
    return tuple(_as_array_tree(a) for a in args)


def _as_array_tree(tree: Any) -> Any:
    if isinstance(tree, (list, tuple)) and tree and all(isinstance(x, Number) for x in optree.tree_leaves(tree)):
        return mx.array(tree)
    return optree.tree_map(lambda x: mx.array(x) if isinstance(x, (np.ndarray, np.generic, Number)) else x, tree)


def batch_size(loss: Loss, args: Sequence[Any], axes: Sequence[int | None]) -> int:
    """The common size of the batched arguments' batch axes (1 if none is batched), or a ValueError."""
    sizes = {_leading_size(a, ax) for a, ax in zip(args, axes) if ax is not None} - {None}
    if len(sizes) > 1:
        raise ValueError(f"{name_of(loss)}: batched arguments disagree on the batch size, saw {sorted(sizes)}")
    return sizes.pop() if sizes else 1


def _leading_size(tree: Any, axis: int) -> int | None:
    leaves = [x for x in optree.tree_leaves(tree) if isinstance(x, mx.array)]
    if not leaves:
        return None
    leaf = leaves[0]
    if leaf.ndim == 0:
        raise ValueError(f"cannot batch over a 0-d argument (shape {tuple(leaf.shape)})")
    return leaf.shape[axis]


def run_batched(loss: Loss, args: tuple[Any, ...], in_axes: InAxes | None, static: dict[str, Any], reduced: bool = False) -> Any:
    """The per-example outputs of ``loss`` over the batch, batch axis first: its batch rule, or ``mx.vmap``.

    The rule applies where the batch is the leading axis of the batched arguments and the
    shared ones are those the loss's transforms declared (the default ``in_axes``). Where a
    reduction follows (``reduced``), a batch cut over CPU streams comes back as
    ``_streams.Shards``, unconcatenated, for the reduction to sum shard by shard.
    """
    default = batch_axes(loss, len(args))
    axes = default if in_axes is None else tuple(in_axes)
    if len(axes) != len(args):
        raise ValueError(f"{name_of(loss)}: in_axes has {len(axes)} entries for {len(args)} arguments")
    size = batch_size(loss, args, axes)
    if size == 0:
        return _empty_batch(loss, args, axes, static)
    rule = batch_rule(loss)
    if rule is not None and axes == default and all(ax in (0, None) for ax in axes):
        layout = layout_of(loss)
        if layout.shared or (layout.worth_sharding is not None and not layout.worth_sharding(args)):
            # A loss sharing a large argument (a vocabulary) tiles its batch itself; one whose
            # example costs a gather gains less than the shards' concatenation costs.
            return rule(*args, **static)
        return sharded(lambda *shard: rule(*shard, **static), args, axes, size, reduced)
    return sharded(lambda *shard: vmap_batch(loss, shard, axes, static), args, axes, size, reduced)


def vmap_batch(loss: Loss, args: tuple[Any, ...], axes: tuple[int | None, ...], static: dict[str, Any] | None = None) -> Any:
    """``mx.vmap`` of ``loss`` over ``axes``, guarded against a batch size that changed since tracing."""
    per_example = functools.partial(loss, **static) if static else loss
    return _guard_batch_size(mx.vmap(per_example, in_axes=axes)(*args), args, axes)


def _empty_batch(loss: Loss, args: tuple[Any, ...], axes: tuple[int | None, ...], static: dict[str, Any]) -> Any:
    """The outputs of an empty batch: one zero example appended, run, and sliced off."""

    def pad(tree: Any, axis: int | None) -> Any:
        if axis is None:
            return tree

        def one_more(x: mx.array) -> mx.array:
            shape = list(x.shape)
            shape[axis] = 1
            return mx.concatenate([x, mx.zeros(shape, x.dtype)], axis=axis)

        return optree.tree_map(lambda x: one_more(x) if isinstance(x, mx.array) else x, tree)

    padded = tuple(pad(a, ax) for a, ax in zip(args, axes))
    out = run_batched(loss, padded, axes, static)
    return optree.tree_map(lambda x: x[:0] if isinstance(x, mx.array) and x.ndim else x, out)


def _guard_batch_size(out: Any, args: tuple[Any, ...], axes: tuple[int | None, ...]) -> Any:
    """``out``, or ``nan`` wherever the batch size at run time differs from the traced one.

    Under ``mx.compile(..., shapeless=True)`` a vmapped graph keeps the traced batch size; the
    smallest batched array is counted again at run time to catch that.
    """
    leaves = [x for a, ax in zip(args, axes) if ax is not None for x in optree.tree_leaves(a) if isinstance(x, mx.array)]
    if not leaves:
        return out
    smallest = min(leaves, key=lambda x: x.size)
    same = mx.sum(mx.ones_like(smallest).astype(mx.int32)) == smallest.size

    def guard(x: Any) -> Any:
        if isinstance(x, mx.array) and mx.issubdtype(x.dtype, mx.floating):
            return mx.where(same, x, mx.array(float("nan"), x.dtype))
        return x

    return optree.tree_map(guard, out)


def name_of(fn: Any) -> str:
    return getattr(fn, "__name__", repr(fn))
