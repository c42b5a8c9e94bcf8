"""Per-call time in eager use: small batches, where the call costs more than the arithmetic.

Run ``python benchmarks/bench_overhead.py``. Each candidate is a loop of 200 calls, each one
evaluated (``mx.eval``), as a training step does; the loops run interleaved, round after
round, and a ratio is the median over rounds of ``ours / mlx`` in the same round. ``ours`` is
the public ``lossfn.functional`` call, argument checks included: its value checks (class
indices in range, probabilities in [0, 1], variances >= 0) are computed in the loss's own
compiled graph, so one evaluation gives the loss and the verdict.
"""

from __future__ import annotations

import os
import sys

import mlx.core as mx
import mlx.nn.losses as M

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import compare_paired, cpu_name  # noqa: E402

import lossfn.functional as F  # noqa: E402

CALLS = 200


def loop(fn):
    def run():
        for _ in range(CALLS):
            mx.eval(fn())

    return run


def main() -> None:
    mx.random.seed(0)
    x, y = mx.random.normal((128, 10)), mx.random.randint(0, 10, (128,))
    p, t = mx.sigmoid(mx.random.normal((128, 10))), mx.random.uniform(shape=(128, 10))
    w, var = mx.random.uniform(0.5, 2.0, (10,)), mx.random.uniform(0.5, 2.0, (128, 10))
    # A large call that is still all overhead: MLX's nll_loss is one gather of a score a row,
    # and ours probes its arguments (a user's compile or vmap tells from eager use) to build it.
    big_x, big_y = mx.random.normal((8192, 1000)), mx.random.randint(0, 1000, (8192,))
    mx.eval(x, y, p, t, w, var, big_x, big_y)
    pairs = {
        "cross_entropy (128, 10)": (lambda: F.cross_entropy(x, y), lambda: M.cross_entropy(x, y, reduction="mean")),
        "cross_entropy weight + smoothing": (
            lambda: F.cross_entropy(x, y, weight=w, label_smoothing=0.1),
            lambda: M.cross_entropy(x, y, weights=w[y], label_smoothing=0.1, reduction="sum") / mx.sum(w[y]),
        ),
        "nll_loss (128, 10)": (lambda: F.nll_loss(x, y), lambda: M.nll_loss(x, y, reduction="mean")),
        "nll_loss (8192, 1000)": (lambda: F.nll_loss(big_x, big_y), lambda: M.nll_loss(big_x, big_y, reduction="mean")),
        "binary_cross_entropy (128, 10)": (lambda: F.binary_cross_entropy(p, t), lambda: M.binary_cross_entropy(p, t, with_logits=False, reduction="mean")),
        "gaussian_nll_loss (128, 10)": (lambda: F.gaussian_nll_loss(x, t, var), lambda: M.gaussian_nll_loss(x, t, var, reduction="mean")),
        "mse_loss (128, 10)": (lambda: F.mse_loss(x, t), lambda: M.mse_loss(x, t, reduction="mean")),
    }
    print(f"mlx {mx.__version__} on {cpu_name()}, {os.cpu_count()} CPUs; {CALLS} evaluated calls per round\n")
    print("| case | ours µs/call | mlx.nn.losses µs/call | ours / mlx |")
    print("|---|---|---|---|")
    for name, (ours, theirs) in pairs.items():
        medians, ratios = compare_paired({"ours": loop(ours), "mlx": loop(theirs)}, "mlx", repeats=9)
        print(f"| {name} | {medians['ours'] / CALLS * 1e6:.0f} | {medians['mlx'] / CALLS * 1e6:.0f} | {ratios['ours']:.2f} |")


if __name__ == "__main__":
    main()
