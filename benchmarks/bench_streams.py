"""One CPU stream against two (``transforms.cpu_streams``): the speed-up of sharding a batch.

Run ``python benchmarks/bench_streams.py`` (``--repeats N``). For a few losses through
``lossfn.functional`` and batch sizes around ``transforms._streams.SHARD_ABOVE``, forward and
forward+backward (``mx.value_and_grad`` wrt the input) with 1 and 2 streams, interleaved;
a ratio is the median over rounds of ``1 stream / 2 streams`` (above 1: two are faster).
The thresholds are set to 0 for the run, so that the small sizes show what sharding them
would cost. The 1-D rows are batches of scalar examples, cut only for a reduction.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import compare_paired, cpu_name

import lossfn.functional as F
import transforms as T
from transforms import _streams

rng = np.random.default_rng(0)


def _scores(n: int, c: int) -> list[mx.array]:
    return [mx.array(rng.standard_normal((n, c)).astype(np.float32)), mx.array(rng.integers(0, c, n).astype(np.int32))]


def _logits(n: int, c: int) -> list[mx.array]:
    return [mx.array(rng.standard_normal((n, c)).astype(np.float32)), mx.array(rng.uniform(size=(n, c)).astype(np.float32))]


def _label_lists(n: int, c: int) -> mx.array:
    """Every class a label, in a random order (no -1 padding)."""
    return mx.array(np.argsort(rng.random((n, c)), 1).astype(np.int32))


def _flat(make: Callable[[int, int], list[mx.array]], probabilities: bool = False) -> Callable[[int, int], list[mx.array]]:
    """``make``'s inputs as one 1-D element-wise batch of ``n * c`` scalar examples (the first a probability)."""

    def flat(n: int, c: int) -> list[mx.array]:
        x, y = (a.reshape(-1) for a in make(n, c))
        return [mx.sigmoid(x) if probabilities else x, y]

    return flat


CASES: list[tuple[str, Callable[..., mx.array], Callable[[int, int], list[mx.array]], int]] = [
    ("cross_entropy", F.cross_entropy, _scores, 1000),
    ("binary_cross_entropy, 1-D", F.binary_cross_entropy, _flat(_logits, probabilities=True), 1024),
    ("mse_loss, 1-D", F.mse_loss, _flat(_logits), 1024),
    ("binary_cross_entropy_with_logits", F.binary_cross_entropy_with_logits, _logits, 1024),
    ("soft_margin_loss", lambda x, y: F.soft_margin_loss(x, 2 * (y > 0.5) - 1.0), _logits, 1024),
    ("multilabel_margin_loss", F.multilabel_margin_loss, lambda n, c: [_scores(n, c)[0], _label_lists(n, c)], 100),
]


def on_streams(count: int, fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with T.cpu_streams(count):
            out = fn()
            mx.eval(out)
        return out

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    mx.set_cache_limit(1 << 32)
    _streams.SHARD_ABOVE = _streams.SMALL_EXAMPLES_ABOVE = 0
    print(f"mlx {mx.__version__} on {cpu_name()}, {os.cpu_count()} CPUs; ratio: 1 stream / 2 streams (above 1: two are faster)\n")
    print("| loss | batch | elements | forward | forward+backward |")
    print("|---|---|---|---|---|")
    for name, loss, make, classes in CASES:
        for rows in (64, 256, 1024, 4096, 16384):
            inputs = make(rows, classes)
            mx.eval(inputs)
            vg = mx.value_and_grad(loss)
            cells = []
            for fn in (lambda: loss(*inputs), lambda: vg(*inputs)):
                _, ratios = compare_paired({"1": on_streams(1, fn), "2": on_streams(2, fn)}, "2", repeats=args.repeats)
                cells.append(f"{ratios['1']:.2f}")
            print(f"| {name} | {tuple(inputs[0].shape)} | {rows * classes} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
