"""Losses beyond PyTorch's catalogue, against optax 0.2.8 on JAX's CPU backend: values and gradients, float32.

Each case runs a batch through ``transforms.reduce(f, 'none')`` and through optax (whose losses
take a batch), and compares the values and the gradients of ``sum(loss * r)`` with respect to
every floating-point input, ``r`` a fixed random cotangent, at rtol 1e-5. Then the laws that tie
them to PyTorch's losses, and ``reduce`` against a loop.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import mlx.core as mx
import numpy as np
import optax
import pytest
from oracle import assert_close, rng

import lossfn
from transforms import reduce

jax.config.update("jax_platforms", "cpu")
B, C, D = 16, 7, 5


def r_(key):
    return rng("beyond", key)


def normal(r, *shape, scale=1.0):
    return (r.normal(size=shape) * scale).astype(np.float32)


def one_hot(y):
    return np.eye(C, dtype=np.float32)[y]


# name: (ours, optax's, make inputs, which inputs are differentiable)
CASES = {
    "sigmoid_focal_loss": (
        functools.partial(lossfn.sigmoid_focal_loss, alpha=0.25, gamma=2.0),
        lambda x, y: optax.losses.sigmoid_focal_loss(x, y, alpha=0.25, gamma=2.0),
        lambda r: [normal(r, B, D, scale=4), (r.uniform(size=(B, D)) > 0.5).astype(np.float32)],
        (0,),
    ),
    "sigmoid_focal_loss, alpha None, gamma 0.5, soft labels": (
        functools.partial(lossfn.sigmoid_focal_loss, alpha=None, gamma=0.5),
        lambda x, y: optax.losses.sigmoid_focal_loss(x, y, alpha=None, gamma=0.5),
        lambda r: [normal(r, B, D, scale=3), r.uniform(size=(B, D)).astype(np.float32)],
        (0, 1),
    ),
    "poly1_cross_entropy": (
        functools.partial(lossfn.poly1_cross_entropy, epsilon=2.0),
        lambda x, y: optax.losses.poly_loss_cross_entropy(x, jnp.asarray(one_hot(np.asarray(y))), epsilon=2.0),
        lambda r: [normal(r, B, C, scale=2), r.integers(0, C, size=B).astype(np.int32)],
        (0,),
    ),
    "poly1_cross_entropy, distributions": (
        functools.partial(lossfn.poly1_cross_entropy, epsilon=0.7),
        lambda x, y: optax.losses.poly_loss_cross_entropy(x, y, epsilon=0.7),
        lambda r: [normal(r, B, C, scale=2), r.dirichlet(np.ones(C), size=B).astype(np.float32)],
        (0, 1),
    ),
    "multiclass_hinge_loss": (
        lossfn.multiclass_hinge_loss,
        optax.losses.multiclass_hinge_loss,
        lambda r: [normal(r, B, C), r.integers(0, C, size=B).astype(np.int32)],
        (0,),
    ),
    "multiclass_perceptron_loss": (
        lossfn.multiclass_perceptron_loss,
        optax.losses.multiclass_perceptron_loss,
        lambda r: [normal(r, B, C), r.integers(0, C, size=B).astype(np.int32)],
        (0,),
    ),
    "perceptron_loss": (
        lossfn.perceptron_loss,
        optax.losses.perceptron_loss,
        lambda r: [normal(r, B, D), np.where(r.uniform(size=(B, D)) < 0.5, -1.0, 1.0).astype(np.float32)],
        (0,),
    ),
    "log_cosh": (
        lossfn.log_cosh,
        optax.losses.log_cosh,
        lambda r: [normal(r, B, D, scale=20), normal(r, B, D)],
        (0, 1),
    ),
    "generalized_kl_divergence": (
        lossfn.generalized_kl_divergence,
        optax.losses.generalized_kl_divergence,
        lambda r: [normal(r, B, C), r.uniform(0.1, 2, size=(B, C)).astype(np.float32)],
        (0, 1),
    ),
    "cosine_similarity": (
        lossfn.cosine_similarity,
        optax.losses.cosine_similarity,
        lambda r: [normal(r, B, D), normal(r, B, D)],
        (0, 1),
    ),
    "cosine_distance, epsilon": (
        functools.partial(lossfn.cosine_distance, epsilon=0.5),
        lambda a, b: optax.losses.cosine_distance(a, b, epsilon=0.5),
        lambda r: [normal(r, B, D, scale=0.3), normal(r, B, D)],
        (0, 1),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_and_gradients_match_optax(name):
    ours, theirs, make, wrt = CASES[name]
    inputs = make(r_(name))
    out = np.asarray(theirs(*map(jnp.asarray, inputs)))
    cotangent = r_((name, "cotangent")).uniform(0.5, 1.5, size=out.shape).astype(np.float32)
    assert_close(reduce(ours, "none")(*map(mx.array, inputs)), out, rtol=1e-5, atol=1e-6)

    def theirs_scalar(*floats):
        args = list(map(jnp.asarray, inputs))
        for i, x in zip(wrt, floats):
            args[i] = x
        return jnp.sum(theirs(*args) * cotangent)

    def ours_scalar(*floats):
        args = list(map(mx.array, inputs))
        for i, x in zip(wrt, floats):
            args[i] = x
        return mx.sum(reduce(ours, "none")(*args) * mx.array(cotangent))

    expected = jax.grad(theirs_scalar, argnums=tuple(range(len(wrt))))(*[jnp.asarray(inputs[i]) for i in wrt])
    got = mx.grad(ours_scalar, argnums=list(range(len(wrt))))(*[mx.array(inputs[i]) for i in wrt])
    got = (got,) if isinstance(got, mx.array) else got
    for i, g, e in zip(wrt, got, expected):
        assert_close(g, np.asarray(e), rtol=1e-5, atol=1e-6, what=f"gradient wrt input {i}")


def test_reduce_equals_a_loop():
    for name, (ours, _, make, _) in CASES.items():
        inputs = [mx.array(a) for a in make(r_((name, "loop")))]
        looped = mx.stack([mx.sum(ours(*[a[i] for a in inputs])) for i in range(B)])
        summed = reduce(ours, "none")(*inputs)
        assert_close(mx.sum(summed.reshape(B, -1), axis=1), looped, what=name)


def test_focal_loss_at_gamma_0_is_bce_with_logits():
    r = r_("focal law")
    x, y = normal(r, B, D, scale=5), r.uniform(size=(B, D)).astype(np.float32)
    focal = reduce(functools.partial(lossfn.sigmoid_focal_loss, alpha=None, gamma=0.0), "none")(mx.array(x), mx.array(y))
    assert_close(focal, reduce(lossfn.binary_cross_entropy_with_logits, "none")(mx.array(x), mx.array(y)), rtol=1e-6)
    # torchvision's convention: a negative alpha weighs nothing
    negative = reduce(functools.partial(lossfn.sigmoid_focal_loss, alpha=-1, gamma=0.0), "none")(mx.array(x), mx.array(y))
    assert_close(negative, focal, rtol=0, atol=0)


def test_poly1_at_epsilon_0_is_cross_entropy():
    r = r_("poly law")
    x, y = mx.array(normal(r, B, C, scale=3)), mx.array(r.integers(0, C, size=B).astype(np.int32))
    poly = reduce(functools.partial(lossfn.poly1_cross_entropy, epsilon=0.0), "none")(x, y)
    assert_close(poly, reduce(lossfn.cross_entropy, "none")(x, y), rtol=1e-6)


def test_log_cosh_is_exact_for_large_errors_and_quadratic_near_zero():
    d = mx.array([0.0, 1e-4, 0.5, 1.0, 100.0, -1e4, 1e30], mx.float32)
    exact = np.asarray(d, np.float64)
    small = np.abs(exact) < 20
    expected = np.where(small, np.log(np.cosh(np.where(small, exact, 0))), np.abs(exact) - np.log(2))
    np.testing.assert_allclose(np.asarray(lossfn.log_cosh(d, mx.zeros_like(d))), expected, rtol=1e-6)
    grad = mx.grad(lambda d: mx.sum(lossfn.log_cosh(d, mx.zeros_like(d))))(d)
    np.testing.assert_allclose(np.asarray(grad), np.tanh(np.asarray(d, np.float64)), rtol=1e-6, atol=1e-12)


def test_bad_class_index_costs_nan():
    scores = mx.array(normal(r_("nan"), 3, C))
    values = reduce(lossfn.multiclass_hinge_loss, "none")(scores, mx.array([0, C, -1]))
    assert np.isfinite(np.asarray(values)[0]) and np.isnan(np.asarray(values)[1:]).all()


def test_generalized_kl_is_finite_at_zero_targets():
    """0 log 0 = 0, as kl_div: optax's value there, and a finite gradient where optax's is nan."""
    r = r_("zero targets")
    x, y = normal(r, B, C), np.where(r.uniform(size=(B, C)) < 0.3, 0, r.uniform(0.1, 2, size=(B, C))).astype(np.float32)
    ours = reduce(lossfn.generalized_kl_divergence, "none")(mx.array(x), mx.array(y))
    assert_close(ours, np.asarray(optax.losses.generalized_kl_divergence(jnp.asarray(x), jnp.asarray(y))), rtol=1e-5, atol=1e-6)
    grads = mx.grad(lambda x, y: mx.sum(reduce(lossfn.generalized_kl_divergence, "none")(x, y)), argnums=(0, 1))(mx.array(x), mx.array(y))
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)
