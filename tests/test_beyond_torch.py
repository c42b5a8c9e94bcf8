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
from transforms import batched as T_batched
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
    "sparsemax": (
        lossfn.sparsemax,
        jax.vmap(optax.projections.projection_simplex),  # which projects its whole argument
        lambda r: [normal(r, B, C, scale=2)],
        (0,),
    ),
    "multiclass_sparsemax_loss": (
        lossfn.multiclass_sparsemax_loss,
        optax.losses.multiclass_sparsemax_loss,
        lambda r: [normal(r, B, C, scale=2), r.integers(0, C, size=B).astype(np.int32)],
        (0,),
    ),
    "sparsemax_loss": (
        lossfn.sparsemax_loss,
        optax.losses.sparsemax_loss,
        lambda r: [normal(r, B, D, scale=2), (r.uniform(size=(B, D)) < 0.5).astype(np.float32)],
        (0,),
    ),
    "dice_loss": (
        functools.partial(lossfn.dice_loss, smooth=0.5),
        lambda x, t: optax.losses.dice_loss(jnp.moveaxis(x, 1, -1), jnp.moveaxis(t, 1, -1), smooth=0.5),
        lambda r: [normal(r, 4, C, 6, 5), np.moveaxis(one_hot(r.integers(0, C, size=(4, 6, 5))), -1, 1).copy()],
        (0,),
    ),
    "dice_loss, Tversky, probabilities": (
        functools.partial(lossfn.dice_loss, alpha=0.3, beta=0.7, apply_softmax=False),
        lambda x, t: optax.losses.dice_loss(jnp.moveaxis(x, 1, -1), jnp.moveaxis(t, 1, -1), alpha=0.3, beta=0.7, apply_softmax=False),
        lambda r: [np.moveaxis(r.dirichlet(np.ones(C), size=(4, 6, 5)), -1, 1).astype(np.float32).copy(),
                   np.moveaxis(r.dirichlet(np.ones(C), size=(4, 6, 5)), -1, 1).astype(np.float32).copy()],
        (0, 1),
    ),
    "generalized_dice_loss, each image alone": (
        lossfn.generalized_dice_loss,
        lambda x, t: jax.vmap(lambda x, t: optax.losses.multiclass_generalized_dice_loss(x[None], t[None]))(jnp.moveaxis(x, 1, -1), jnp.moveaxis(t, 1, -1)),
        lambda r: [normal(r, 4, C, 6, 5), np.moveaxis(one_hot(r.integers(0, C, size=(4, 6, 5))), -1, 1).copy()],
        (0,),
    ),
    "binary_dice_loss": (
        lossfn.binary_dice_loss,
        optax.losses.binary_dice_loss,
        lambda r: [normal(r, 4, 6, 5), (r.uniform(size=(4, 6, 5)) < 0.3).astype(np.float32)],
        (0,),
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
        n = inputs[0].shape[0]
        looped = mx.stack([mx.sum(ours(*[a[i] for a in inputs])) for i in range(n)])
        summed = reduce(ours, "none")(*inputs)
        assert_close(mx.sum(summed.reshape(n, -1), axis=1), looped, what=name)


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


def test_ntxent_reduced_is_optaxs_batch_ntxent():
    """One query against the batch as shared keys; with one positive per query, optax's batch loss."""
    r = r_("ntxent")
    embeddings = normal(r, 8, D)
    pairs = np.arange(8) // 2  # (0, 1), (2, 3), ... are positive pairs
    positives = mx.array(np.arange(8) ^ 1)
    own = mx.arange(8)
    for temperature in (0.07, 0.5):
        def theirs(e):
            return optax.losses.ntxent(e, jnp.asarray(pairs), temperature=temperature)

        def ours(e):
            return reduce(lossfn.ntxent)(e, e, positives, own, temperature=temperature)  # the keys shared by its layout

        assert_close(ours(mx.array(embeddings)), np.asarray(theirs(jnp.asarray(embeddings))), rtol=1e-5)
        assert_close(mx.grad(ours)(mx.array(embeddings)), np.asarray(jax.grad(theirs)(jnp.asarray(embeddings))), rtol=1e-5, atol=1e-6)


def test_ranking_softmax_loss_matches_optax_with_padded_lists():
    r = r_("ranking")
    scores, relevance = normal(r, 6, 9), r.integers(0, 3, size=(6, 9)).astype(np.float32)
    valid = r.uniform(size=(6, 9)) < 0.7
    valid[2] = False  # a list of padding only: skipped by the mean
    args = [mx.array(scores), mx.array(relevance), mx.array(valid)]
    assert_close(reduce(lossfn.ranking_softmax_loss)(*args),
                 np.asarray(optax.losses.ranking_softmax_loss(jnp.asarray(scores), jnp.asarray(relevance), where=jnp.asarray(valid))), rtol=1e-5)
    per_list = np.asarray(optax.losses.ranking_softmax_loss(jnp.asarray(scores), jnp.asarray(relevance), where=jnp.asarray(valid), reduce_fn=None))
    assert_close(reduce(lossfn.ranking_softmax_loss, "none")(*args), np.where(valid.any(-1), per_list, 0), rtol=1e-5, atol=1e-6)
    ours = mx.grad(lambda s: reduce(lossfn.ranking_softmax_loss)(s, *args[1:]))(args[0])
    theirs = jax.grad(lambda s: optax.losses.ranking_softmax_loss(s, jnp.asarray(relevance), where=jnp.asarray(valid)))(jnp.asarray(scores))
    assert np.isfinite(np.asarray(ours)).all()
    assert_close(ours, np.nan_to_num(np.asarray(theirs)), rtol=1e-5, atol=1e-6)


def test_dice_of_an_all_background_target():
    """A class absent from the target costs 1 - s / (alpha P + s): 0 for an empty prediction."""
    probs = np.zeros((2, 4, 4), np.float32)
    probs[0] = 1.0  # every pixel predicted as class 0, which the target has
    target = probs.copy()
    loss = lossfn.dice_loss(mx.array(probs), mx.array(target), apply_softmax=False, smooth=1.0)
    assert float(loss) == 0.0  # class 1: empty prediction, empty target
    wrong = lossfn.dice_loss(mx.array(probs[::-1].copy()), mx.array(target), apply_softmax=False, smooth=1.0)
    # class 0: I = 0, P = 0, T = 16 -> 1 - 1 / (0.5 * 16 + 1); class 1: P = 16, T = 0 -> the same
    np.testing.assert_allclose(float(wrong), 1 - 1 / 9, rtol=1e-6)


def ctc_batch(key, n=5, frames=12, classes=6, length=4):
    r = r_(key)
    logits = normal(r, n, frames, classes, scale=2)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    labels = r.integers(1, classes, size=(n, length)).astype(np.int32)
    labels[0, 1] = labels[0, 2]  # a repeated label needs a blank between
    labels[4, :3] = 2  # three repeats need 5 frames: impossible in 3
    input_lengths = np.array([frames, frames - 2, 8, frames, 3])[:n]
    target_lengths = np.array([length, 3, 2, 0, 3])[:n]
    return logits, log_probs, labels, input_lengths, target_lengths


def test_ctc_forward_probabilities_equal_optaxs():
    logits, log_probs, labels, il, tl = ctc_batch("forward")
    frames, length = logits.shape[1], labels.shape[1]
    pads = (np.arange(frames)[None] >= il[:, None]).astype(np.float32), (np.arange(length)[None] >= tl[:, None]).astype(np.float32)
    loss, phi, emit = optax.losses.ctc_loss_with_forward_probs(*map(jnp.asarray, (logits, pads[0], labels, pads[1])))
    ours = T_batched(lossfn.ctc_forward_probabilities)(*map(mx.array, (log_probs, labels, il, tl)))
    finite = np.asarray(loss) < 1e4
    assert not finite[-1]  # the impossible target: optax's sum of log_epsilon, ours inf
    assert_close(np.asarray(ours[0])[finite], np.asarray(loss)[finite], rtol=1e-5)
    assert_close(ours[0], reduce(lossfn.ctc_loss, "none")(*map(mx.array, (log_probs, labels, il, tl))), rtol=1e-6)
    for theirs, mine, extra in [(phi, ours[1], 1), (emit, ours[2], 0)]:
        theirs, mine = np.moveaxis(np.asarray(theirs), 0, 1), np.asarray(mine)
        for n in range(len(il)):
            a, b = theirs[n, :, : tl[n] + extra], mine[n, :, : tl[n] + extra]
            reachable = a > -1e4
            np.testing.assert_allclose(b[reachable], a[reachable], rtol=1e-5, atol=1e-5)
            assert (b[~reachable] < -1e4).all()


def viterbi_numpy(log_probs, labels, length, frames, blank=0):
    """A plain dynamic program over the blank-extended target: the best path's states, or None."""
    extended = [blank]
    for k in range(length):
        extended += [labels[k], blank]
    S = len(extended)
    score = np.full((frames, S), -np.inf)
    back = np.zeros((frames, S), int)
    score[0, 0] = log_probs[0, blank]
    if S > 1:
        score[0, 1] = log_probs[0, extended[1]]
    for t in range(1, frames):
        for s in range(S):
            options = [s - 1, s] + ([s - 2] if s % 2 == 1 and s >= 3 and extended[s] != extended[s - 2] else [])
            options = [o for o in options if o >= 0]
            best = max(options, key=lambda o: (score[t - 1, o], -o))
            score[t, s], back[t, s] = score[t - 1, best] + log_probs[t, extended[s]], best
    ends = [S - 1] + ([S - 2] if S > 1 else [])
    end = max(ends, key=lambda o: (score[frames - 1, o], -o))
    if not np.isfinite(score[frames - 1, end]):
        return None
    path = [end]
    for t in range(frames - 1, 0, -1):
        path.append(back[t, path[-1]])
    return path[::-1]


def test_ctc_forced_alignment_equals_a_numpy_dynamic_program():
    _, log_probs, labels, il, tl = ctc_batch("viterbi")
    states, frame_labels, starts, ends = (np.asarray(x) for x in T_batched(lossfn.ctc_forced_alignment)(*map(mx.array, (log_probs, labels, il, tl))))
    for n in range(len(il)):
        expected = viterbi_numpy(log_probs[n], labels[n], tl[n], il[n])
        if expected is None:
            assert (states[n] == -1).all() and (starts[n] == -1).all()
            continue
        np.testing.assert_array_equal(states[n, : il[n]], expected)
        assert (states[n, il[n] :] == -1).all()
        segments = [i for i in range(il[n]) if i == 0 or states[n, i] != states[n, i - 1]]  # merge repeats
        assert [int(frame_labels[n, i]) for i in segments if states[n, i] % 2 == 1] == list(labels[n, : tl[n]])
        for k in range(tl[n]):
            segment = np.flatnonzero(states[n] == 2 * k + 1)
            assert (starts[n, k], ends[n, k]) == (segment[0], segment[-1] + 1)
        assert (starts[n, tl[n] :] == -1).all()


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_sigmoid_focal_loss_module_is_torchvisions_function(reduction):
    """torchvision.ops.sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2, reduction='none'): its formula is optax's."""
    import inspect

    import lossfn.nn as LN

    assert [(p.name, p.default) for p in inspect.signature(LN.SigmoidFocalLoss.__init__).parameters.values()][1:] == [
        ("alpha", 0.25), ("gamma", 2.0), ("reduction", "none")
    ]
    r = r_(("module", reduction))
    x, y = normal(r, 3, 4, 5, scale=3), (r.uniform(size=(3, 4, 5)) < 0.4).astype(np.float32)
    theirs = optax.losses.sigmoid_focal_loss(jnp.asarray(x), jnp.asarray(y), alpha=0.3, gamma=1.5)
    theirs = {"none": theirs, "mean": jnp.mean(theirs), "sum": jnp.sum(theirs)}[reduction]
    assert_close(LN.SigmoidFocalLoss(alpha=0.3, gamma=1.5, reduction=reduction)(mx.array(x), mx.array(y)), np.asarray(theirs), rtol=1e-5)
    with pytest.raises(ValueError):
        LN.SigmoidFocalLoss()(mx.array(x), mx.array(y[0]))
