"""Exact means across micro-batches, in one process: ``transforms.accumulate`` equals the whole batch.

(Across processes: ``test_distributed.py``.) Micro-batches are uneven, and one of them counts
nothing (every target ignored, or masked); the naive mean of the micro-batches' means is shown
to differ, so each comparison proves something.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import optree
import pytest
from oracle import rng

import lossfn
import lossfn.functional as F
import transforms as T

CUTS = [0, 3, 10, 11, 24]  # micro-batches of 3, 7, 1 and 13 examples


def pieces(*arrays):
    return [tuple(a[i:j] for a in arrays) for i, j in zip(CUTS[:-1], CUTS[1:])]


def assert_tree_close(a, b, rtol=1e-6):
    for x, y in zip(optree.tree_leaves(a), optree.tree_leaves(b)):
        y = np.asarray(y)
        np.testing.assert_allclose(np.asarray(x), y, rtol=rtol, atol=rtol * np.abs(y).max(initial=0))


def naive(loss, params, batches):
    """The mean of the micro-batches' means, gradients averaged: what accumulation must not do."""
    results = [mx.value_and_grad(loss)(params, *b) for b in batches]
    value = sum(mx.nan_to_num(v) for v, _ in results) / len(results)
    return value, optree.tree_map(lambda *g: sum(g) / len(g), *[g for _, g in results])


def check(loss, params, batch):
    whole = mx.value_and_grad(loss)(params, *batch)
    accumulated = T.accumulate(loss, params, pieces(*batch))
    assert_tree_close(accumulated, whole)
    naive_value, naive_grads = naive(loss, params, pieces(*batch))
    assert not np.allclose(float(naive_value), float(whole[0]), rtol=1e-3) or not all(
        np.allclose(np.asarray(a), np.asarray(b), rtol=1e-3) for a, b in zip(optree.tree_leaves(naive_grads), optree.tree_leaves(whole[1]))
    )


r = rng("scale-out")
N, D, C = 24, 6, 5
PARAMS = {"w": mx.array(r.normal(size=(D, C)).astype(np.float32))}
X = mx.array(r.normal(size=(N, D)).astype(np.float32))
LABELS = r.integers(0, C, size=N)
LABELS[10] = -100  # the micro-batch of one counts nothing
LABELS[::5] = -100
Y = mx.array(LABELS.astype(np.int32))
W = mx.array(r.uniform(0.5, 2, size=C).astype(np.float32))


def test_cross_entropy_with_ignore_index_and_class_weights():
    loss = T.reduce(T.ignore_index(T.weighted(lossfn.cross_entropy)))
    check(lambda p, x, y: loss(x @ p["w"], y, W), PARAMS, (X, Y))


def test_the_functional_layer_inside_accumulate():
    check(lambda p, x, y: F.cross_entropy(x @ p["w"], y, weight=W, label_smoothing=0.1), PARAMS, (X, Y))


def test_masked_token_loss():
    h = mx.array(r.normal(size=(N, 4, D)).astype(np.float32))
    t = mx.array(r.integers(0, C, size=(N, 4)).astype(np.int32))
    mask = r.uniform(size=(N, 4)) < 0.6
    mask[10] = False
    loss = T.reduce(T.masked(lossfn.linear_cross_entropy))
    check(lambda p, h, t, m: loss(h, p["w"].T, t, m), PARAMS, (h, t, mx.array(mask)))


def test_ctc_mean_divides_each_loss_by_its_target_length_over_the_whole_batch():
    frames = mx.array(r.normal(size=(N, 8, C)).astype(np.float32))
    targets = mx.array(r.integers(1, C, size=(N, 3)).astype(np.int32))
    lengths = mx.array(r.integers(1, 4, size=N).astype(np.int32))

    def loss(p, frames, targets, lengths):
        logits = frames * p["scale"]
        log_probs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        return F.ctc_loss(mx.moveaxis(log_probs, 0, 1), targets, mx.full(lengths.shape, 8), lengths)

    check(loss, {"scale": mx.array(1.3)}, (frames, targets, lengths))


def test_kl_batchmean_and_a_tree_loss_per_head():
    p_target = mx.softmax(mx.array(r.normal(size=(N, C)).astype(np.float32)), axis=-1)
    kl = T.reduce(lossfn.kl_div, "batchmean")

    def loss(p, x, y, t):
        z = x @ p["w"]
        heads = T.reduce_tree(lambda z, y: {"ce": T.ignore_index(lossfn.cross_entropy)(z, y)})(z, y)
        return kl(z - mx.logsumexp(z, axis=-1, keepdims=True), t) + heads["ce"]

    check(loss, PARAMS, (X, Y, p_target))


def test_accumulate_refuses_micro_batches_that_reduce_differently():
    with pytest.raises(ValueError, match="same reductions"):
        T.accumulate(lambda p, x: T.reduce(lossfn.l1_loss)(x, x) if x.shape[0] > 1 else mx.sum(x), {}, [(X[:2],), (X[:1],)])
