"""The cost of the global mean: a data-parallel step with ``reduce(..., group=g)`` against the same step with a local mean.

Run ``mlx.launch --backend ring -n 2 --python <venv python> benchmarks/bench_scale_out.py``.
Each process takes a shard of a batch of token losses through an MLP and a vocabulary head
(cross-entropy with ``ignore_index``), and both steps sum their gradients over the group
(``sum_gradients``); they differ only in the loss's denominator: the global one (one ``all_sum``
of two numbers) or the shard's own (no communication, the wrong mean). Rank 0 prints the medians
of interleaved rounds and their ratio.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import mlx.core as mx
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lossfn
import transforms as T

group = mx.distributed.init()
rank = group.rank()
r = np.random.default_rng(rank)
N, D, H, V = 1024, 128, 256, 1000
params = {"w1": mx.array(r.normal(size=(D, H)).astype(np.float32) * 0.1), "w2": mx.array(r.normal(size=(H, V)).astype(np.float32) * 0.1)}
x = mx.array(r.normal(size=(N, D)).astype(np.float32))
labels = r.integers(0, V, size=N)
labels[:: 3 + rank] = -100
y = mx.array(labels.astype(np.int32))


def step_of(global_mean: bool):
    loss = T.reduce(T.ignore_index(lossfn.cross_entropy), group=group if global_mean else None)
    value_and_grad = mx.value_and_grad(lambda p: loss(mx.tanh(x @ p["w1"]) @ p["w2"], y))

    def step():
        value, grads = value_and_grad(params)
        mx.eval(value, T.sum_gradients(grads, group))

    return step


steps = {"global mean": step_of(True), "local mean": step_of(False)}
for fn in steps.values():
    fn()
times: dict[str, list[float]] = {name: [] for name in steps}
for _ in range(30):
    for name, fn in steps.items():
        start = time.perf_counter()
        fn()
        times[name].append(time.perf_counter() - start)
if rank == 0:
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratio = statistics.median(a / b for a, b in zip(times["global mean"], times["local mean"]))
    print(f"mlx {mx.__version__}, {group.size()} processes; N = {N} tokens per process, D = {D}, H = {H}, V = {V}")
    for name, t in medians.items():
        print(f"  {name:<12} {t * 1e3:8.2f} ms per step")
    print(f"  global / local: x{ratio:.3f} (median of per-round ratios)")
