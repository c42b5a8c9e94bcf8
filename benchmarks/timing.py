"""Timing helpers shared by the benchmark scripts: medians of repeated runs, ratios in one run.

Machines are shared and noisy: always compare against a baseline timed in the same run,
interleaving the candidates, and report ratios of medians.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import mlx.core as mx

# Untimed pause before each call where torch is timed: its OpenMP workers spin after an op
# (see ``samples``).
SETTLE = 0.01
# Calls per sample where calls are short: the first wakes torch's sleeping workers (untimed).
BURST = 5


def force(out: Any) -> None:
    """Finish a computation: ``mx.eval`` for MLX results, a CUDA synchronisation for torch's on
    a GPU (asynchronous there), nothing for eager CPU ones (torch, NumPy)."""
    leaves = out if isinstance(out, (list, tuple)) else [out]
    mlx_leaves = [x for x in leaves if isinstance(x, mx.array)]
    if mlx_leaves:
        mx.eval(*mlx_leaves)
    if any(getattr(x, "is_cuda", False) for x in leaves):
        import torch

        torch.cuda.synchronize()


def first_call(fn: Callable[[], Any]) -> float:
    """Seconds taken by the first call (tracing and compilation included)."""
    start = time.perf_counter()
    force(fn())
    return time.perf_counter() - start


def compare(candidates: dict[str, Callable[[], Any]], repeats: int = 15, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each candidate, run interleaved so noise hits all alike."""
    return {name: statistics.median(t) for name, t in samples(candidates, repeats, warmup).items()}


def report(title: str, medians: dict[str, float], baseline: str) -> str:
    """One line per candidate: median time and ratio to ``baseline`` (lower is faster)."""
    base = medians[baseline]
    lines = [title]
    for name, t in medians.items():
        lines.append(f"  {name:<28} {t * 1e3:9.3f} ms   x{t / base:5.2f} vs {baseline}")
    return "\n".join(lines)


def samples(
    candidates: dict[str, Callable[[], Any]], repeats: int = 15, warmup: int = 2, settle: float = 0.0, burst: int = 1
) -> dict[str, list[float]]:
    """Seconds of each call, ``repeats`` rounds of the candidates run one after the other.

    ``settle`` seconds of sleep (untimed) precede each call: after a multi-threaded torch op,
    its OpenMP workers spin for a few ms and slow the next call by up to 50% on 2 cores.
    With ``burst > 1`` a sample is the mean of ``burst`` calls back to back after one more,
    untimed: the steady state of a loop. After a sleep, waking torch's workers can cost more
    than a short op (a KVM guest on an Intel Xeon, 2026-12-03: CTC at (50, 16, 20, 30),
    forward+backward 11.9 ms a single call after 10 ms of sleep, 0.77 ms in a loop).
    """
    for fn in candidates.values():
        for _ in range(warmup):
            force(fn())
    out: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            if settle:
                time.sleep(settle)
            if burst > 1:
                force(fn())
            start = time.perf_counter()
            for _ in range(burst):
                force(fn())
            out[name].append((time.perf_counter() - start) / burst)
    return out


def compare_paired(
    candidates: dict[str, Callable[[], Any]],
    baseline: str,
    repeats: int = 15,
    warmup: int = 2,
    settle: float = 0.0,
    burst: int = 1,
) -> tuple[dict[str, float], dict[str, float]]:
    """Medians as in ``compare``, and for each candidate the median over rounds of
    ``time / baseline's time in the same round``: load that drifts between rounds cancels.
    ``settle`` and ``burst`` as in :func:`samples`.
    """
    s = samples(candidates, repeats, warmup, settle, burst)
    medians = {name: statistics.median(t) for name, t in s.items()}
    ratios = {name: statistics.median(a / b for a, b in zip(t, s[baseline])) for name, t in s.items()}
    return medians, ratios


def report_paired(title: str, medians: dict[str, float], ratios: dict[str, float], baseline: str) -> str:
    """Like ``report``, with the paired ratio (median of per-round ratios) as well."""
    lines = [title]
    for name, t in medians.items():
        lines.append(
            f"  {name:<28} {t * 1e3:9.3f} ms   x{t / medians[baseline]:5.2f} (paired x{ratios[name]:5.2f}) vs {baseline}"
        )
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()
