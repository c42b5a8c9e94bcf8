"""Per-example gradients: one loss value and one gradient per example of a batch.

A *parameter loss* ``loss(params, *example)`` takes a pytree of parameters (nested
dicts/lists/tuples of arrays, as ``nn.Module.parameters()`` returns) and the arrays of ONE
example. ``module_loss(model, f)`` makes one from an ``nn.Module`` and a per-example loss.
The example's loss is reduced to a scalar by ``reduce_example`` (the sum of its elements by
default), and for a batch of ``B`` examples, with :math:`\\ell_i` that scalar,

.. math:: g_i = \\nabla_\\theta \\ell_i(\\theta), \\qquad \\|g_i\\| = \\Big(\\sum_{\\text{leaves}} \\|g_i^{leaf}\\|_F^2\\Big)^{1/2},
          \\qquad \\mathrm{clip}_C = \\sum_i \\min(1, C / \\|g_i\\|)\\, g_i + \\mathcal{N}(0, \\sigma^2 C^2)

Every gradient leaf has the batch axis first: ``(B, *leaf.shape)``. The laws, for the
default ``example_reduction='sum'``::

    sum(grads, axis=0) == grad(reduce(f, 'sum'))                 # the batch gradient
    clipped_grad(f, C)(...).grad == sum(grads) if C >= max(norms)

Class weights and ignored targets (a loss returning ``Weighted(value, weight)``): gradients
are of ``value`` (the weighted loss); ``weight`` is returned with the values, so the gradient
of the batch 'mean' ``sum(value) / sum(weight)`` is ``sum(grads) / sum(values.weight)``.

Two ways to compute them (``method``): 'vmap' differentiates ``vmap(loss)`` with respect to B
copies of the parameters (any model whose forward pass vmaps, convolutions included);
'linear' handles models whose parameters all belong to ``nn.Linear`` layers from two small
factors per layer, so that norms and clipped sums need no ``(B, out, in)`` gradient (see
``_linear_factors``). 'auto' takes 'linear' where it applies.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, Literal, Protocol, get_args

import mlx.core as mx
import mlx.nn as nn
import optree

from ._batching import InAxes, Loss, _leading_size, batch_axes, with_trailing_axes
from ._precision import HALF
from ._reduce import Weighted, reduce_values, value_of
from ._scale_out import sum_gradients
from ._sums import accumulator_dtype, accurate_sum

ExampleReduction = Literal["sum", "mean"]
Method = Literal["auto", "vmap", "linear"]
Params = Any  # a pytree of mx.array


def reduce_example(out: mx.array | Weighted, how: ExampleReduction = "sum") -> mx.array | Weighted:
    """One example's loss as a scalar: 'sum' or 'mean' of its elements.

    A :class:`Weighted` loss stays weighted under 'sum' (``Weighted(sum(value), sum(weight))``,
    so a batch 'mean' of the results is still ``sum(values) / sum(weights)``); under 'mean'
    it becomes ``sum(value) / sum(weight)``, ``nan`` for an example whose elements are all
    ignored. A scalar loss (cross-entropy) is its own sum and mean.
    """
    _check_example_reduction(how)
    if how == "mean":
        return reduce_values(out, "mean")
    if isinstance(out, Weighted):
        return Weighted(accurate_sum(out.value), accurate_sum(mx.broadcast_to(out.weight, out.value.shape)))
    return accurate_sum(out)


# --- losses of a model ----------------------------------------------------------------------


@contextlib.contextmanager
def parameters_of(model: nn.Module, params: Params) -> Iterator[nn.Module]:
    """``model`` with ``params`` (a full or partial parameter tree) in place, restored on exit."""
    saved = model.parameters()
    model.update(params)
    try:
        yield model
    finally:
        model.update(saved)


def module_loss(model: nn.Module, loss: Loss) -> Loss:
    """``model`` followed by ``loss``: a parameter loss ``f(params, x, *rest) = loss(model_params(x), *rest)``.

    ``model`` sees one example as a batch of one (``x[None]``, output ``[0]``), so layers that
    need a batch axis (convolutions) work; ``x`` and the output may be pytrees. ``params`` is
    put in place for the call and the model's own parameters restored after, so ``f`` is a
    pure function of its arguments; parameters not in ``params`` (frozen ones) are constants.
    Shared trailing arguments of ``loss`` (``weighted``'s class weights) stay shared.
    """

    def model_loss(params: Params, x: Any, *rest: Any, **static: Any) -> Any:
        with parameters_of(model, params):
            out = model(optree.tree_map(lambda a: a[None], x))
        return loss(optree.tree_map(lambda o: o[0], out), *rest, **static)

    model_loss.__name__ = model_loss.__qualname__ = f"module_loss({type(model).__name__}, {_name(loss)})"

    # Read by the 'linear' method, which runs the model on the whole batch instead. The
    # function itself is recorded: a wrapper that copied these attributes (functools.wraps)
    # may compute something else, and gets the 'vmap' method.
    model_loss.module_loss = (model, loss, model_loss)  # type: ignore[attr-defined]
    return with_trailing_axes(model_loss, loss)


# --- the per-example computation, materialised or factored ------------------------------------


class PerExample(Protocol):
    """Per-example values and gradients, in whichever form is cheapest to reduce."""

    values: mx.array | Weighted

    def grads(self) -> Params: ...
    def sq_norms(self) -> mx.array: ...
    def combine(self, scale: mx.array) -> Params: ...


class _Materialised:
    """Gradients as arrays ``(B, *leaf.shape)``; ``combine`` is a batch gradient of the scaled loss."""

    def __init__(self, values: mx.array | Weighted, grads: Params, scaled_grad: Callable[[mx.array], Params]):
        self.values, self._grads, self._scaled_grad = values, grads, scaled_grad

    def grads(self) -> Params:
        return self._grads

    def sq_norms(self) -> mx.array:
        return _sq_norms(self._grads)

    def combine(self, scale: mx.array) -> Params:
        return self._scaled_grad(scale)


def _sq_norms(grads: Params) -> mx.array:
    return sum(_row_sum_of_squares(g) for g in optree.tree_leaves(grads))


def _combine(grads: Params, scale: mx.array) -> Params:
    """``sum_i scale_i grads_i`` for every leaf."""
    return optree.tree_map(lambda g: _scaled_batch_sum(g, scale.astype(g.dtype)), grads)


def _row_sum_of_squares(x: mx.array) -> mx.array:
    """``sum(x_i^2)`` over every axis but the first: ``(B, ...) -> (B,)``, squared and summed in the
    accumulator dtype (float64 on the CPU: float32 sums run sequentially); float32 for half precision."""
    squares = mx.square(x.astype(accumulator_dtype()))
    return mx.sum(squares, axis=tuple(range(1, x.ndim))).astype(mx.float32 if x.dtype in HALF else x.dtype)


def _scaled_batch_sum(g: mx.array, scale: mx.array) -> mx.array:
    """``sum_i scale_i g_i``: ``(B, ...) -> (...)``."""
    return mx.tensordot(scale, g, axes=1)


def _vmap_per_example(loss: Loss, params: Params, batch: tuple, axes: tuple, how: ExampleReduction, static: dict) -> _Materialised:
    """Gradients with respect to B copies of the parameters of ``sum_i loss(params_i, example_i)``."""
    size = _batch_size(loss, batch, axes)
    copies = optree.tree_map(lambda p: mx.broadcast_to(p, (size, *p.shape)), params)

    def example(p: Params, *ex: Any) -> Any:
        return reduce_example(loss(p, *ex, **static), how)

    def total(copies: Params) -> tuple[mx.array, Any]:
        out = mx.vmap(example, in_axes=(0, *axes))(copies, *batch)
        return mx.sum(value_of(out)), out

    def scaled_grad(scale: mx.array) -> Params:
        # sum_i s_i g_i is the gradient of sum_i s_i l_i: one batch backward pass. Contracting
        # the per-example gradients instead would first copy them whenever MLX laid them out
        # transposed (a Linear weight's are), 10x the cost at 200 MB.
        def scaled_total(p: Params) -> mx.array:
            out = mx.vmap(example, in_axes=(None, *axes))(p, *batch)
            return mx.sum(mx.stop_gradient(scale) * value_of(out))

        return mx.grad(scaled_total)(params)

    (_, values), grads = mx.value_and_grad(total)(copies)
    return _Materialised(values, grads, scaled_grad)


def per_example(
    loss: Loss,
    params: Params,
    batch: tuple,
    static: dict,
    in_axes: InAxes | None,
    how: ExampleReduction,
    method: Method,
) -> PerExample:
    """Choose the method and compute; 'linear' raises where it does not apply, 'auto' falls back."""
    from ._linear_factors import (
        linear_per_example,  # it builds on this module's helpers
    )

    check_options(method, how)
    if not batch:
        raise TypeError(f"{_name(loss)}: per-example gradients need at least one batched argument")
    axes = tuple(in_axes) if in_axes is not None else batch_axes(loss, len(batch))
    if len(axes) != len(batch):
        raise ValueError(f"{_name(loss)}: in_axes has {len(axes)} entries for {len(batch)} batched arguments")
    if method != "vmap":
        factored = linear_per_example(loss, params, batch, axes, how, static, _batch_size(loss, batch, axes))
        if not isinstance(factored, str):
            return factored
        if method == "linear":
            raise ValueError(f"{_name(loss)}: method='linear' does not apply: {factored}")
    return _vmap_per_example(loss, params, batch, axes, how, static)


def check_options(method: str, how: str) -> None:
    if method not in get_args(Method):
        raise ValueError(f"method must be one of {get_args(Method)}, got {method!r}")
    _check_example_reduction(how)


def _check_example_reduction(how: str) -> None:
    if how not in get_args(ExampleReduction):
        raise ValueError(f"example_reduction must be one of {get_args(ExampleReduction)}, got {how!r}")


def _batch_size(loss: Loss, batch: tuple, axes: tuple) -> int:
    sizes = {_leading_size(a, ax) for a, ax in zip(batch, axes) if ax is not None} - {None}
    if len(sizes) != 1:
        what = f"saw {sorted(sizes)}" if sizes else "found no batched array"
        raise ValueError(f"{_name(loss)}: batched arguments must share one batch size, {what}")
    return sizes.pop()


# --- public transforms ------------------------------------------------------------------------


def per_example_value_and_grad(
    loss: Loss,
    *,
    in_axes: InAxes | None = None,
    example_reduction: ExampleReduction = "sum",
    method: Method = "auto",
) -> Callable[..., tuple[Any, Params]]:
    """``loss(params, *example)`` -> ``f(params, *batch) = (values, grads)``, one per example.

    ``values`` has shape ``(B,)`` (a :class:`Weighted` pair of them for a weighted loss);
    each leaf of ``grads`` is ``(B, *leaf.shape)``. ``in_axes`` gives the batch axis of each
    batched argument (``None``: shared), by default 0 except trailing arguments a transform
    declared shared. Keywords are static and passed to ``loss``.
    """
    check_options(method, example_reduction)

    @functools.wraps(loss)
    def value_and_grads(params: Params, *batch: Any, **static: Any) -> tuple[Any, Params]:
        pe = per_example(loss, params, batch, static, in_axes, example_reduction, method)
        return pe.values, pe.grads()

    return value_and_grads


def per_example_grad_norms(
    loss: Loss,
    *,
    in_axes: InAxes | None = None,
    example_reduction: ExampleReduction = "sum",
    method: Method = "auto",
) -> Callable[..., tuple[Any, mx.array]]:
    """``loss(params, *example)`` -> ``f(params, *batch) = (values, norms)``: global L2 norms ``(B,)``.

    Equals ``grad_norms`` of ``per_example_value_and_grad``'s gradients; with the 'linear'
    method no per-example gradient is formed.
    """
    check_options(method, example_reduction)

    @functools.wraps(loss)
    def values_and_norms(params: Params, *batch: Any, **static: Any) -> tuple[Any, mx.array]:
        pe = per_example(loss, params, batch, static, in_axes, example_reduction, method)
        return pe.values, mx.sqrt(pe.sq_norms())

    return values_and_norms


def grad_norms(grads: Params) -> mx.array:
    r"""Per-example global L2 norm of a gradient pytree whose leaves are ``(B, ...)``: shape ``(B,)``.

    .. math:: \|g_i\| = \Big(\sum_{\text{leaves}} \sum_j (g_i^{leaf})_j^2\Big)^{1/2}
    """
    return mx.sqrt(_sq_norms(grads))


def clip_scale(norms: mx.array, max_norm: float | mx.array) -> mx.array:
    """``min(1, C / norm)``, computed as ``C / max(norm, C)``: exactly 1 for a norm within the bound."""
    return max_norm / mx.maximum(norms, max_norm)


def clip_and_sum(
    grads: Params,
    max_norm: float | mx.array,
    *,
    noise_multiplier: float | mx.array = 0.0,
    key: mx.array | None = None,
) -> Params:
    r"""Clip each example's gradient to global norm ``max_norm`` and sum over the batch (DP-SGD).

    .. math:: \sum_i \min(1, C / \|g_i\|)\, g_i \;+\; \sigma C\, \xi, \quad \xi \sim \mathcal{N}(0, I)

    ``grads`` has leaves ``(B, ...)``; the result has the parameters' shapes. Noise with
    ``noise_multiplier`` :math:`\sigma > 0` needs an explicit ``key`` (``mx.random.key``):
    the same key gives the same noise.
    """
    _check_clip(max_norm, noise_multiplier, key)
    total = _combine(grads, clip_scale(mx.sqrt(_sq_norms(grads)), max_norm))
    return add_noise(total, noise_multiplier * max_norm, key) if _has_noise(noise_multiplier) else total


def clipped_grad(
    loss: Loss,
    max_norm: float | mx.array,
    *,
    noise_multiplier: float | mx.array = 0.0,
    in_axes: InAxes | None = None,
    example_reduction: ExampleReduction = "sum",
    method: Method = "auto",
    group: Any = None,
) -> Callable[..., tuple[Any, Params, mx.array]]:
    """``loss(params, *example)`` -> ``f(params, *batch, key=None) = (values, grad, norms)``: one DP-SGD step.

    ``grad`` is ``clip_and_sum`` of the per-example gradients (with noise when
    ``noise_multiplier > 0``, drawn from ``key``), ``norms`` their norms before clipping.
    With the 'linear' method the clipped sum is one matmul per layer and no per-example
    gradient is formed. With ``group`` (``mx.distributed``) each process clips its own shard's
    examples, the clipped sums are summed over the group, and the noise is added once, to that
    sum, from ``key`` (the same on every process): every process gets the step of one process
    on the whole batch. ``values`` and ``norms`` stay the shard's.
    """
    _check_clip(max_norm, noise_multiplier, None, need_key=False)
    check_options(method, example_reduction)

    @functools.wraps(loss)
    def step(params: Params, *batch: Any, key: mx.array | None = None, **static: Any) -> tuple[Any, Params, mx.array]:
        _check_clip(max_norm, noise_multiplier, key)
        pe = per_example(loss, params, batch, static, in_axes, example_reduction, method)
        norms = mx.sqrt(pe.sq_norms())
        total = pe.combine(clip_scale(norms, max_norm))
        if group is not None:
            total = sum_gradients(total, group)
        if _has_noise(noise_multiplier):
            total = add_noise(total, noise_multiplier * max_norm, key)
        return pe.values, total, norms

    return step


def add_noise(tree: Params, std: float | mx.array, key: mx.array | None) -> Params:
    """``tree`` plus independent ``N(0, std^2)`` noise on every element, drawn from ``key``."""
    leaves, spec = optree.tree_flatten(tree)
    keys = mx.random.split(key, len(leaves))
    noisy = [x + std * mx.random.normal(x.shape, dtype=x.dtype, key=keys[i]) for i, x in enumerate(leaves)]
    return optree.tree_unflatten(spec, noisy)


def _has_noise(noise_multiplier: float | mx.array) -> bool:
    return isinstance(noise_multiplier, mx.array) or noise_multiplier != 0


def _check_clip(max_norm: Any, noise_multiplier: Any, key: Any, need_key: bool = True) -> None:
    if isinstance(max_norm, (int, float)) and not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    if isinstance(noise_multiplier, (int, float)) and not noise_multiplier >= 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
    if need_key and key is None and _has_noise(noise_multiplier):
        raise ValueError(
            f"noise_multiplier={noise_multiplier} needs an explicit key (mx.random.key(seed)) so the noise is reproducible"
        )


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", repr(fn))
