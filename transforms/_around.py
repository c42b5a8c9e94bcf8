"""Compiling around a loss: a model's forward and backward compiled, the loss run between them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import optree

from ._per_example import Params, parameters_of

Model = Callable[[Params, Any], Any]
Step = Callable[..., tuple[mx.array, Params]]


def value_and_grad_around(model: Model | nn.Module, loss: Callable[..., mx.array]) -> Step:
    r"""``mx.value_and_grad`` of ``loss(model(params, inputs), *args)`` with respect to ``params``,
    with ``model``'s forward and backward each one ``mx.compile`` graph and ``loss`` outside both.

    .. math:: \ell = L(y, \ldots),\quad y = f_\theta(x),\qquad
              \nabla_\theta \ell = \Big(\frac{\partial y}{\partial \theta}\Big)^{\!\top} \nabla_y L

    ``step(params, inputs, *args, **kwargs) -> (value, grads)``: the compiled forward gives
    ``y``; ``loss`` and its gradient :math:`\nabla_y L` run uncompiled (``mx.value_and_grad``
    alone); a compiled vjp of the model takes that gradient back to ``params``. For a loss that
    must not be traced by ``mx.compile``: ``ctc_loss``, whose scan runs in NumPy outside a
    trace and is unrolled into dozens of g++ kernels inside one, or a loss whose checks read its
    data. The vjp runs the model's forward again (MLX keeps no residuals between two compiled
    calls): one more forward pass a step.

    ``model`` may be an ``mlx.nn.Module``: then ``step(inputs, *args, **kwargs)``
    differentiates its trainable parameters, like ``mlx.nn.value_and_grad(model, ...)``; its
    other arrays (frozen parameters) enter as inputs too, so they may change between calls.
    A forward that assigns to the model (BatchNorm's running statistics in training) does not
    keep the assignment. ``inputs`` and the model's output may be pytrees. A model that draws
    random numbers (dropout) draws the same in its forward and in its vjp: each step takes
    one seed from MLX's global generator and seeds both with it.
    """
    if isinstance(model, nn.Module):
        return _around_module(model, loss)
    rng = mx.random.state  # an input and output of both graphs: new draws each step
    forward = mx.compile(model, inputs=rng, outputs=rng)

    def pullback(params: Params, inputs: Any, cotangents: Any) -> Params:
        leaves, spec = optree.tree_flatten(params)

        def flat_model(*flat_params: mx.array) -> list[mx.array]:
            return optree.tree_leaves(model(optree.tree_unflatten(spec, list(flat_params)), inputs))

        _, grads = mx.vjp(flat_model, leaves, optree.tree_leaves(cotangents))
        return optree.tree_unflatten(spec, grads)

    backward = mx.compile(pullback, inputs=rng, outputs=rng)
    loss_and_output_grad = mx.value_and_grad(loss)

    def step(params: Params, inputs: Any, *args: Any, **kwargs: Any) -> tuple[mx.array, Params]:
        seed = mx.random.randint(0, 2**31 - 1).item()  # the forward and its rerun in the vjp draw alike
        mx.random.seed(seed)
        value, cotangents = loss_and_output_grad(forward(params, inputs), *args, **kwargs)
        mx.random.seed(seed)
        return value, backward(params, inputs, cotangents)

    return step


def _around_module(module: nn.Module, loss: Callable[..., mx.array]) -> Step:
    def apply(trainable: Params, state_and_inputs: tuple[Params, Any]) -> Any:
        state, inputs = state_and_inputs
        with parameters_of(module, state):  # every array an input: none is baked into the graphs
            module.update(trainable)
            return module(inputs)

    step = value_and_grad_around(apply, loss)

    def module_step(inputs: Any, *args: Any, **kwargs: Any) -> tuple[mx.array, Params]:
        return step(module.trainable_parameters(), (module.parameters(), inputs), *args, **kwargs)

    return module_step
