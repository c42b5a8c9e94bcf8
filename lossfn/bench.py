"""``python -m lossfn.bench [NAME] [OPTIONS]``: the benchmarks of a source checkout, one entry point.

``NAME`` is one of :data:`BENCHMARKS` (default ``losses``: every loss against ``mlx.nn.losses``
and PyTorch, the table of the README's performance section); the options go to that script
(``python -m lossfn.bench losses --quick``, ``python -m lossfn.bench ctc --help``). Each prints
the CPU it ran on. The scripts live in ``benchmarks/`` beside the package, so this needs a
checkout (``pip install -e .``), and PyTorch (the test extra) for the torch columns.
"""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys

BENCHMARKS = {
    "losses": ("bench_losses", "every loss: lossfn.functional vs mlx.nn.losses (compiled and eager) and torch"),
    "beyond": ("bench_beyond", "the losses beyond PyTorch's catalogue vs optax under jax.jit"),
    "ctc": ("bench_ctc", "ctc_loss vs torch: forward, forward+backward, first calls"),
    "linear-ce": ("bench_linear_ce", "linear_cross_entropy: time and peak memory vs the unfused head and torch"),
    "overhead": ("bench_overhead", "per-call time of small eager calls vs mlx.nn.losses"),
    "ops": ("bench_ops", "per-element cost of MLX's operations, eager and compiled"),
    "streams": ("bench_streams", "one CPU stream against two (transforms.cpu_streams)"),
    "per-example": ("bench_per_example", "per-example gradients and DP-SGD vs MLX and torch.func"),
    "scale-out": ("bench_scale_out", "the global mean over 2 ring processes (runs mlx.launch)"),
}


def _scripts() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help", "--list"):
        print(__doc__.splitlines()[0] + "\n")
        for name, (_, what) in BENCHMARKS.items():
            print(f"  {name:<12} {what}")
        return 0
    name = argv[0] if argv and not argv[0].startswith("-") else "losses"
    options = argv[1:] if argv and argv[0] == name else argv
    if name not in BENCHMARKS:
        print(f"lossfn.bench: unknown benchmark {name!r}; one of {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    script = os.path.join(_scripts(), BENCHMARKS[name][0] + ".py")
    if not os.path.exists(script):
        print(f"lossfn.bench: {script} not found: the benchmarks come with a source checkout", file=sys.stderr)
        return 2
    if name == "scale-out":
        launcher = shutil.which("mlx.launch", path=os.path.dirname(sys.executable)) or shutil.which("mlx.launch") or "mlx.launch"
        launch = [launcher, "--backend", "ring", "-n", "2", "--python", sys.executable, script]
        return subprocess.call(launch + options)
    sys.argv = [script, *options]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
