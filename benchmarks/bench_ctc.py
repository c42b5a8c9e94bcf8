"""Time ``lossfn.functional.ctc_loss`` against PyTorch 2.13's CPU ``ctc_loss``.

Run ``python benchmarks/bench_ctc.py`` (``--repeats N``, default 15). For each shape
``(T, N, C, S)`` of the CTC issue, in one interleaved run:

* forward: the loss ('mean'), evaluated; torch under ``no_grad``;
* forward+backward: ``mx.value_and_grad`` with respect to ``log_probs`` (value evaluated too,
  as in training) against torch's forward then ``torch.autograd.grad``;
* first call: the first forward and the first forward+backward in a fresh process, compile
  included, once with an empty MLX kernel cache (``TMPDIR`` pointed at a new directory: every
  kernel is compiled by the C++ compiler) and once with the kernels already on disk.

Ratios are ``ours / torch``: the ratio of medians, and the paired ratio (median over rounds
of the ratio within a round), which cancels load that drifts between rounds. Torch runs on
its default thread count; MLX's CPU backend runs each stream on one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import mlx.core as mx
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import compare_paired, cpu_name, force, report_paired

import lossfn.functional as F

SHAPES = [(50, 16, 20, 30), (200, 32, 30, 50), (500, 16, 60, 100)]


def make_inputs(T: int, N: int, C: int, S: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Log-softmaxed random logits ``(T, N, C)``, targets ``(N, S)`` without the blank 0,
    full input lengths and target lengths in ``[S/2, S]``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(T, N, C)).astype(np.float32)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return {
        "log_probs": log_probs.astype(np.float32),
        "targets": rng.integers(1, C, size=(N, S)).astype(np.int32),
        "input_lengths": np.full(N, T, np.int32),
        "target_lengths": rng.integers(S // 2, S + 1, size=N).astype(np.int32),
    }


def mlx_calls(data: dict[str, np.ndarray]) -> tuple:
    lp, tg, il, tl = (mx.array(data[k]) for k in ("log_probs", "targets", "input_lengths", "target_lengths"))
    mx.eval(lp, tg, il, tl)
    value_and_grad = mx.value_and_grad(lambda x: F.ctc_loss(x, tg, il, tl))
    return (lambda: F.ctc_loss(lp, tg, il, tl)), (lambda: value_and_grad(lp))


def torch_calls(data: dict[str, np.ndarray]) -> tuple:
    import torch

    lp = torch.tensor(data["log_probs"])
    tg, il, tl = (torch.tensor(data[k]).long() for k in ("targets", "input_lengths", "target_lengths"))
    x = lp.clone().requires_grad_(True)

    def forward() -> None:
        with torch.no_grad():
            torch.nn.functional.ctc_loss(lp, tg, il, tl)

    def forward_backward() -> None:
        loss = torch.nn.functional.ctc_loss(x, tg, il, tl)
        torch.autograd.grad(loss, x)

    return forward, forward_backward


def first_calls() -> dict[str, list[float]]:
    """Seconds of the first forward and first forward+backward of each shape, in this process."""
    out: dict[str, list[float]] = {}
    for shape in SHAPES:
        forward, forward_backward = mlx_calls(make_inputs(*shape))
        times = []
        for fn in (forward, forward_backward):
            start = time.perf_counter()
            force(fn())
            times.append(time.perf_counter() - start)
        out[str(shape)] = times
    return out


def first_calls_in_fresh_process(cold: bool) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="mlx-cold-") as empty:
        env = dict(os.environ, TMPDIR=empty) if cold else dict(os.environ)  # MLX caches kernels under TMPDIR
        result = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--first-calls"], env=env, capture_output=True, text=True, check=True
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--first-calls", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first_calls:
        print(json.dumps(first_calls()))
        return

    import torch

    print(f"mlx {mx.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads) on {cpu_name()}, {os.cpu_count()} CPUs")
    cold, warm = first_calls_in_fresh_process(cold=True), first_calls_in_fresh_process(cold=False)
    for shape in SHAPES:
        data = make_inputs(*shape)
        (mx_f, mx_fb), (th_f, th_fb) = mlx_calls(data), torch_calls(data)
        title = "T, N, C, S = {}, {}, {}, {}".format(*shape)
        medians, ratios = compare_paired({"torch": th_f, "lossfn": mx_f}, "torch", args.repeats)
        print(report_paired(f"{title}: forward", medians, ratios, "torch"))
        medians, ratios = compare_paired({"torch": th_fb, "lossfn": mx_fb}, "torch", args.repeats)
        print(report_paired(f"{title}: forward+backward", medians, ratios, "torch"))
        c, w = cold[str(shape)], warm[str(shape)]
        print(
            f"  first call (fresh process): forward {c[0]:.2f} s cold cache / {w[0]:.2f} s warm, "
            f"then forward+backward {c[1]:.2f} s / {w[1]:.2f} s"
        )


if __name__ == "__main__":
    main()
