"""Time ``lossfn.functional.ctc_loss`` against PyTorch 2.13's CPU ``ctc_loss``.

Run ``python benchmarks/bench_ctc.py`` (``--repeats N``, default 15). For each shape
``(T, N, C, S)`` of the CTC issue, in one interleaved run (each sample the mean of a burst of
calls back to back, as in a training loop; see ``timing.samples``):

* forward: the loss ('mean'), evaluated; torch under ``no_grad``;
* forward+backward: ``mx.value_and_grad`` with respect to ``log_probs`` (value evaluated too,
  as in training) against torch's forward then ``torch.autograd.grad``;
* first call: the first forward and the first forward+backward in a fresh process, compile
  included, once with an empty MLX kernel cache (``TMPDIR`` pointed at a new directory: every
  kernel is compiled by the C++ compiler) and once with the kernels already on disk.

``--compile-through`` times instead what the README advises against: a training step
compiled *through* ``ctc_loss`` (``mx.compile`` around ``value_and_grad``), whose first call
compiles every fused kernel of the unrolled scan. Each case runs in a fresh process with an
empty kernel cache: CTC alone, a GRU + CTC step at T = 40, the same GRU with an MSE loss (the
model's own kernels), the GRU + CTC step eager, the same step compiled *around* ``ctc_loss``
(``transforms.value_and_grad_around``: the GRU's forward and backward compiled, the loss
eager), and a GRU + CTC step at T = 41 on the cache that T = 40 left (a new length). Then the
later calls of the eager, around and through steps, interleaved in this process.

Ratios are ``ours / torch``: the ratio of medians, and the paired ratio (median over rounds
of the ratio within a round), which cancels load that drifts between rounds. Torch runs on
its default thread count; MLX's CPU backend runs each stream on one thread.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import mlx.core as mx
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import BURST, SETTLE, compare_paired, cpu_name, force, report_paired

import lossfn
import lossfn.functional as F
import transforms

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


# --- compiled through ------------------------------------------------------------------------

THROUGH_CASES = {
    "ctc alone, compiled through": ("ctc", "through", 40),
    "GRU + CTC, compiled through": ("gru-ctc", "through", 40),
    "GRU + MSE, compiled through": ("gru-mse", "through", 40),
    "GRU + CTC, eager": ("gru-ctc", "eager", 40),
    "GRU + CTC, compiled around": ("gru-ctc", "around", 40),
}


def through_step(model_loss: str, mode: str, T: int) -> tuple:
    """``(step, args)``: one value-and-grad step of N = 16 sequences of T frames, C = 20, S = 10."""
    import mlx.nn as nn

    N, C, S, D, H = 16, 20, 10, 16, 32
    mx.random.seed(0)
    targets, lengths, target_lengths = mx.random.randint(1, C, (N, S)), mx.full((N,), T), mx.full((N,), S)
    if model_loss == "ctc":
        log_probs = nn.log_softmax(mx.random.normal((T, N, C)), axis=-1)
        value_and_grad = mx.value_and_grad(lambda lp: F.ctc_loss(lp, targets, lengths, target_lengths))
        return (mx.compile(value_and_grad) if mode == "through" else value_and_grad), (log_probs,)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru, self.out = nn.GRU(D, H), nn.Linear(H, C)

        def __call__(self, x: mx.array) -> mx.array:  # log-probabilities (T, N, C)
            return nn.log_softmax(self.out(self.gru(x)), axis=-1).transpose(1, 0, 2)

    model = Model()

    def ctc(log_probs: mx.array) -> mx.array:
        return F.ctc_loss(log_probs, targets, lengths, target_lengths)

    def loss(model: Model, x: mx.array) -> mx.array:
        log_probs = model(x)
        return mx.mean(mx.square(log_probs)) if model_loss == "gru-mse" else ctc(log_probs)

    if mode == "around":  # the model's forward and backward compiled, ctc_loss between them
        return transforms.value_and_grad_around(model, ctc), (mx.random.normal((N, T, D)),)
    value_and_grad = nn.value_and_grad(model, loss)
    step = (lambda x: value_and_grad(model, x)) if mode == "eager" else mx.compile(lambda x: value_and_grad(model, x))
    return step, (mx.random.normal((N, T, D)),)


def through_first_calls(model_loss: str, mode: str, T: int) -> list[float]:
    """Seconds of the first and the second call of a step, in this process."""
    step, args = through_step(model_loss, mode, T)
    mx.eval(args)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        force(list(step(*args)))
        times.append(time.perf_counter() - start)
    return times


def through_in_fresh_process(case: tuple, cache: str) -> list[float]:
    env = dict(os.environ, TMPDIR=cache)
    command = [sys.executable, os.path.abspath(__file__), "--through-case", *map(str, case)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def compiled_through() -> None:
    print(f"mlx {mx.__version__} on {cpu_name()}, {os.cpu_count()} CPUs: first call of a step, empty kernel cache")
    for name, case in THROUGH_CASES.items():
        with tempfile.TemporaryDirectory(prefix="mlx-cold-") as cache:
            first, second = through_in_fresh_process(case, cache)
            print(f"  {name:<32} first call {first:6.2f} s, second {second * 1e3:7.1f} ms")
            if case == ("gru-ctc", "through", 40):
                first, second = through_in_fresh_process(("gru-ctc", "through", 41), cache)
                print(f"  {'... then at T = 41 (same cache)':<32} first call {first:6.2f} s, second {second * 1e3:7.1f} ms")
    warnings.simplefilter("ignore", lossfn.CompileThroughWarning)  # compiled through on purpose
    steps = {mode: through_step("gru-ctc", mode, 40) for mode in ("eager", "around", "through")}
    medians, ratios = compare_paired({mode: functools.partial(step, *args) for mode, (step, args) in steps.items()}, "eager", 15, burst=BURST)
    print(report_paired("GRU + CTC step at T = 40, later calls (this process; interleaved, bursts of 5)", medians, ratios, "eager"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--compile-through", action="store_true", help="time steps compiled through ctc_loss instead")
    parser.add_argument("--first-calls", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--through-case", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first_calls:
        print(json.dumps(first_calls()))
        return
    if args.through_case:
        model_loss, mode, T = args.through_case
        print(json.dumps(through_first_calls(model_loss, mode, int(T))))
        return
    if args.compile_through:
        compiled_through()
        return

    import torch

    print(f"mlx {mx.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads) on {cpu_name()}, {os.cpu_count()} CPUs")
    cold, warm = first_calls_in_fresh_process(cold=True), first_calls_in_fresh_process(cold=False)
    for shape in SHAPES:
        data = make_inputs(*shape)
        (mx_f, mx_fb), (th_f, th_fb) = mlx_calls(data), torch_calls(data)
        title = "T, N, C, S = {}, {}, {}, {}".format(*shape)
        medians, ratios = compare_paired({"torch": th_f, "lossfn": mx_f}, "torch", args.repeats, settle=SETTLE, burst=BURST)
        print(report_paired(f"{title}: forward", medians, ratios, "torch"))
        medians, ratios = compare_paired({"torch": th_fb, "lossfn": mx_fb}, "torch", args.repeats, settle=SETTLE, burst=BURST)
        print(report_paired(f"{title}: forward+backward", medians, ratios, "torch"))
        c, w = cold[str(shape)], warm[str(shape)]
        print(
            f"  first call (fresh process): forward {c[0]:.2f} s cold cache / {w[0]:.2f} s warm, "
            f"then forward+backward {c[1]:.2f} s / {w[1]:.2f} s"
        )


if __name__ == "__main__":
    main()
