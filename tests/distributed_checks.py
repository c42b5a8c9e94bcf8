"""Run by ``test_distributed.py`` under ``mlx.launch --backend ring -n R``: each process takes its shard
of one global batch, and its loss and summed gradients must equal one process's on the whole batch.

Every process builds the same data (a fixed seed), so each can also compute the single-process
reference itself. Shards are uneven, and rank 1's shard counts no token at all (every target
ignored, or masked). Exits non-zero, naming the case, on the first mismatch; prints ``ok`` per case.
"""

from __future__ import annotations

import contextlib
import sys

import mlx.core as mx
import mlx.nn as nn
import numpy as np

import lossfn
import lossfn.functional as F
import lossfn.nn as LN
import transforms as T

RTOL = 1e-6
group = mx.distributed.init(backend="ring", strict=True)
rank, size = group.rank(), group.size()


def shard_bounds(n: int) -> list[tuple[int, int]]:
    """Uneven shards of ``n`` examples: rank r gets a share proportional to r + 1."""
    weights = np.arange(1, size + 1)
    cuts = np.concatenate([[0], np.cumsum(weights * n // weights.sum())])
    cuts[-1] = n
    return list(zip(cuts[:-1], cuts[1:]))


def shard(x: mx.array) -> mx.array:
    start, stop = shard_bounds(x.shape[0])[rank]
    return x[int(start) : int(stop)]


def close(a, b, what: str) -> None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    # elements that cancel are compared at RTOL of the largest: float32 sums in another order
    if not np.allclose(a, b, rtol=RTOL, atol=RTOL * np.abs(b).max(initial=0)):
        print(f"rank {rank}: {what}: {a.ravel()[:4]} != {b.ravel()[:4]}", file=sys.stderr)
        sys.exit(1)


def check(name, loss_of, args, expect_naive_to_fail=True):
    """``loss_of(group)(params, *batch)``: distributed (shards, summed gradients) against one process."""
    params, batch = args
    value_and_grad = mx.value_and_grad(loss_of(group))
    value, grads = value_and_grad(params, *[shard(b) for b in batch])
    grads = T.sum_gradients(grads, group)
    reference, reference_grads = mx.value_and_grad(loss_of(None))(params, *batch)
    compare(name, (value, grads), (reference, reference_grads))
    if expect_naive_to_fail:
        naive_fails(name, loss_of(None), params, batch, reference, reference_grads)
    print(f"rank {rank}: {name} ok")


def compare(name, ours, reference):
    (value, grads), (reference, reference_grads) = ours, reference
    close(value, reference, f"{name}: loss")
    for (path, g), (_, r) in zip(_leaves(grads), _leaves(reference_grads)):
        close(g, r, f"{name}: gradient {path}")


def naive_fails(name, loss, params, batch, reference, reference_grads):
    """The naive loop, each rank's own mean and the gradients averaged (``mlx.nn.average_gradients``), must differ."""
    naive_value, naive_grads = mx.value_and_grad(loss)(params, *[shard(b) for b in batch])
    naive_value = mx.distributed.all_sum(mx.nan_to_num(naive_value), group=group) / size
    naive = [mx.distributed.all_sum(g, group=group) / size for _, g in _leaves(naive_grads)]
    wrong = not np.allclose(float(naive_value), float(reference), rtol=1e-3) or any(
        not np.allclose(np.asarray(g), np.asarray(r), rtol=1e-3) for g, (_, r) in zip(naive, _leaves(reference_grads))
    )
    if not wrong:
        print(f"rank {rank}: {name}: the naive average of per-rank means agreed; the case proves nothing", file=sys.stderr)
        sys.exit(1)


def _leaves(tree):
    import optree

    paths, leaves, _ = optree.tree_flatten_with_path(tree)
    return list(zip(paths, leaves))


r = np.random.default_rng(0)
N, D, H, C = 24, 6, 8, 5

# 1. An MLP with cross-entropy, ignore_index and class weights; rank 1's shard all ignored.
params = {
    "w1": mx.array(r.normal(size=(D, H)).astype(np.float32) * 0.5),
    "w2": mx.array(r.normal(size=(H, C)).astype(np.float32) * 0.5),
}
x = mx.array(r.normal(size=(N, D)).astype(np.float32))
labels = r.integers(0, C, size=N)
start, stop = shard_bounds(N)[1 % size]
labels[start:stop] = -100
labels[::7] = -100
y = mx.array(labels.astype(np.int32))
class_weights = mx.array(r.uniform(0.5, 2, size=C).astype(np.float32))


def mlp_loss(group):
    loss = T.reduce(T.ignore_index(T.weighted(lossfn.cross_entropy)), "mean", group=group)
    return lambda p, x, y: loss(mx.tanh(x @ p["w1"]) @ p["w2"], y, class_weights)


check("mlp cross-entropy, ignore_index, class weights", mlp_loss, (params, [x, y]))

# 2. A masked token loss, (B, T, V) logits as mlx-lm holds them; rank 1's sequences all padding.
B, L, V = 12, 5, 7
hidden = mx.array(r.normal(size=(B, L, D)).astype(np.float32))
targets = mx.array(r.integers(0, V, size=(B, L)).astype(np.int32))
mask = r.uniform(size=(B, L)) < 0.7
start, stop = shard_bounds(B)[1 % size]
mask[start:stop] = False
mask = mx.array(mask)
head = {"W": mx.array(r.normal(size=(V, D)).astype(np.float32))}


def token_loss(group):
    loss = T.reduce(T.masked(lossfn.linear_cross_entropy), "mean", group=group)
    return lambda p, h, t, m: loss(h, p["W"], t, m, z_loss=1e-3)


check("masked token loss (linear_cross_entropy, z-loss)", token_loss, (head, [hidden, targets, mask]))

# 3. KL 'batchmean': the global batch size divides.
p_target = mx.softmax(mx.array(r.normal(size=(N, C)).astype(np.float32)), axis=-1)


def kl_loss(group):
    loss = T.reduce(lossfn.kl_div, "batchmean", group=group)

    def of(p, x, t):
        z = x @ p["w"]
        return loss(z - mx.logsumexp(z, axis=-1, keepdims=True), t)

    return of


check("kl_div batchmean", kl_loss, ({"w": params["w2"][:D]}, [x, p_target]))

# 4. 'sum' needs no denominator: shares add up.
check("sum", lambda g: (lambda p, x, y: T.reduce(lossfn.cross_entropy, "sum", group=g)(x @ p["w"], mx.maximum(y, 0))),
      ({"w": params["w2"][:D]}, [x, y]), expect_naive_to_fail=False)

# 5. lossfn.functional in the opt-in context, and CTC's 'mean' (each loss over its target length).
frames = mx.array(r.normal(size=(N, 8, C)).astype(np.float32))
ctc_targets = mx.array(r.integers(1, C, size=(N, 3)).astype(np.int32))
ctc_lengths = mx.array(r.integers(1, 4, size=N).astype(np.int32))


def functional_loss(group):
    def of(p, x, y, frames, targets, lengths):
        with T.across(group) if group is not None else contextlib.nullcontext():
            z = x @ p["w"]
            ce = F.cross_entropy(z, y, weight=class_weights, label_smoothing=0.1)
            ce = ce + LN.NLLLoss(weight=class_weights)(z - mx.logsumexp(z, axis=-1, keepdims=True), y)
            logits = frames * p["scale"]
            log_probs = mx.moveaxis(logits - mx.logsumexp(logits, axis=-1, keepdims=True), 0, 1)
            return ce + F.ctc_loss(log_probs, targets, mx.full(lengths.shape, 8), lengths)

    return of


check("lossfn.functional and lossfn.nn in across(group): cross_entropy, NLLLoss, ctc_loss", functional_loss,
      ({"w": params["w2"][:D], "scale": mx.array(1.3)}, [x, y, frames, ctc_targets, ctc_lengths]))

# 6. Micro-batches on every rank: K = 2 uneven micro-batches on each of R ranks == one batch.
loss = mlp_loss(None)
mine = [shard(a) for a in (x, y)]
half = max(1, mine[0].shape[0] // 3)
micro = [tuple(a[:half] for a in mine), tuple(a[half:] for a in mine)]
compare("accumulate over micro-batches and ranks", T.accumulate(loss, params, micro, group=group), mx.value_and_grad(loss)(params, x, y))
print(f"rank {rank}: accumulate ok")

# 7. DP-SGD: clip locally, sum over the ranks, the noise once; per-example norms unchanged.
def per_example(p, x, y):
    return T.ignore_index(lossfn.cross_entropy)(mx.tanh(x @ p["w1"]) @ p["w2"], y)


key = mx.random.key(7)
step = T.clipped_grad(per_example, 0.5, noise_multiplier=1.1, group=group)
_, grad, norms = step(params, shard(x), shard(y), key=key)
_, reference_grad, reference_norms = T.clipped_grad(per_example, 0.5, noise_multiplier=1.1)(params, x, y, key=key)
compare("dp-sgd", (mx.array(0.0), grad), (mx.array(0.0), reference_grad))
close(norms, shard(reference_norms), "dp-sgd: per-example norms")
print(f"rank {rank}: dp-sgd ok")

# 8. The obvious loop with mlx.nn.average_gradients (which divides by the size): scale the loss by it.
scaled = lambda p, x, y: mlp_loss(group)(p, x, y) * size  # noqa: E731
value, grads = mx.value_and_grad(scaled)(params, shard(x), shard(y))
compare("average_gradients with the loss times the size", (value / size, nn.average_gradients(grads, group=group)),
        mx.value_and_grad(mlp_loss(None))(params, x, y))
print(f"rank {rank}: average_gradients ok")

# 9. A tree loss, one reduction per head, over the ranks.
def tree_of(group):
    heads = T.reduce_tree(lambda z, y: {"ce": T.ignore_index(lossfn.cross_entropy)(z, y), "l1": lossfn.l1_loss(z, z * 0.5)}, group=group)

    def of(p, x, y):
        parts = heads(x @ p["w"], y)
        return parts["ce"] + 0.1 * parts["l1"]

    return of


check("tree_loss per head", tree_of, ({"w": params["w2"][:D]}, [x, y]))

# 10. An empty shard: rank 0 holds no example at all.
bounds = [(0, 0)] + [(i * N // (size - 1), (i + 1) * N // (size - 1)) for i in range(size - 1)] if size > 1 else [(0, N)]
start, stop = bounds[rank]
value, grads = mx.value_and_grad(mlp_loss(group))(params, x[start:stop], y[start:stop])
compare("an empty shard", (value, T.sum_gradients(grads, group)), mx.value_and_grad(mlp_loss(None))(params, x, y))
print(f"rank {rank}: empty shard ok")
