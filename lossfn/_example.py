"""The per-example contract: what every loss of :mod:`lossfn` checks and does around its maths.

A loss takes the arrays of ONE example. Its maths is written over the example's trailing
axes, so that the same code, given arrays with a leading batch axis, is the loss's *batch
rule*: ``transforms.reduce`` runs a whole batch in one call instead of a ``vmap`` (see
``transforms._batching``). Called on one example, the loss

- converts NumPy arrays, lists and numbers to ``mx.array``;
- raises a ``TypeError`` unless its first argument (the input) is real floating point, or
  where any argument is complex;
- raises a ``ValueError`` where an argument with a declared example shape has another number
  of dimensions (a batch given to a per-example loss), naming the transforms that batch it;
- computes float16 and bfloat16 in float32 and rounds the result once (``transforms._precision``);
  a loss whose ``layout`` says that it computes in float32 itself is given its arguments as they are.

A loss whose arguments are not ``(input, target, ...)`` all batched declares where they are
in a ``transforms._batching.Layout``, which the transforms read.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import mlx.core as mx

from transforms._batching import Layout
from transforms._precision import in_float32, upcast

Shape = str  # an example's shape as the docs write it: "()", "(C,)", "(T, C)"


def _rank(shape: Shape) -> int:
    return len([d for d in shape.strip("()").split(",") if d.strip()])


def per_example(
    *,
    batch_rule: Callable[..., Any] | None = None,
    layout: Layout | None = None,
    **shapes: Shape | tuple[Shape, ...],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a per-example loss: argument checks, half precision, and its batch rule.

    ``shapes`` gives the example shape of positional arguments by name (a tuple where
    several are allowed); the others are element-wise (any shape). ``batch_rule`` replaces
    the default rule, the loss's own maths applied to the batch. ``layout`` is attached.
    """
    promote = layout is None or layout.promote
    allowed = {name: (spec,) if isinstance(spec, str) else spec for name, spec in shapes.items()}

    def decorate(maths: Callable[..., Any]) -> Callable[..., Any]:
        names = [
            p.name
            for p in inspect.signature(maths).parameters.values()
            if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]
        promoted = in_float32(maths, cast_args=promote)
        rule_maths = batch_rule or maths

        @functools.wraps(maths)
        def loss(*args: Any, **static: Any) -> Any:
            args = _arrays(maths.__name__, names, args)
            for name, x in zip(names, args):
                if name in allowed and isinstance(x, mx.array) and x.ndim not in [_rank(s) for s in allowed[name]]:
                    raise ValueError(
                        f"{maths.__name__} takes one example: {name} must have shape {' or '.join(allowed[name])}, "
                        f"got shape {tuple(x.shape)}. For a batch, use transforms.reduce(lossfn.{maths.__name__}, "
                        f"reduction), transforms.batched(lossfn.{maths.__name__}) or mx.vmap(lossfn.{maths.__name__})"
                    )
            return promoted(*args, **static)

        def rule(*args: Any, **static: Any) -> Any:
            arrays = _arrays(maths.__name__, names, args)
            return rule_maths(*(upcast(arrays) if promote else arrays), **static)

        loss.batch_rule = rule  # type: ignore[attr-defined]
        if layout is not None:
            loss.layout = layout  # type: ignore[attr-defined]
        return loss

    return decorate


def _arrays(loss: str, names: list[str], args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` as arrays (None stays None), checked for dtype: the input floating, nothing complex."""
    out = []
    for i, x in enumerate(args):
        name = names[i] if i < len(names) else f"argument {i}"
        if x is not None and not isinstance(x, mx.array):
            try:
                x = mx.array(x)
            except (TypeError, ValueError) as err:
                raise TypeError(f"{loss}: {name} must be an array, got {type(x).__name__}") from err
        if isinstance(x, mx.array):
            if mx.issubdtype(x.dtype, mx.complexfloating):
                raise TypeError(f"{loss}: {name} must be real, got dtype {x.dtype}")
            if i == 0 and not mx.issubdtype(x.dtype, mx.floating):
                raise TypeError(f"{loss}: {name} must be a floating-point array, got dtype {x.dtype}")
        out.append(x)
    return tuple(out)
