"""Which transformation is running: ``transformation(arrays)`` is 'eager', 'grad' or 'trace'.

Code that evaluates (CTC's compiled scan) or that builds on the arrays' shapes (sharding over
streams, staging a long sum) must know whether it is being traced by ``mx.compile`` or
``mx.vmap``, where nothing can be evaluated and a shapeless compile infers every shape again.
A shapeless compile cannot be told from one with fixed shapes, so traced code builds on no
shape unless the user promises fixed shapes (``fixed_shapes(True)``).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple

import mlx.core as mx

# Below this many elements nothing builds on the shapes (sums stage by the examples' axes, no
# shards): the size of the smallest staged flat sum (``_sums``); sharding starts higher.
SHAPE_DEPENDENT_ABOVE = 1 << 16


class OwnTrace(NamedTuple):
    """What ``transforms.compiled`` decided, from the real arguments, for the graph it traces."""

    static: bool  # its shapes are fixed: called eagerly or under mx.grad, not inside a user's compile or vmap
    shard: bool  # it may shard its batch over CPU streams


_own_trace: contextvars.ContextVar[OwnTrace | None] = contextvars.ContextVar("own_trace", default=None)

_traced: list[bool] = []
_promise = {"fixed_shapes": False}


def _probe_body(*arrays: mx.array) -> mx.array:
    _traced.append(True)
    return arrays[0]


# Shapeless: one trace per number of arrays and their dtypes, none per shape.
_probe = mx.compile(_probe_body, shapeless=True)


def transformation(arrays: Sequence[mx.array]) -> Literal["eager", "grad", "trace"]:
    """'eager' outside transformations; 'grad' under mx.grad/vjp; 'trace' under compile or vmap.

    A compiled function re-runs its Python body only when called with tracers, or on its first
    call for a signature, so the probe, called with the arrays themselves, tells whether any
    is a tracer: a body run twice in a row is one. About 1.3 µs a call, where a token built from
    the arrays to give the probe one fixed signature took 7 µs. A tracer that can be evaluated
    belongs to autodiff; one that cannot, to ``mx.compile`` or ``mx.vmap``.
    """
    if not arrays:
        return "eager"
    for _ in range(2):
        _traced.clear()
        _probe(*arrays)
        if not _traced:
            return "eager"
    try:
        mx.eval(*arrays)
    except ValueError:
        return "trace"
    return "grad"


def fixed_shapes(promise: bool | None = None) -> Any:
    """Whether every ``mx.compile`` that traces these losses has fixed shapes (default False).

    ``fixed_shapes()`` returns the setting. ``fixed_shapes(True)`` promises it, and returns a
    context manager that restores the previous setting on exit. Inside a user's
    ``mx.compile`` (MLX's default, ``shapeless=False``) or ``mx.vmap``, large batches are then
    sharded over the CPU streams and long sums staged as one flat array, as they are eagerly.
    The numbers are the same either way. Under ``mx.compile(..., shapeless=True)`` the promise
    is broken: MLX then refuses the graph at its first call for a large batch ("cannot infer
    output shapes"), and never computes a wrong number.
    """
    if promise is None:
        return _promise["fixed_shapes"]
    if not isinstance(promise, bool):
        raise TypeError(f"fixed_shapes: promise must be a bool, got {promise!r}")
    previous, _promise["fixed_shapes"] = _promise["fixed_shapes"], promise
    return restoring(_promise, "fixed_shapes", previous)


@contextlib.contextmanager
def restoring(settings: dict[str, Any], key: str, previous: Any) -> Iterator[None]:
    """A setting just changed, as a context manager: ``settings[key]`` is ``previous`` again on exit."""
    try:
        yield
    finally:
        settings[key] = previous


def shapes_may_be_read(arrays: Sequence[mx.array]) -> bool:
    """Whether a graph built now on ``arrays`` may depend on their shapes: not traced by a
    user's ``mx.compile`` or ``mx.vmap``, or traced under the promise of ``fixed_shapes``."""
    return _promise["fixed_shapes"] or transformation(arrays) != "trace"


@contextlib.contextmanager
def own_trace(trace: OwnTrace) -> Iterator[None]:
    """``transforms.compiled`` tracing its graph, as it decided."""
    token = _own_trace.set(trace)
    try:
        yield
    finally:
        _own_trace.reset(token)


def in_own_trace() -> OwnTrace | None:
    """Inside ``transforms.compiled``'s own trace, what it decided; ``None`` outside one."""
    return _own_trace.get()


def static_shapes(arrays: Sequence[mx.array]) -> bool:
    """Whether a graph built now on ``arrays`` may depend on their shapes: eagerly, under
    ``mx.grad``, in ``transforms.compiled``'s graph for such a call; not in a user's
    ``mx.compile`` (perhaps shapeless) or ``mx.vmap``, unless ``fixed_shapes`` was promised."""
    own = in_own_trace()
    return own.static if own is not None else shapes_may_be_read(arrays)
