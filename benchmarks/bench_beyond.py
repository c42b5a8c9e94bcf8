"""Time the losses beyond PyTorch's catalogue against optax 0.2.8 (JAX's CPU backend, jit).

Run ``python benchmarks/bench_beyond.py`` (``--repeats N``), or ``python benchmarks/bench_losses.py --beyond``. For each loss, the 'mean' over a
batch: ours ``mx.compile(transforms.reduce(f))``, optax's ``jax.jit`` of its batch function and
``jnp.mean``; forward (evaluated) and forward+backward (value and gradient with respect to the
first input). Ratios are ours / optax, medians of per-round ratios, interleaved in one run.
JAX runs on its default thread count; MLX's CPU backend runs one stream on one thread.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import mlx.core as mx
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import compare_paired, cpu_name

import lossfn
import transforms as T

jax.config.update("jax_platforms", "cpu")
r = np.random.default_rng(0)
N, C, D = 4096, 100, 256


def one_hot(y: np.ndarray, classes: int) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[y]


labels = r.integers(0, C, size=N)
pairs = np.arange(512) // 2
CASES = {
    "sigmoid_focal_loss (4096, 256)": (
        lossfn.sigmoid_focal_loss, lambda x, y: optax.losses.sigmoid_focal_loss(x, y, alpha=0.25),
        [r.normal(size=(N, D)).astype(np.float32), (r.uniform(size=(N, D)) < 0.5).astype(np.float32)],
    ),
    "poly1_cross_entropy (4096, 100)": (
        lossfn.poly1_cross_entropy, lambda x, y: optax.losses.poly_loss_cross_entropy(x, jax.nn.one_hot(y, C)),
        [r.normal(size=(N, C)).astype(np.float32), labels.astype(np.int32)],
    ),
    "multiclass_hinge_loss (4096, 100)": (
        lossfn.multiclass_hinge_loss, optax.losses.multiclass_hinge_loss, [r.normal(size=(N, C)).astype(np.float32), labels.astype(np.int32)],
    ),
    "multiclass_sparsemax_loss (4096, 100)": (
        lossfn.multiclass_sparsemax_loss, optax.losses.multiclass_sparsemax_loss, [r.normal(size=(N, C)).astype(np.float32), labels.astype(np.int32)],
    ),
    "log_cosh (4096, 256)": (lossfn.log_cosh, optax.losses.log_cosh, [r.normal(size=(N, D)).astype(np.float32), r.normal(size=(N, D)).astype(np.float32)]),
    "generalized_kl_divergence (4096, 100)": (
        lossfn.generalized_kl_divergence, optax.losses.generalized_kl_divergence,
        [r.normal(size=(N, C)).astype(np.float32), r.uniform(0.1, 2, size=(N, C)).astype(np.float32)],
    ),
    "cosine_distance (4096, 256)": (
        lossfn.cosine_distance, optax.losses.cosine_distance, [r.normal(size=(N, D)).astype(np.float32), r.normal(size=(N, D)).astype(np.float32)],
    ),
    "ranking_softmax_loss (4096, 100)": (
        lossfn.ranking_softmax_loss, lambda s, y: optax.losses.ranking_softmax_loss(s, y, reduce_fn=None),
        [r.normal(size=(N, C)).astype(np.float32), r.integers(0, 3, size=(N, C)).astype(np.float32)],
    ),
    "dice_loss (16, 8, 64, 64)": (
        lossfn.dice_loss, lambda x, t: optax.losses.dice_loss(jnp.moveaxis(x, 1, -1), jnp.moveaxis(t, 1, -1)),
        [r.normal(size=(16, 8, 64, 64)).astype(np.float32), np.moveaxis(one_hot(r.integers(0, 8, size=(16, 64, 64)), 8), -1, 1).copy()],
    ),
    "multiclass_perceptron_loss (4096, 100)": (
        lossfn.multiclass_perceptron_loss, optax.losses.multiclass_perceptron_loss, [r.normal(size=(N, C)).astype(np.float32), labels.astype(np.int32)],
    ),
    "perceptron_loss (4096, 256)": (
        lossfn.perceptron_loss, optax.losses.perceptron_loss,
        [r.normal(size=(N, D)).astype(np.float32), np.where(r.uniform(size=(N, D)) < 0.5, -1.0, 1.0).astype(np.float32)],
    ),
    "sparsemax_loss (4096, 256)": (
        lossfn.sparsemax_loss, optax.losses.sparsemax_loss,
        [r.normal(size=(N, D)).astype(np.float32), (r.uniform(size=(N, D)) < 0.5).astype(np.float32)],
    ),
    "sparsemax (4096, 100)": (lossfn.sparsemax, jax.vmap(optax.projections.projection_simplex), [r.normal(size=(N, C)).astype(np.float32)]),
    "cosine_similarity (4096, 256)": (
        lossfn.cosine_similarity, optax.losses.cosine_similarity, [r.normal(size=(N, D)).astype(np.float32), r.normal(size=(N, D)).astype(np.float32)],
    ),
    "binary_dice_loss (16, 64, 64)": (
        lossfn.binary_dice_loss, optax.losses.binary_dice_loss,
        [r.normal(size=(16, 64, 64)).astype(np.float32), (r.uniform(size=(16, 64, 64)) < 0.3).astype(np.float32)],
    ),
    "generalized_dice_loss (16, 8, 64, 64)": (
        lossfn.generalized_dice_loss,
        lambda x, t: jax.vmap(lambda x, t: optax.losses.multiclass_generalized_dice_loss(x[None], t[None]))(jnp.moveaxis(x, 1, -1), jnp.moveaxis(t, 1, -1)),
        [r.normal(size=(16, 8, 64, 64)).astype(np.float32), np.moveaxis(one_hot(r.integers(0, 8, size=(16, 64, 64)), 8), -1, 1).copy()],
    ),
    "ntxent (512, 128)": (
        None, lambda e, y: optax.losses.ntxent(e, y), [r.normal(size=(512, 128)).astype(np.float32), pairs.astype(np.int32)],
    ),
}


def ours_calls(loss, arrays):
    args = [mx.array(a) for a in arrays]
    if loss is None:  # ntxent: the batch as shared keys
        positives, own = mx.array(np.arange(512) ^ 1), mx.arange(512)
        mean = mx.compile(lambda e: T.reduce(lossfn.ntxent)(e, e, positives, own))
        step = mx.compile(mx.value_and_grad(lambda e: T.reduce(lossfn.ntxent)(e, e, positives, own)))
        return (lambda: mx.eval(mean(args[0]))), (lambda: mx.eval(step(args[0])))
    mean = mx.compile(lambda *a: T.reduce(loss)(*a))
    step = mx.compile(mx.value_and_grad(lambda x, *rest: T.reduce(loss)(x, *rest)))
    return (lambda: mx.eval(mean(*args))), (lambda: mx.eval(step(*args)))


def optax_calls(loss, arrays):
    args = [jnp.asarray(a) for a in arrays]
    mean = jax.jit(lambda *a: jnp.mean(loss(*a)))
    step = jax.jit(jax.value_and_grad(lambda x, *rest: jnp.mean(loss(x, *rest))))
    return (lambda: jax.block_until_ready(mean(*args))), (lambda: jax.block_until_ready(step(*args)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    print(f"mlx {mx.__version__}, jax {jax.__version__}, optax {optax.__version__} on {cpu_name()}, {os.cpu_count()} CPUs\n")
    print("| case | ours fwd ms | optax fwd ms | fwd ours/optax | ours fwd+bwd ms | optax fwd+bwd ms | fwd+bwd ours/optax |")
    print("|---|---|---|---|---|---|---|")
    ratios_f, ratios_b = [], []
    for name, (ours, theirs, arrays) in CASES.items():
        (of, ob), (tf, tb) = ours_calls(ours, arrays), optax_calls(theirs, arrays)
        mf, rf = compare_paired({"ours": of, "optax": tf}, "optax", repeats=args.repeats)
        mb, rb = compare_paired({"ours": ob, "optax": tb}, "optax", repeats=args.repeats)
        ratios_f.append(rf["ours"])
        ratios_b.append(rb["ours"])
        forward = f"{mf['ours'] * 1e3:.2f} | {mf['optax'] * 1e3:.2f} | {rf['ours']:.2f}"
        print(f"| {name} | {forward} | {mb['ours'] * 1e3:.2f} | {mb['optax'] * 1e3:.2f} | {rb['ours']:.2f} |")
    print(f"\nmedian ours/optax: forward {np.median(ratios_f):.2f}, forward+backward {np.median(ratios_b):.2f}")


if __name__ == "__main__":
    main()
