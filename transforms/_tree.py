r"""Pytree losses: ``tree_loss`` applies a pytree of losses to matching pytrees of outputs and targets.

For a model with several heads (``{'cls': logits, 'box': deltas}``) and one loss per head,
the example's loss is the weighted sum of the heads' losses, each reduced to a scalar by
``reduce_example``:

.. math:: \ell(p, y) = \sum_h w_h\, r\big(f_h(p_h, y_h)\big)

and its parts stay readable: ``f.parts(p, y)`` is the pytree of the heads' own outputs
(unweighted, unreduced, a :class:`Weighted` where a head is weighted), and
``reduce_tree(f.parts, 'mean')`` reduces each head by ``reduce``'s law, e.g. PyTorch's mean
for every head, for logging. The laws, with the default ``example_reduction='sum'``::

    reduce(tree_loss(fs, ws), 'sum')(p, y) == sum_h ws[h] * reduce(fs[h], 'sum')(p[h], y[h])
    reduce_tree(tree_loss(fs).parts, r)(p, y) == {h: reduce(fs[h], r)(p[h], y[h])}

A head's class weights or ignored targets (its ``Weighted`` weight) enter its parts but not
the total, which adds the heads' summed values; the total is a plain scalar, so it composes
with ``reduce``, ``vmap``, ``grad``, ``compile`` and the per-example transforms.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import mlx.core as mx
import optree

from ._batching import InAxes, Loss, as_arrays, promoted, run_batched
from ._per_example import ExampleReduction, reduce_example
from ._precision import cast_floats, result_dtype
from ._reduce import Reduction, Weighted, check_reduction, reduce_batch, value_of

Tree = Any


def tree_loss(losses: Tree, weights: Tree | None = None, *, example_reduction: ExampleReduction = "sum") -> Loss:
    """A pytree of per-example losses -> ``f(outputs, targets)``, one scalar per example.

    ``losses`` is a pytree (dicts, lists, tuples) whose leaves are losses ``f_h(p_h, y_h)``;
    its structure is a prefix of the outputs' and the targets': each loss receives the
    subtree at its position (a head may output a tuple, ``(mean, var)``). ``weights`` is
    ``None`` (every head 1) or a pytree of the same structure as ``losses`` holding numbers
    or arrays (learned or scheduled weights: build the loss inside the step). Mismatched
    structures raise a ``ValueError`` naming each path that differs. ``f.parts(p, y)``
    returns the heads' own outputs, in the structure of ``losses``.
    """
    reduce_example(mx.array(0.0), example_reduction)  # validates the name
    paths, heads, spec = optree.tree_flatten_with_path(losses, is_leaf=callable)
    if not heads or not all(callable(f) for f in heads):
        raise TypeError(f"tree_loss: losses must be a pytree of callables, got {losses!r}")
    scales = [1] * len(heads) if weights is None else _weights_at(losses, weights, paths)

    def parts(outputs: Tree, targets: Tree) -> Tree:
        _check_matches(losses, outputs, "outputs")
        _check_matches(losses, targets, "targets")
        outs = [f(_at(outputs, p), _at(targets, p)) for f, p in zip(heads, paths)]
        return optree.tree_unflatten(spec, outs)

    def total(outputs: Tree, targets: Tree) -> mx.array:
        outs = optree.tree_leaves(parts(outputs, targets), is_leaf=_is_weighted)
        terms = [w * value_of(reduce_example(o, example_reduction)) for w, o in zip(scales, outs)]
        return functools.reduce(lambda a, b: a + b, terms)

    total.parts = parts  # type: ignore[attr-defined]
    total.losses = losses  # type: ignore[attr-defined]
    return total


def reduce_tree(loss: Loss, reduction: Reduction = "mean", *, in_axes: InAxes | None = None, group: Any = None) -> Loss:
    """``reduce`` for a loss returning a pytree: batch it, then reduce every leaf by ``reduce``'s law.

    A :class:`Weighted` is one leaf (its mean is ``sum(value) / sum(weight)``); the result has
    the loss's output structure. Meant for ``tree_loss(...).parts``: the per-head batch losses.
    ``group``: each head's reduction is of the global batch, as in ``reduce``.
    """
    check_reduction(reduction)

    @functools.wraps(loss, updated=())
    def reduced_tree(*args: Any, **static: Any) -> Tree:
        args = as_arrays(args)
        out = run_batched(loss, promoted(loss, args), in_axes, static)
        reduced = optree.tree_map(lambda o: reduce_batch(o, reduction, group=group), out, is_leaf=_is_weighted)
        return cast_floats(reduced, result_dtype(args))

    return reduced_tree


# --- structures --------------------------------------------------------------------------------


def _is_weighted(x: Any) -> bool:
    return isinstance(x, Weighted)


def _children(tree: Any) -> dict[Any, Any] | None:
    """A node's children by entry (dict key or index); ``None`` for a leaf."""
    if isinstance(tree, mx.array) or callable(tree):
        return None
    try:
        one = optree.tree_flatten_one_level(tree)
    except ValueError:
        return None
    return dict(zip(one.entries, one.children))


def _kind(tree: Any) -> str:
    if isinstance(tree, Mapping):
        return "dict"
    if isinstance(tree, (list, tuple)):
        return "sequence"
    return type(tree).__name__


def _entry(key: Any) -> str:
    return f"[{key!r}]"


def _differences(spec: Any, tree: Any, path: str, is_spec_leaf: Any) -> list[str]:
    """Paths where ``tree`` does not have ``spec``'s structure down to ``spec``'s leaves."""
    if is_spec_leaf(spec):
        return []
    want, got = _children(spec), _children(tree)
    if got is None or _kind(spec) != _kind(tree):
        return [f"{path or '(top level)'} has type {type(tree).__name__}, expected a {_kind(spec)} with entries {list(want or {})}"]
    found = [f"{path}{_entry(k)} is missing" for k in want if k not in got]
    found += [f"{path}{_entry(k)} has no loss" for k in got if k not in want]
    for k in want:
        if k in got:
            found += _differences(want[k], got[k], path + _entry(k), is_spec_leaf)
    return found


def _check_matches(losses: Tree, tree: Tree, what: str) -> None:
    differences = _differences(losses, tree, "", callable)
    if differences:
        raise ValueError(
            f"tree_loss: {what} do not match the structure of the losses: "
            + "; ".join(f"{what}{d}" if d.startswith("[") else f"{what} {d}" for d in differences)
        )


def _weights_at(losses: Tree, weights: Tree, paths: list[tuple]) -> list[Any]:
    _check_matches(losses, weights, "weights")
    scales = [_at(weights, p) for p in paths]
    bad = [
        f"weights{''.join(map(_entry, p))} has type {type(w).__name__}"
        for p, w in zip(paths, scales)
        if not isinstance(w, (int, float, mx.array)) or isinstance(w, bool)
    ]
    if bad:
        raise TypeError("tree_loss: each weight must be a number or an array: " + "; ".join(bad))
    return scales


def _at(tree: Tree, path: tuple) -> Any:
    for key in path:
        tree = tree[key]
    return tree
