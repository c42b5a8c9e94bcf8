r"""Per-example gradients of ``nn.Linear`` layers from two factors, never materialised unless asked.

A layer :math:`y = x W^T + b` applied at :math:`T` positions of example :math:`i` (inputs
:math:`X_i \in \mathbb{R}^{T \times in}`, gradients of the example's loss with respect to the
outputs :math:`G_i \in \mathbb{R}^{T \times out}`) has per-example gradients

.. math:: \nabla_W \ell_i = G_i^T X_i, \qquad \nabla_b \ell_i = \textstyle\sum_t G_{i,t}

so, without forming the ``(B, out, in)`` gradients (for :math:`T > 1` the norm uses the
:math:`T \times T` Gram matrices only where they are smaller than the gradient),

.. math:: \|\nabla_W \ell_i\|_F^2 = \|g_i\|^2 \|x_i\|^2 \;(T = 1), \qquad
          \langle X_i X_i^T, G_i G_i^T \rangle \;(T > 1), \qquad
          \sum_i c_i \nabla_W \ell_i = (c \odot G)^T X \;\text{(one matmul)}.

The factors come from one forward pass on the whole batch and one backward pass to the
layer outputs: each layer's output gets a zero perturbation ``z`` and ``d(sum_i l_i)/dz``
is ``G`` (example ``i``'s row depends on example ``i`` only). No gradient with respect to
a weight is ever taken. The layers report their inputs while their class is temporarily
swapped for ``_TappedLinear``; a layer used several times (weight sharing, a sequence axis)
stacks its uses along ``T``.

It applies when every parameter leaf is the weight or bias of an ``nn.Linear`` and every
layer sees the batch on axis 0 (checked); like the 'vmap' method it assumes the examples
do not interact in the forward pass (no batch statistics).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import mlx.core as mx
import mlx.nn as nn
import optree

from ._per_example import (
    ExampleReduction,
    Params,
    parameters_of,
    reduce_example,
    value_of,
)
from ._reduce import Loss, Weighted


class Factors(NamedTuple):
    """One layer's factors over the batch: inputs ``(B, T, in)``, output gradients ``(B, T, out)``."""

    inputs: mx.array
    out_grads: mx.array


# --- tapping the layers -------------------------------------------------------------------------


class _Tape:
    """Records each tapped call (layer, input, output) and adds the next perturbation, if any."""

    def __init__(self, perturbations: list[mx.array] | None = None):
        self._perturbations = iter(perturbations) if perturbations is not None else None
        self.calls: list[tuple[nn.Linear, mx.array, mx.array]] = []

    def __call__(self, layer: nn.Linear, x: mx.array, y: mx.array) -> mx.array:
        self.calls.append((layer, x, y))
        return y if self._perturbations is None else y + next(self._perturbations)


_TAPES: list[_Tape] = []


class _TappedLinear(nn.Linear):
    """``nn.Linear`` that reports to the active tape; only ever set as ``__class__`` by ``_tapping``."""

    def __call__(self, x: mx.array) -> mx.array:
        return _TAPES[-1](self, x, super().__call__(x))


@contextlib.contextmanager
def _tapping(layers: list[nn.Linear], tape: _Tape) -> Iterator[_Tape]:
    _TAPES.append(tape)
    for layer in layers:
        layer.__class__ = _TappedLinear
    try:
        yield tape
    finally:
        for layer in layers:
            layer.__class__ = nn.Linear
        _TAPES.pop()


# --- the factored per-example gradients -------------------------------------------------------


def _weight_grads(f: Factors) -> mx.array:
    x, g = f
    return g[:, 0, :, None] * x[:, 0, None, :] if x.shape[1] == 1 else mx.swapaxes(g, 1, 2) @ x


def _weight_sq_norms(f: Factors) -> mx.array:
    x, g = f
    steps, width, height = x.shape[1], x.shape[2], g.shape[2]
    if steps == 1:
        return mx.sum(mx.square(g[:, 0]), axis=-1) * mx.sum(mx.square(x[:, 0]), axis=-1)
    if steps * (width + height) < width * height:  # the (T, T) Gram matrices are the smaller
        return mx.sum((x @ mx.swapaxes(x, 1, 2)) * (g @ mx.swapaxes(g, 1, 2)), axis=(1, 2))
    return mx.sum(mx.square(_weight_grads(f)), axis=(1, 2))


def _weight_combine(f: Factors, scale: mx.array) -> mx.array:
    x, g = f
    scaled = scale.astype(g.dtype)[:, None, None] * g
    return scaled.reshape(-1, g.shape[-1]).T @ x.reshape(-1, x.shape[-1])


def _bias_grads(f: Factors) -> mx.array:
    return mx.sum(f.out_grads, axis=1)


def _bias_sq_norms(f: Factors) -> mx.array:
    return mx.sum(mx.square(_bias_grads(f)), axis=-1)


def _bias_combine(f: Factors, scale: mx.array) -> mx.array:
    return mx.tensordot(scale.astype(f.out_grads.dtype), _bias_grads(f), axes=1)


_RULES: dict[str, tuple[Callable[..., mx.array], ...]] = {
    "weight": (_weight_grads, _weight_sq_norms, _weight_combine),
    "bias": (_bias_grads, _bias_sq_norms, _bias_combine),
}


class Factored:
    """Per-example values and, for each parameter leaf, its kind ('weight' | 'bias') and layer factors."""

    def __init__(self, values: mx.array | Weighted, params: Params, leaves: dict[int, tuple[str, Factors]]):
        self.values, self._params, self._leaves = values, params, leaves

    def _map(self, rule: int, *args: Any) -> Params:
        def apply(leaf: mx.array) -> mx.array:
            kind, factors = self._leaves[id(leaf)]
            return _RULES[kind][rule](factors, *args)

        return optree.tree_map(apply, self._params)

    def grads(self) -> Params:
        return self._map(0)

    def sq_norms(self) -> mx.array:
        return sum(optree.tree_leaves(self._map(1)))

    def combine(self, scale: mx.array) -> Params:
        return self._map(2, scale)


def linear_per_example(
    loss: Loss,
    params: Params,
    batch: tuple,
    axes: tuple,
    how: ExampleReduction,
    static: dict,
    size: int,
) -> Factored | str:
    """The factored per-example gradients of a ``module_loss``, or why they do not apply."""
    model, output_loss, made = getattr(loss, "module_loss", (None, None, None))
    if made is not loss:
        return "the loss is not a module_loss(model, loss)"
    if axes[0] != 0:
        return f"the model input must be batched on axis 0, in_axes has {axes[0]}"
    x, rest = batch[0], batch[1:]

    def example(out: Any, *ex: Any) -> Any:
        return reduce_example(output_loss(out, *ex, **static), how)

    with parameters_of(model, params):
        owners = {
            id(layer[kind]): (layer, kind)
            for _, layer in model.named_modules()
            if type(layer) is nn.Linear
            for kind in ("weight", "bias")
            if kind in layer
        }
        paths, leaves, _ = optree.tree_flatten_with_path(params)
        others = [".".join(map(str, path)) for path, leaf in zip(paths, leaves) if id(leaf) not in owners]
        if others:
            return f"parameters {', '.join(others)} are not weights or biases of nn.Linear layers"
        layers = list({id(owners[id(leaf)][0]): owners[id(leaf)][0] for leaf in leaves}.values())

        with _tapping(layers, _Tape()) as probe:  # lazy: nothing here is evaluated
            model(x)
        for _, inp, _ in probe.calls:
            if inp.ndim < 2 or inp.shape[0] != size:
                return f"a Linear layer saw an input of shape {tuple(inp.shape)}, not batched on axis 0 (batch {size})"
        zeros = [mx.zeros(y.shape, y.dtype) for _, _, y in probe.calls]

        def forward(zs: list[mx.array]) -> tuple[mx.array, Any]:
            with _tapping(layers, _Tape(zs)) as tape:
                out = model(x)
            values = mx.vmap(example, in_axes=(0, *axes[1:]))(out, *rest)
            return mx.sum(value_of(values)), (values, [inp for _, inp, _ in tape.calls])

        (_, (values, inputs)), out_grads = mx.value_and_grad(forward)(zeros)

    factors = {}
    for layer in layers:
        uses = [(inp, g) for (used, _, _), inp, g in zip(probe.calls, inputs, out_grads) if used is layer]
        width, height = layer.weight.shape[1], layer.weight.shape[0]
        factors[id(layer)] = Factors(
            _stack_uses([inp for inp, _ in uses], size, width),
            _stack_uses([g for _, g in uses], size, height),
        )
    table = {id(leaf): (owners[id(leaf)][1], factors[id(owners[id(leaf)][0])]) for leaf in leaves}
    return Factored(values, params, table)


def _stack_uses(arrays: list[mx.array], size: int, width: int) -> mx.array:
    """Each use ``(B, ..., width)`` as ``(B, T_use, width)``, concatenated along T (``(B, 0, width)`` if unused)."""
    if not arrays:
        return mx.zeros((size, 0, width))
    return mx.concatenate([a.reshape(size, -1, width) for a in arrays], axis=1)

