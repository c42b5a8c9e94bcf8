"""Both CPU cores: a large batch is cut in contiguous shards, each computed on its own stream.

MLX runs one stream on one core. A batch of at least ``SHARD_ABOVE`` elements (in its batched
arguments) is cut along its batch axis into one shard per stream; each shard's per-example
losses are computed on its stream and concatenated in order, or, where a reduction follows,
left as ``Shards``: each shard's first stage of the staged sum then runs on its stream
(``_sums``). Every example is computed by the same row-wise operations as unsharded, so the
per-example losses, and every reduction of them, are bitwise those of one stream, run to
run. Gradients follow: each shard's backward pass runs on the stream of its forward
operations. Inside ``mx.compile`` the streams are kept.

Examples of fewer than 16 elements (a 1-D element-wise loss) cost too little to pay for a
concatenation (``mse_loss`` at 16M: 1.3x slower). They are cut only for a reduction, only
from ``SMALL_EXAMPLES_ABOVE`` elements on, and at multiples of 256 examples, where the runs
of the staged sum begin.

Only on the CPU (a GPU has one queue that is already parallel), and only for a batch large
enough that the work hides the 50 us of a second stream's synchronisation (below
``SHARD_ABOVE`` nothing changes). Eagerly and under ``mx.grad``; not inside a
user's ``mx.compile`` or ``mx.vmap`` unless ``fixed_shapes(True)`` promises fixed shapes: their
graph would keep the shard sizes (a shapeless compile refuses them). ``transforms.compiled``
shards inside its own graphs when called with plain arrays or under ``mx.grad``.
``cpu_streams(1)`` turns it off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

import mlx.core as mx
import optree

from ._tracing import OwnTrace, in_own_trace, own_trace, restoring, shapes_may_be_read

SHARD_ABOVE = 1 << 18  # elements of the batched arguments; measured in benchmarks/bench_streams.py
_EXAMPLE_AT_LEAST = 16  # elements per example: below, only a reduction cuts the batch (no concatenation)
# Small examples are cut from this many batched elements on: the backward's assembly of the
# input's gradient from its shards costs what a cheap loss does (mse_loss of n inputs and n
# targets, forward+backward on two streams against one: 0.75-0.80x at n = 2**18,
# 0.96-1.03x at 2**22, 1.04-1.16x at 2**24; binary_cross_entropy 1.24-1.35x, 1.58-1.60x,
# 2.35-3.05x; two runs of benchmarks/bench_streams.py).
SMALL_EXAMPLES_ABOVE = 1 << 23
_ALIGN = 256  # small examples are cut at multiples of this: _sums' run length, so each run lies in one shard
_setting = {"streams": min(os.cpu_count() or 1, 2)}
_streams: list[mx.Stream] = []


def cpu_streams(count: int | None = None) -> Any:
    """The number of CPU streams a large batch is sharded over (default: 2 where there are 2 cores).

    ``cpu_streams()`` returns it; ``cpu_streams(n)`` sets it and returns a context manager that
    restores the previous value on exit (``with transforms.cpu_streams(1): ...``).
    """
    if count is None:
        return _setting["streams"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"cpu_streams: count must be a positive int, got {count!r}")
    previous, _setting["streams"] = _setting["streams"], count
    return restoring(_setting, "streams", previous)


def _stream(i: int) -> mx.Stream:
    while len(_streams) < i:
        _streams.append(mx.new_stream(mx.cpu))
    return _streams[i - 1]


def _shards(size: int, count: int, align: int = 1) -> list[int]:
    """Where to cut ``size`` examples into ``count`` contiguous shards of nearly equal size, at
    multiples of ``align``; none (``[]``) for fewer than two shards."""
    cuts = [size * k // count // align * align for k in range(1, count)]
    return cuts if count > 1 and 0 < cuts[0] and cuts[-1] < size and len(set(cuts)) == len(cuts) else []


class Shards(NamedTuple):
    """A batch's per-example outputs, one per shard, unconcatenated: ``outs[k]`` computed on ``streams[k]``."""

    outs: list[Any]
    streams: list[mx.Stream]

    def map(self, f: Callable[[Any], Any]) -> Shards:
        return Shards([f(out) for out in self.outs], self.streams)

    @property
    def dtype(self) -> mx.Dtype:
        return self.outs[0].dtype


def sharded(run: Callable[..., Any], args: tuple[Any, ...], axes: tuple[int | None, ...], size: int, reduced: bool = False) -> Any:
    """``run(*args)``, a batch of ``size`` examples cut into one shard per stream.

    Arguments on axis 0 are cut, shared ones (axis ``None``) passed whole; arguments that are
    pytrees, or batched on another axis, run unsharded. Where a reduction follows
    (``reduced``) the outputs come back as ``Shards``, unconcatenated; a batch of small
    examples is cut only there.
    """
    batched = [a for a, ax in zip(args, axes) if ax is not None]
    if any(ax != 0 or not isinstance(a, mx.array) for a, ax in zip(args, axes) if ax is not None):
        return run(*args)
    elements = sum(a.size for a in batched)
    small = elements < _EXAMPLE_AT_LEAST * size
    cuts = _shards(size, min(_setting["streams"], size), _ALIGN if small else 1)
    worth_it = not small or (reduced and elements >= SMALL_EXAMPLES_ABOVE)
    if not cuts or not worth_it or not may_shard(batched):
        return run(*args)
    parts = [None if ax is None else mx.split(a, cuts, axis=0) for a, ax in zip(args, axes)]
    shards = [tuple(a if part is None else part[k] for a, part in zip(args, parts)) for k in range(len(cuts) + 1)]
    with own_trace(OwnTrace(static=True, shard=False)):  # shapes are fixed where we shard; no shards within a shard
        outs = on_streams([lambda shard=shard: run(*shard) for shard in shards])
    if reduced:
        return outs
    return optree.tree_map(lambda *leaves: mx.concatenate(leaves, axis=0), *outs.outs)


def may_shard(arrays: list[Any]) -> bool:
    """Whether a batch of ``arrays`` may be cut now: on the CPU, at least ``SHARD_ABOVE``
    elements, and not traced by a user's ``mx.compile`` or ``mx.vmap`` (whose graph would keep
    the shard sizes, and which a shapeless compile refuses: "Split cannot infer output shapes")
    unless ``fixed_shapes(True)`` promised fixed shapes.
    Inside ``transforms.compiled``'s own trace, what it decided."""
    own = in_own_trace()
    if own is not None:
        return own.shard
    arrays = [x for x in optree.tree_leaves(arrays) if isinstance(x, mx.array)]
    if not worth_cutting(sum(x.size for x in arrays)):
        return False
    return shapes_may_be_read(arrays)


def worth_cutting(size: int) -> bool:
    """Whether a batch of ``size`` elements is worth cutting where it may be cut: at least
    ``SHARD_ABOVE`` elements, on the CPU, with 2 or more streams set."""
    return size >= SHARD_ABOVE and _setting["streams"] >= 2 and mx.default_device().type == mx.DeviceType.cpu


def on_streams(jobs: list[Callable[[], Any]]) -> Shards:
    """Each job's graph built on its own CPU stream (the first on the default one), to run in parallel when evaluated; the outputs as ``Shards``."""
    streams = [mx.default_stream(mx.cpu) if k == 0 else _stream(k) for k in range(len(jobs))]
    outs = []
    for job, stream in zip(jobs, streams):
        with mx.stream(stream):
            outs.append(job())
    return Shards(outs, streams)
