"""``transforms.value_and_grad_around``: the model compiled, the loss between its forward and
its backward; equal to ``mx.value_and_grad`` of the whole, for functions and modules."""

from __future__ import annotations

import warnings

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map

import lossfn
import lossfn.functional as F
import transforms as T

R = np.random.default_rng(11)


def assert_trees_close(actual, expected, rtol=1e-5, atol=1e-6):
    flat_actual, flat_expected = tree_flatten(actual), tree_flatten(expected)
    assert [k for k, _ in flat_actual] == [k for k, _ in flat_expected]
    for (key, a), (_, e) in zip(flat_actual, flat_expected):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol, err_msg=key)


def mlp(params, x):
    """A pure model: params a pytree, its output a pytree of two heads."""
    h = mx.tanh(x @ params["w1"] + params["b1"])
    return {"logits": h @ params["w2"], "aux": mx.sum(h * h, axis=-1)}


def mlp_params():
    return {
        "w1": mx.array(R.normal(size=(6, 8)).astype(np.float32)),
        "b1": mx.array(R.normal(size=(8,)).astype(np.float32)),
        "w2": mx.array(R.normal(size=(8, 5)).astype(np.float32)),
    }


def head_loss(out, labels, *, aux_weight):
    return F.cross_entropy(out["logits"], labels) + aux_weight * mx.mean(out["aux"])


def test_a_pure_model_with_pytree_output_equals_value_and_grad_of_the_whole():
    params, x = mlp_params(), mx.array(R.normal(size=(16, 6)).astype(np.float32))
    labels = mx.array(R.integers(0, 5, 16).astype(np.int32))
    step = T.value_and_grad_around(mlp, head_loss)
    whole = mx.value_and_grad(lambda p: head_loss(mlp(p, x), labels, aux_weight=0.1))
    for _ in range(2):  # the second call reuses both graphs, with new parameters
        value, grads = step(params, x, labels, aux_weight=0.1)
        expected_value, expected_grads = whole(params)
        np.testing.assert_allclose(value.item(), expected_value.item(), rtol=1e-6)
        assert_trees_close(grads, expected_grads)
        params = {k: v - 0.1 * grads[k] for k, v in params.items()}


class Reader(nn.Module):
    def __init__(self, features: int = 8, hidden: int = 16, classes: int = 6):
        super().__init__()
        self.gru, self.out = nn.GRU(features, hidden), nn.Linear(hidden, classes)
        self.out.freeze(keys=["bias"])  # a frozen array: an input of the graphs, not differentiated

    def __call__(self, x):  # (N, T, F) -> log-probabilities (T, N, C)
        return nn.log_softmax(self.out(self.gru(x)), axis=-1).transpose(1, 0, 2)


def ctc_batch(N=4, T=12, S=3, C=6, F_=8):
    x = mx.array(R.normal(size=(N, T, F_)).astype(np.float32))
    targets = mx.array(R.integers(1, C, (N, S)).astype(np.int32))
    return x, targets, mx.array([T, T - 2, T, T - 5]), mx.array([S, 2, S, 1])


def test_a_module_around_ctc_equals_nn_value_and_grad_and_compiles_nothing_through_it():
    model = Reader()
    x, targets, lengths, target_lengths = ctc_batch()

    def ctc(log_probs, *args):
        return F.ctc_loss(log_probs, *args, reduction="sum")

    step = T.value_and_grad_around(model, ctc)
    whole = nn.value_and_grad(model, lambda m, x, *args: ctc(m(x), *args))
    with warnings.catch_warnings():
        warnings.simplefilter("error", lossfn.CompileThroughWarning)  # no trace reaches ctc_loss
        for _ in range(2):
            value, grads = step(x, targets, lengths, target_lengths)
            expected_value, expected_grads = whole(model, x, targets, lengths, target_lengths)
            np.testing.assert_allclose(value.item(), expected_value.item(), rtol=1e-5)
            assert_trees_close(grads, expected_grads, rtol=1e-4, atol=1e-5)
            assert "bias" not in grads["out"]  # frozen, as in nn.value_and_grad
            model.update(tree_map(lambda p, g: p - 0.05 * g, model.trainable_parameters(), grads))
            model.out.bias = model.out.bias + 1.0  # a frozen array changed between calls is read anew


def test_dropout_draws_alike_in_the_forward_and_in_the_vjp_and_anew_each_step():
    """y = w * mask / (1 - p) and L = sum(y): the value is sum(w * m) and the gradient m, where m is
    the mask the vjp drew; they agree only if the forward drew the same mask."""
    p = 0.5

    def model(w, x):
        return nn.Dropout(p)(w * x)

    step = T.value_and_grad_around(model, mx.sum)
    w, x = mx.array(R.uniform(1, 2, 64).astype(np.float32)), mx.ones((64,))
    masks = []
    for _ in range(3):
        value, grad = step(w, x)
        np.testing.assert_allclose(value.item(), mx.sum(w * grad).item(), rtol=1e-6)
        assert set(np.unique(np.asarray(grad)).tolist()) == {0.0, 1 / (1 - p)}
        masks.append(np.asarray(grad))
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])


def test_the_steps_are_reproducible_from_mlx_seed():
    def model(w, x):
        return nn.Dropout(0.3)(w * x)

    step = T.value_and_grad_around(model, mx.sum)
    w, x = mx.ones((32,)), mx.ones((32,))
    runs = []
    for _ in range(2):
        mx.random.seed(5)
        runs.append([np.asarray(step(w, x)[1]) for _ in range(3)])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_a_loss_that_is_not_scalar_raises_as_value_and_grad_does():
    step = T.value_and_grad_around(lambda w, x: w * x, lambda y: y)
    with pytest.raises(ValueError):
        step(mx.ones((3,)), mx.ones((3,)))
