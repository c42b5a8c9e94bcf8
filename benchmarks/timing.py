"""Timing helpers shared by the benchmark scripts: medians of repeated runs, ratios in one run.

Machines are shared and noisy: always compare against a baseline timed in the same run,
interleaving the candidates, and report ratios of medians.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import mlx.core as mx


def force(out: Any) -> None:
    """Finish a computation: ``mx.eval`` for MLX results, nothing for eager (torch, NumPy) ones."""
    leaves = out if isinstance(out, (list, tuple)) else [out]
    mlx_leaves = [x for x in leaves if isinstance(x, mx.array)]
    if mlx_leaves:
        mx.eval(*mlx_leaves)


def first_call(fn: Callable[[], Any]) -> float:
    """Seconds taken by the first call (tracing and compilation included)."""
    start = time.perf_counter()
    force(fn())
    return time.perf_counter() - start


def compare(candidates: dict[str, Callable[[], Any]], repeats: int = 15, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each candidate, run interleaved so noise hits all alike."""
    for fn in candidates.values():
        for _ in range(warmup):
            force(fn())
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            force(fn())
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def report(title: str, medians: dict[str, float], baseline: str) -> str:
    """One line per candidate: median time and ratio to ``baseline`` (lower is faster)."""
    base = medians[baseline]
    lines = [title]
    for name, t in medians.items():
        lines.append(f"  {name:<28} {t * 1e3:9.3f} ms   x{t / base:5.2f} vs {baseline}")
    return "\n".join(lines)
