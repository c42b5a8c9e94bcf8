"""Which transformation is running: ``transformation(arrays)`` is 'eager', 'grad' or 'trace'.

Code that evaluates (CTC's compiled scan) or that builds on the arrays' shapes (sharding over
streams, staging a long sum) must know whether it is being traced by ``mx.compile`` or
``mx.vmap``, where nothing can be evaluated and a shapeless compile infers every shape again.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Literal

import mlx.core as mx

# Set while ``transforms.compiled`` traces its own graph (shapes fixed, not shapeless): whether
# that graph may shard its batch over CPU streams.
_own_trace: contextvars.ContextVar[bool | None] = contextvars.ContextVar("own_trace", default=None)

_traced: list[bool] = []


def _probe_body(x: mx.array) -> mx.array:
    _traced.append(True)
    return x


_probe = mx.compile(_probe_body)
_probe(mx.zeros((1,)))  # trace it now: from here on, only tracers re-enter the body


def transformation(arrays: Sequence[mx.array]) -> Literal["eager", "grad", "trace"]:
    """'eager' outside transformations; 'grad' under mx.grad/vjp; 'trace' under compile or vmap.

    A compiled function re-runs its Python body only when called with tracers (or on its
    first call for a shape), so the probe tells whether any input is a tracer. A tracer that
    can be evaluated belongs to autodiff; one that cannot, to ``mx.compile`` or ``mx.vmap``.
    """
    token = mx.concatenate([a.reshape(-1)[:0].astype(mx.float32) for a in arrays] + [mx.zeros((1,))])
    _traced.clear()
    _probe(token)
    if not _traced:
        return "eager"
    try:
        mx.eval(*arrays)
    except ValueError:
        return "trace"
    return "grad"


@contextlib.contextmanager
def own_trace(shard: bool) -> Iterator[None]:
    """``transforms.compiled`` tracing its graph for fixed shapes, which may shard (or not)."""
    token = _own_trace.set(shard)
    try:
        yield
    finally:
        _own_trace.reset(token)


def in_own_trace() -> bool | None:
    """Inside ``transforms.compiled``'s own trace: whether it may shard; ``None`` outside one."""
    return _own_trace.get()


def static_shapes(arrays: Sequence[mx.array]) -> bool:
    """Whether a graph built now on ``arrays`` may depend on their shapes: eagerly, under
    ``mx.grad``, or in ``transforms.compiled``'s own trace; not in a user's ``mx.compile``
    (perhaps shapeless) or ``mx.vmap``."""
    return in_own_trace() is not None or transformation(arrays) != "trace"
