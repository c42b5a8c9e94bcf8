"""Run by ``test_distributed.py`` under ``mlx.launch --backend ring -n R``: each process takes its shard
of one global batch, and its loss and summed gradients must equal one process's on the whole batch.

Every process builds the same data (a fixed seed), so each can also compute the single-process
reference itself. Shards are uneven, and rank 1's shard counts no token at all (every target
ignored, or masked). Exits non-zero, naming the case, on the first mismatch; prints ``ok`` per case.
"""

from __future__ import annotations

import sys

import mlx.core as mx
import numpy as np

import lossfn
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
    close(value, reference, f"{name}: loss")
    for (path, g), (_, r) in zip(_leaves(grads), _leaves(reference_grads)):
        close(g, r, f"{name}: gradient {path}")
    if expect_naive_to_fail:
        # the naive loop: each rank's own mean, gradients averaged (mlx.nn.average_gradients)
        naive_value, naive_grads = mx.value_and_grad(loss_of(None))(params, *[shard(b) for b in batch])
        naive_value = mx.distributed.all_sum(mx.nan_to_num(naive_value), group=group) / size
        naive = [mx.distributed.all_sum(g, group=group) / size for _, g in _leaves(naive_grads)]
        wrong = not np.allclose(float(naive_value), float(reference), rtol=1e-3) or any(
            not np.allclose(np.asarray(g), np.asarray(r), rtol=1e-3) for g, (_, r) in zip(naive, _leaves(reference_grads))
        )
        if not wrong:
            print(f"rank {rank}: {name}: the naive average of per-rank means agreed; the case proves nothing", file=sys.stderr)
            sys.exit(1)
    print(f"rank {rank}: {name} ok")


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
