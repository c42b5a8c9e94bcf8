"""Per-example gradients of a 784-256-10 tanh MLP with cross-entropy, batch 256, compiled.

Compares, in one run: the plain batch gradient in MLX (the baseline), our per-example
transforms (materialised gradients, norms only, the clipped DP-SGD sum; 'linear' and 'vmap'
methods), plain ``mx.vmap(mx.grad(...))``, a Python loop of single-example MLX gradients,
and PyTorch's ``torch.func.vmap(torch.func.grad(...))`` (alone and followed by clipping).

    python benchmarks/bench_per_example.py [--repeats 15] [--batch 256] [--cache-limit-mb N] [--torch-threads N]

Materialised per-example gradients are 200 MB here. MLX's CPU allocator keeps freed buffers
only up to 32 MB by default, so every call page-faults them afresh; ``--cache-limit-mb 1024``
(``mx.set_cache_limit``) shows the cost without that.
"""

from __future__ import annotations

import argparse
import os
import sys

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import optree
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from timing import compare_paired, first_call, report_paired  # noqa: E402

import lossfn  # noqa: E402
import transforms as T  # noqa: E402
from transforms._per_example import parameters_of  # noqa: E402

MAX_NORM = 1.0


def mlx_candidates(batch: int) -> dict:
    mx.random.seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.Tanh(), nn.Linear(256, 10))
    params = model.trainable_parameters()
    x, y = mx.random.normal((batch, 784)), mx.random.randint(0, 10, (batch,))
    loss = T.module_loss(model, lossfn.cross_entropy)
    key = mx.random.key(0)

    def batch_grad(p: dict, x: mx.array, y: mx.array) -> dict:
        def total(q: dict) -> mx.array:
            with parameters_of(model, q):
                return T.reduce(lossfn.cross_entropy, "sum")(model(x), y)

        return mx.grad(total)(p)

    plain = mx.compile(mx.vmap(mx.grad(loss), in_axes=(None, 0, 0)))
    grads = {m: mx.compile(T.per_example_value_and_grad(loss, method=m)) for m in ("linear", "vmap")}
    norms = mx.compile(T.per_example_grad_norms(loss, method="linear"))
    clipped = {
        m: mx.compile(T.clipped_grad(loss, MAX_NORM, noise_multiplier=1.0, method=m)) for m in ("linear", "vmap")
    }
    single = mx.compile(mx.grad(loss))
    batched = mx.compile(batch_grad)
    return {
        "mlx batch grad (baseline)": lambda: _leaves(batched(params, x, y)),
        "per_example 'linear'": lambda: _leaves(grads["linear"](params, x, y)),
        "per_example 'vmap'": lambda: _leaves(grads["vmap"](params, x, y)),
        "mx.vmap(mx.grad) plain": lambda: _leaves(plain(params, x, y)),
        "norms 'linear'": lambda: _leaves(norms(params, x, y)),
        "clipped+noise 'linear'": lambda: _leaves(clipped["linear"](params, x, y, key=key)),
        "clipped+noise 'vmap'": lambda: _leaves(clipped["vmap"](params, x, y, key=key)),
        "_loop": lambda: _leaves([single(params, x[i], y[i]) for i in range(batch)]),
        "_data": (model, x, y),
    }


def _leaves(tree: object) -> list:
    return optree.tree_leaves(tree)


def torch_candidates(model_mx: nn.Module, x_mx: mx.array, y_mx: mx.array) -> dict:
    from torch.func import functional_call, grad, vmap

    lin1, lin2 = model_mx.layers[0], model_mx.layers[2]
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.Tanh(), torch.nn.Linear(256, 10))
    with torch.no_grad():
        for t, m in ((model[0], lin1), (model[2], lin2)):
            t.weight.copy_(torch.tensor(np.array(m.weight)))
            t.bias.copy_(torch.tensor(np.array(m.bias)))
    params = {k: v.detach() for k, v in model.named_parameters()}
    x, y = torch.tensor(np.array(x_mx)), torch.tensor(np.array(y_mx)).long()

    def example_loss(p: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, p, (xi[None],))
        return torch.nn.functional.cross_entropy(out, yi[None], reduction="sum")

    per_example = vmap(grad(example_loss), in_dims=(None, 0, 0))

    def clipped() -> dict:
        g = per_example(params, x, y)
        norms = torch.sqrt(sum(v.flatten(1).square().sum(1) for v in g.values()))
        scale = MAX_NORM / torch.clamp(norms, min=MAX_NORM)
        return {k: torch.tensordot(scale, v, dims=1) + torch.randn_like(v[0]) * MAX_NORM for k, v in g.items()}

    def batch_grad() -> tuple:
        loss = torch.nn.functional.cross_entropy(functional_call(model, params_req, (x,)), y, reduction="sum")
        return torch.autograd.grad(loss, list(params_req.values()))

    params_req = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    single = grad(example_loss)
    return {
        "torch.func vmap(grad)": lambda: per_example(params, x, y),
        "torch.func + clip + noise": clipped,
        "torch batch grad": batch_grad,
        "_loop": lambda: [single(params, x[i], y[i]) for i in range(x.shape[0])],
    }


def check_same_gradients(ours: dict, theirs: dict) -> None:
    """Every per-example candidate computes the same numbers (weights, then biases, per layer)."""
    reference = [np.asarray(g) for g in ours["mx.vmap(mx.grad) plain"]()]
    torch_grads = [t.detach().numpy() for t in theirs["torch.func vmap(grad)"]().values()]
    by_layer = [reference[i] for i in (1, 0, 3, 2)]  # MLX sorts 'bias' before 'weight'
    for name, got in (("linear", ours["per_example 'linear'"]()[1:]), ("vmap", ours["per_example 'vmap'"]()[1:]), ("torch", torch_grads)):
        got = got if name == "torch" else [got[i] for i in (1, 0, 3, 2)]
        for a, b in zip(got, by_layer, strict=True):
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-6, err_msg=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--cache-limit-mb", type=int, default=None, help="mx.set_cache_limit (MLX default: 32)")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.cache_limit_mb is not None:
        mx.set_cache_limit(args.cache_limit_mb * 2**20)
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)

    ours = mlx_candidates(args.batch)
    model, x, y = ours.pop("_data")
    theirs = torch_candidates(model, x, y)
    mlx_loop, torch_loop = ours.pop("_loop"), theirs.pop("_loop")
    baseline = "mlx batch grad (baseline)"
    linear, clipped = "per_example 'linear'", "clipped+noise 'linear'"
    print(f"first call (trace + compile) of {linear}: {first_call(ours[linear]):.2f} s")
    check_same_gradients(ours, theirs)
    print(f"torch threads: {torch.get_num_threads()}; MLX: one core, reference BLAS")

    medians, ratios = compare_paired({**ours, **theirs}, baseline, repeats=args.repeats)
    print(report_paired(f"784-256-10 tanh MLP, cross-entropy, batch {args.batch}, compiled", medians, ratios, baseline))
    for name, against in (
        (linear, "torch.func vmap(grad)"),
        ("norms 'linear'", "torch.func vmap(grad)"),
        (clipped, "torch.func vmap(grad)"),
        (clipped, "torch.func + clip + noise"),
        (linear, "mx.vmap(mx.grad) plain"),
    ):
        print(f"  {name} vs {against}: x{ratios[name] / ratios[against]:5.2f}")

    loop_candidates = {baseline: ours[baseline], "mlx loop of mx.grad": mlx_loop, "torch loop": torch_loop}
    medians, ratios = compare_paired(loop_candidates, baseline, repeats=3, warmup=1)
    print(report_paired("Python loops of single-example gradients", medians, ratios, baseline))


if __name__ == "__main__":
    main()
