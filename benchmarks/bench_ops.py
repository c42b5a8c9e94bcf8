"""Per-element cost of MLX's operations on this machine: what a loss's graph is made of.

Run ``python benchmarks/bench_ops.py`` (``--size`` elements, 4M by default). Each operation is
timed on float32 inputs of that size, eagerly (one pass over memory each, as under
``mx.value_and_grad``, where MLX compiles nothing) and under ``mx.compile`` (a scalar C++ loop
on the CPU), interleaved round after round; a cost is the median time of one evaluated call
divided by the size, in ns per element. The eager costs are the ones the README quotes when it
counts the passes of a forward+backward; ``where`` is timed on a condition that data seldom
changes (``x > -10``) and on a random one (``x > 0``), as the branch predictor tells them apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable

import mlx.core as mx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import cpu_name, samples  # noqa: E402

Op = Callable[[mx.array, mx.array], mx.array]

OPS: dict[str, Op] = {
    "add": lambda x, y: x + y,
    "compare (x < y)": lambda x, y: x < y,
    "sum": lambda x, y: mx.sum(x),
    "sum(x > 0)": lambda x, y: mx.sum(x > 0),
    "all(x > 0)": lambda x, y: mx.all(x > 0),
    "log": lambda x, y: mx.log(y),
    "power(e, x)": lambda x, y: mx.power(mx.e, x),
    "exp": lambda x, y: mx.exp(x),
    "sigmoid": lambda x, y: mx.sigmoid(x),
    "logaddexp": lambda x, y: mx.logaddexp(x, y),
    "where, predictable": lambda x, y: mx.where(x > -10, x, y),
    "where, random": lambda x, y: mx.where(x > 0, x, y),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1 << 22, help="elements of each input")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds")
    args = parser.parse_args(argv)
    mx.set_cache_limit(1 << 32)  # buffers reused between calls
    mx.random.seed(0)
    x, y = mx.random.normal((args.size,)), mx.random.uniform(0.5, 2.0, (args.size,))
    mx.eval(x, y)
    candidates = {}
    for name, op in OPS.items():
        compiled = mx.compile(op)
        candidates[(name, "eager")] = lambda op=op: op(x, y)
        candidates[(name, "compiled")] = lambda op=compiled: op(x, y)
    times = samples(candidates, repeats=args.repeats, warmup=2)
    print(f"mlx {mx.__version__} on {cpu_name()}, {os.cpu_count()} CPUs; {args.size} float32 elements, "
          f"median of {args.repeats} rounds\n")
    print("| operation | eager ns/element | compiled ns/element |")
    print("|---|---|---|")
    for name in OPS:
        eager, compiled = (statistics.median(times[(name, k)]) * 1e9 / args.size for k in ("eager", "compiled"))
        print(f"| {name} | {eager:.2f} | {compiled:.2f} |")


if __name__ == "__main__":
    main()
