"""Exact means across micro-batches and data-parallel processes.

A batch 'mean' is ``numerator / denominator`` (the weight sum, element count or batch size).
Cut into pieces, the mean of the pieces' means is not the batch's mean wherever the
denominators differ (padding, ``ignore_index``, class weights, masks, an uneven last batch):
``(x1/n1 + x2/n2) / 2 != (x1 + x2) / (n1 + n2)``. Here every piece is divided by the *whole*
batch's denominator, so the pieces' losses, and their gradients, add up to the batch's:

- across the processes of an ``mx.distributed`` group: ``reduce(f, 'mean', group=g)``, or the
  :func:`across` context for ``lossfn.functional`` and ``lossfn.nn``; each process's gradient
  is its share, and :func:`sum_gradients` adds the shares;
- across micro-batches: :func:`accumulate`, which takes the denominators first (a pass that
  evaluates only them: the targets, weights and masks, not the model) and then the gradients.

A reduction reads the scope it runs in (:func:`current`) when it is traced; so compiled graphs
of ``lossfn.functional`` run uncompiled inside a scope (``compiled``).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import mlx.core as mx
import optree

Params = Any


@dataclasses.dataclass
class Scope:
    """How the batch reductions traced inside it divide.

    ``'group'``: by the denominator summed over ``group``. ``'count'``: they record their
    denominators in ``counts``. ``'apply'``: they divide by ``denominators``, one per reduction
    in the order they run.
    """

    mode: Literal["group", "count", "apply"]
    group: Any = None
    counts: list[mx.array] = dataclasses.field(default_factory=list)
    denominators: mx.array | None = None
    position: int = 0

    def next_denominator(self) -> mx.array:
        if self.denominators is None or self.position >= self.denominators.shape[0]:
            raise RuntimeError("accumulate: a micro-batch ran more reductions than its counting pass saw")
        self.position += 1
        return self.denominators[self.position - 1]


_SCOPE: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("lossfn_reduction_scope", default=None)


def current() -> Scope | None:
    """The scope the reductions run in now, or None."""
    return _SCOPE.get()


@contextlib.contextmanager
def _entered(scope: Scope) -> Iterator[Scope]:
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def across(group: Any) -> contextlib.AbstractContextManager[Scope]:
    """Every batch reduction inside is of the global batch sharded over ``group``: ``with across(g): F.cross_entropy(...)``.

    The opt-in for ``lossfn.functional`` and ``lossfn.nn``, which have PyTorch's signatures and so
    no ``group`` argument. (Their compiled graphs run uncompiled inside.)
    """
    return _entered(Scope("group", group=group))


def sum_gradients(grads: Params, group: Any) -> Params:
    """``grads`` (a pytree) summed over ``group``: the exact gradient of a global reduction.

    ``mlx.nn.average_gradients`` divides that sum by the group's size: to use it instead,
    multiply the loss by ``group.size()``.
    """
    return optree.tree_map(lambda g: mx.distributed.all_sum(g, group=group), grads)


def accumulate(
    loss: Callable[..., mx.array],
    params: Params,
    micro_batches: Iterable[Sequence[Any]],
    *,
    group: Any = None,
) -> tuple[mx.array, Params]:
    """``(value, grad)`` of ``loss(params, *batch)`` on the union of ``micro_batches`` (and of ``group``'s processes).

    ``loss`` reduces with ``transforms.reduce`` (or ``lossfn.functional``) as on one batch.
    First each micro-batch's denominators are counted (only they are evaluated), summed, and
    summed over ``group`` (one ``all_sum``); then each micro-batch's loss, divided by the
    totals, is differentiated and evaluated in turn (one micro-batch's graph at a time), and
    the values and gradients are added. With ``group`` the gradients are summed over it too:
    every process gets the gradient of one batch of all the pieces, K micro-batches on each of
    R processes, and the global loss. Outside ``mx.compile`` (it evaluates).
    """
    batches = [tuple(b) for b in micro_batches]
    if not batches:
        raise ValueError("accumulate needs at least one micro-batch")
    counted = []
    for batch in batches:
        with _entered(Scope("count")) as scope:
            loss(params, *batch)
        counted.append(scope.counts)
    if len({len(c) for c in counted}) != 1 or not counted[0]:
        raise ValueError(f"accumulate: every micro-batch must run the same reductions (at least one), counted {[len(c) for c in counted]}")
    totals = mx.sum(mx.stack([mx.stack(c) for c in counted]), axis=0)
    if group is not None:
        totals = mx.distributed.all_sum(totals, group=group)
    mx.eval(totals)
    value_and_grad = mx.value_and_grad(loss)
    value, grads = None, None
    for batch in batches:
        with _entered(Scope("apply", denominators=totals)):
            v, g = value_and_grad(params, *batch)
        value = v if value is None else value + v
        grads = g if grads is None else optree.tree_map(mx.add, grads, g)
        mx.eval(value, grads)
    if group is not None:
        value, grads = mx.distributed.all_sum(value, group=group), sum_gradients(grads, group)
    return value, grads
