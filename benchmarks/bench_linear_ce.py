"""Time and peak memory of cross-entropy through a vocabulary head: tiled against unfused, MLX against torch.

Run ``python benchmarks/bench_linear_ce.py`` (``--tokens N --features D --vocab V --repeats R``;
default N = 1024, D = 128, V = 16384, MLX's CPU matrix products being a reference BLAS). For the
mean loss of ``h`` ``(N, D)``, ``W`` ``(V, D)``, class indices ``y`` ``(N,)``, in one run:

* ``mlx tiled``: ``lossfn.functional.linear_cross_entropy(h, W, y, options=LinearCrossEntropyOptions())``;
* ``mlx unfused``: ``transforms.reduce(lossfn.cross_entropy)(h @ W.T, y)``, compiled;
* ``torch reference``: ``torch.nn.functional.linear_cross_entropy(h, W, y)`` (``options=None``);
* ``torch chunked``: the same with ``options=torch.nn.LinearCrossEntropyOptions()``.

Time: the median of interleaved rounds, forward (the loss, evaluated) and forward+backward (the
loss and the gradients with respect to ``h`` and ``W``), with ratios to ``mlx unfused``.

Peak memory *beyond the inputs and the gradients*: each candidate runs once in a fresh process;
MLX's from its allocator (``mx.reset_peak_memory`` / ``mx.get_peak_memory``), torch's from the
process's peak resident set (``ru_maxrss``, torch's CPU allocator has no statistics), each less
the memory held before the call and less the gradients it returns. MLX runs on one CPU thread
(one stream), torch on its default thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import mlx.core as mx
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import compare_paired, cpu_name

CANDIDATES = ["mlx tiled", "mlx unfused", "torch reference", "torch chunked"]
BASELINE = "mlx unfused"


def inputs(n: int, d: int, v: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = np.random.default_rng(0)
    return (
        r.normal(size=(n, d)).astype(np.float32),
        (r.normal(size=(v, d)) / np.sqrt(d)).astype(np.float32),
        r.integers(0, v, size=n).astype(np.int64),
    )


def calls(name: str, n: int, d: int, v: int):
    """``(forward, forward_and_backward)`` of candidate ``name``, as thunks that finish their work."""
    h, W, y = inputs(n, d, v)
    if name.startswith("mlx"):
        import lossfn
        import lossfn.functional as F
        import transforms as T
        from lossfn.nn import LinearCrossEntropyOptions

        h, W, y = mx.array(h), mx.array(W), mx.array(y.astype(np.int32))
        mx.eval(h, W, y)
        if name == "mlx tiled":
            options = LinearCrossEntropyOptions()
            loss = lambda h, W: F.linear_cross_entropy(h, W, y, options=options)  # noqa: E731
        else:
            loss = mx.compile(lambda h, W: T.reduce(lossfn.cross_entropy)(h @ W.T, y))
        step = mx.value_and_grad(loss, argnums=(0, 1))
        return (lambda: mx.eval(loss(h, W))), (lambda: mx.eval(step(h, W)))

    import torch
    import torch.nn.functional as TF

    h, W, y = torch.tensor(h), torch.tensor(W), torch.tensor(y)
    options = torch.nn.LinearCrossEntropyOptions() if name == "torch chunked" else None

    def forward():
        with torch.no_grad():
            return TF.linear_cross_entropy(h, W, y, options=options)

    def forward_and_backward():
        hg, Wg = h.detach().requires_grad_(), W.detach().requires_grad_()
        value = TF.linear_cross_entropy(hg, Wg, y, options=options)
        return value, *torch.autograd.grad(value, (hg, Wg))

    return forward, forward_and_backward


def peak_extra(name: str, mode: str, n: int, d: int, v: int) -> int:
    """Bytes at the peak of one call beyond what was held before it and the gradients it returns."""
    forward, forward_and_backward = calls(name, n, d, v)
    fn = forward if mode == "forward" else forward_and_backward
    grads = 0 if mode == "forward" else 4 * (n * d + v * d)
    if name.startswith("mlx"):
        mx.synchronize()
        mx.clear_cache()
        before = mx.get_active_memory()
        mx.reset_peak_memory()
        fn()
        return mx.get_peak_memory() - before - grads
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before - grads


def measure_memory(n: int, d: int, v: int) -> dict[tuple[str, str], int]:
    """``peak_extra`` of every candidate and mode, each in a fresh process."""
    out = {}
    for name in CANDIDATES:
        for mode in ("forward", "forward+backward"):
            command = [sys.executable, __file__, "--peak", name, mode, "--tokens", str(n), "--features", str(d), "--vocab", str(v)]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            out[name, mode] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peak", nargs=2, metavar=("CANDIDATE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    n, d, v = args.tokens, args.features, args.vocab
    if args.peak:
        print(json.dumps(peak_extra(*args.peak, n, d, v)))
        return

    import torch

    print(f"mlx {mx.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads) on {cpu_name()}, {os.cpu_count()} CPUs")
    print(f"N = {n} tokens, D = {d}, V = {v}; logits {n * v * 4 / 2**20:.0f} MiB in float32\n")
    memory = measure_memory(n, d, v)
    thunks = {name: calls(name, n, d, v) for name in CANDIDATES}
    rows = {}
    for index, mode in enumerate(("forward", "forward+backward")):
        medians, ratios = compare_paired({name: fs[index] for name, fs in thunks.items()}, BASELINE,
                                         repeats=args.repeats, warmup=1)
        rows[mode] = (medians, ratios)
    print(f"| candidate | forward | fwd+bwd | fwd+bwd vs {BASELINE} | peak extra, forward | peak extra, fwd+bwd | vs {BASELINE} |")
    print("|---|---|---|---|---|---|---|")
    for name in CANDIDATES:
        fwd, both = rows["forward"][0][name], rows["forward+backward"][0][name]
        ratio = rows["forward+backward"][1][name]
        extra_f, extra_b = memory[name, "forward"], memory[name, "forward+backward"]
        print(f"| {name} | {fwd * 1e3:.0f} ms | {both * 1e3:.0f} ms | {ratio:.2f}x | {extra_f / 2**20:.1f} MiB | {extra_b / 2**20:.1f} MiB "
              f"| {extra_b / memory[BASELINE, 'forward+backward']:.3f} |")


if __name__ == "__main__":
    main()
