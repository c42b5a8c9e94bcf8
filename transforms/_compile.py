"""Compilation: ``compiled`` wraps ``mx.compile`` with one graph per static configuration."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, overload

import mlx.core as mx
import optree

from . import _scale_out, _streams
from ._batching import Loss, batch_rule, named_like, with_trailing_axes
from ._tracing import SHAPE_DEPENDENT_ABOVE, OwnTrace, in_own_trace, own_trace, shapes_may_be_read


@overload
def compiled(loss: Loss, *, static: Iterable[str] = ()) -> Loss: ...
@overload
def compiled(loss: None = None, *, static: Iterable[str] = ()) -> Callable[[Loss], Loss]: ...


def compiled(loss: Loss | None = None, *, static: Iterable[str] = ()) -> Any:
    """``mx.compile(loss)``, cached per static configuration; same call signature.

    Keyword arguments that are Python numbers (a margin, a smoothing factor, an ignore
    index) enter the graph as 0-d arrays, so a new value reuses the traced graph and its
    compiled kernels; on the CPU each new kernel costs a C++ compile. Keywords named in
    ``static`` and keywords that are bools, strings, None or callables select the graph
    instead (they steer Python control flow). Works bare (``@compiled``) or with arguments
    (``@compiled(static=('p',))``). ``fn.traces`` counts how often the Python body was traced.
    A loss with a batch rule keeps one, compiled alike. Inside a reduction scope
    (``transforms.across``, ``accumulate``) the loss runs uncompiled.
    """
    if loss is None:
        return functools.partial(compiled, static=tuple(static))
    static = frozenset(static)
    graphs: dict[Any, Callable[..., Any]] = {}

    @named_like(loss)
    def compiled_loss(*args: Any, **kwargs: Any) -> Any:
        if _scale_out.current() is not None:  # a reduction scope is read when traced: run uncompiled
            return loss(*args, **kwargs)
        fixed = {k: v for k, v in kwargs.items() if k in static or not _is_number(v)}
        dynamic = sorted(k for k in kwargs if k not in fixed)
        trace = _own_trace_for(args, kwargs)
        key = (tuple(sorted(fixed.items(), key=lambda kv: kv[0])), tuple(dynamic), trace, trace.shard and _streams.cpu_streams())
        graph = graphs.get(key)
        if graph is None:
            graph = graphs[key] = mx.compile(_trace(loss, fixed, dynamic, compiled_loss, trace))
        return graph(args, [mx.array(kwargs[k]) for k in dynamic])

    compiled_loss.traces = 0  # type: ignore[attr-defined]
    rule = batch_rule(loss)
    if rule is not None:
        compiled_loss.batch_rule = compiled(rule, static=static)  # type: ignore[attr-defined]
    return with_trailing_axes(compiled_loss, loss)


def _own_trace_for(args: tuple[Any, ...], kwargs: dict[str, Any]) -> OwnTrace:
    """What the graph for these arguments may build on their shapes (a staged sum, shards over
    CPU streams): decided on the real arguments, whether a user's ``mx.compile`` or ``mx.vmap``
    (perhaps shapeless) traces them, and read when traced: a graph for each answer. Small
    arguments, which neither stages nor shards, skip the probe; a graph traced inside another
    one's trace (its tracers) takes that one's answer."""
    enclosing = in_own_trace()
    if enclosing is not None:
        return enclosing
    arrays = _arrays_in(args, kwargs)
    size = sum(x.size for x in arrays)
    if size < SHAPE_DEPENDENT_ABOVE:
        return OwnTrace(static=True, shard=False)
    static = shapes_may_be_read(arrays)
    return OwnTrace(static=static, shard=static and _streams.worth_cutting(size))


def _arrays_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[mx.array]:
    """The arrays among the arguments and in their pytrees (plain arrays, the usual call, without flattening)."""
    values = (*args, *kwargs.values())
    arrays = []
    for v in values:
        if isinstance(v, mx.array):
            arrays.append(v)
        elif not isinstance(v, (int, float, str, type(None))):
            return [x for x in optree.tree_leaves(list(values)) if isinstance(x, mx.array)]
    return arrays


def _trace(loss: Loss, fixed: dict[str, Any], dynamic: list[str], counter: Any, trace: OwnTrace) -> Callable[..., Any]:
    def body(args: tuple[Any, ...], values: list[mx.array]) -> Any:
        counter.traces += 1
        with own_trace(trace):
            return loss(*args, **fixed, **dict(zip(dynamic, values)))

    return body


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
