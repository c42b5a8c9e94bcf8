"""Time lossfn's losses against ``mlx.nn.losses`` and PyTorch, forward and forward+backward.

Run ``python benchmarks/bench_losses.py`` (``--quick`` for sizes 16x smaller, ``--only ce``
to run the cases whose name contains ``ce``, ``--budget`` seconds per case). The candidates
of a case run interleaved, round after round (``timing.samples``, with a short untimed pause
before each sample; a sample is the mean of ``--burst`` calls, 2 by default, after an untimed
one: on a KVM guest of an Intel Xeon, the first torch call after a pause paid up to 1 ms to
wake its workers, 20% of cross-entropy at (8192, 1000)); a ratio is the median over rounds of the two times in the same round, so
load that drifts between rounds cancels. The candidates:

* ``ours``: the public ``lossfn.functional`` call, argument checks and batch layout included;
* ``graph``: the compiled composition alone (``_graphs.reduce_graph`` / ``class_graph``);
* ``mlx`` / ``mlx-c``: the ``mlx.nn.losses`` counterpart, eager and under ``mx.compile``;
* ``torch``: ``torch.nn.functional``, eager, on the CPU, default thread count.

Forward+backward is ``mx.value_and_grad`` with respect to the first input (the loss value is
evaluated too, as in training) and ``torch.autograd.grad`` after the forward. Under
``mx.value_and_grad`` MLX runs a compiled function as plain code (its inputs are tracers), so
there mlx-c is MLX eager and our graphs are traced again on every call; two more columns time
the step compiled whole, ``mx.compile(mx.value_and_grad(...))``: ``ours-cs`` and ``mlx-cs``
(inside a user's compile nothing is sharded over CPU streams, unless ``--fixed-shapes``
promises fixed shapes: ``transforms.fixed_shapes``). The target of
the foundation issue is ``ours / mlx-c <= 1.05`` at the median over the cases; the speed
issue's, at most 0.5 at the median of the exp/log-heavy cases (``EXP_LOG_HEAVY``, printed
under each table). ``--streams 1`` times lossfn on one CPU stream (``transforms.cpu_streams``).
The last section times ``transforms.accurate_sum`` against ``mx.sum`` on 2**24 and 2**27 elements.

Before timing, each candidate's value and gradient are compared with ours (relative 1e-4) and
any disagreement is printed. A case is a row of ``CASES``: a name, a function making NumPy
inputs for a size ``scale``, and the loss on each side. Add a loss by adding a row.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn.losses as mlx_losses
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import SETTLE, cpu_name, samples

import lossfn
import lossfn.functional as F
import transforms as T
from lossfn.functional._graphs import class_graph, reduce_graph

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # torch is optional: its columns are left empty
    torch = None  # type: ignore[assignment]
    TF = None  # type: ignore[assignment]

Inputs = Sequence[np.ndarray]


@dataclass(frozen=True)
class Case:
    """One benchmark row. Every loss takes the inputs of ``make_inputs`` in order; the first is differentiated."""

    name: str
    size: str  # the shape timed at scale 1, for the table
    make_inputs: Callable[
        [int], Inputs
    ]  # scale (1, or 16 with --quick) -> NumPy inputs
    ours: Callable[..., mx.array]  # the public lossfn.functional call
    graph: Callable[
        ..., mx.array
    ]  # the compiled composition alone: no checks, no layout
    mlx: Callable[..., mx.array] | None  # the mlx.nn.losses counterpart, or None
    torch: Callable[..., Any] | None  # the torch.nn.functional counterpart, or None


# --- inputs -------------------------------------------------------------------------------

_rng = np.random.default_rng(0)


def _normal(*shape: int) -> np.ndarray:
    return _rng.standard_normal(shape, dtype=np.float32)


def _uniform(*shape: int) -> np.ndarray:
    return _rng.random(shape, dtype=np.float32)


def _classes(num_classes: int, *shape: int, ignored: float = 0.0) -> np.ndarray:
    y = _rng.integers(0, num_classes, shape)
    if ignored:
        y[_rng.random(shape) < ignored] = -100
    return y


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def elementwise_pair(n: int, kind: str = "normal") -> Callable[[int], Inputs]:
    def make(scale: int) -> Inputs:
        m = n // scale
        if kind == "probabilities":
            return [1 / (1 + np.exp(-_normal(m))), _uniform(m)]
        if kind == "logits":
            return [_normal(m), _uniform(m)]
        return [_normal(m), _normal(m)]

    return make


def class_scores(
    n: int,
    c: int,
    *,
    target: str = "index",
    weight: bool = False,
    ignored: float = 0.0,
    spatial: tuple[int, ...] = (),
    log_probs: bool = False,
) -> Callable[[int], Inputs]:
    def make(scale: int) -> Inputs:
        rows = max(n // scale, 1)
        x = _normal(rows, c, *spatial)
        if log_probs:
            x = np.log(_softmax(x, 1))
        y = (
            _softmax(_normal(rows, c, *spatial), 1)
            if target == "probabilities"
            else _classes(c, rows, *spatial, ignored=ignored)
        )
        return [x, y] + ([_uniform(c) + 0.5] if weight else [])

    return make


def _signs(*shape: int) -> np.ndarray:
    return np.where(_rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def _label_lists(n: int, c: int, most: int) -> np.ndarray:
    """``(n, c)`` rows of 0 to ``most`` distinct class indices, padded with -1 (multi-label margin)."""
    labels = np.argsort(_rng.random((n, c)), axis=1)[:, :most]
    count = _rng.integers(0, most + 1, (n, 1))
    y = np.full((n, c), -1)
    y[:, :most] = np.where(np.arange(most) < count, labels, -1)
    return y


def log_distributions(n: int, c: int, log_target: bool) -> Callable[[int], Inputs]:
    """Log-probabilities ``(n, c)`` and a target distribution (log-probabilities if ``log_target``)."""

    def make(scale: int) -> Inputs:
        rows = max(n // scale, 1)
        x = np.log(_softmax(_normal(rows, c), 1))
        y = _softmax(_normal(rows, c), 1)
        return [x, np.log(y) if log_target else y]

    return make


def embeddings(
    n: int, d: int, count: int, signs: bool = False
) -> Callable[[int], Inputs]:
    """``count`` arrays ``(n, d)``, then, if ``signs``, a target of +-1 per row."""

    def make(scale: int) -> Inputs:
        rows = max(n // scale, 1)
        return [_normal(rows, d) for _ in range(count)] + (
            [_signs(rows)] if signs else []
        )

    return make


def to_mx(x: np.ndarray) -> mx.array:
    return mx.array(x.astype(np.int32) if np.issubdtype(x.dtype, np.integer) else x)


TORCH_DEVICE = {"name": "cpu"}  # --torch-device: "cuda" beside MLX's CUDA backend


def to_torch(x: np.ndarray) -> Any:
    return torch.from_numpy(
        x.astype(np.int64) if np.issubdtype(x.dtype, np.integer) else x
    ).to(TORCH_DEVICE["name"])


# --- the counterparts that mlx.nn.losses lacks as one call --------------------------------


def mlx_weighted_ce(x: mx.array, y: mx.array, w: mx.array) -> mx.array:
    """PyTorch's weighted cross-entropy with ignore_index=-100 from ``mlx.nn.losses`` pieces."""
    keep = y != -100
    y = mx.where(keep, y, 0)
    w_y = mx.where(keep, w[y], 0)
    return mlx_losses.cross_entropy(x, y, weights=w_y, reduction="sum") / w_y.sum()


def mlx_bce_pos_weight(x: mx.array, y: mx.array, pos_weight: mx.array) -> mx.array:
    """BCE with logits and ``pos_weight`` (not in ``mlx.nn.losses``), written as MLX users do."""
    log_weight = 1 + (pos_weight - 1) * y
    return mx.mean((1 - y) * x + log_weight * mx.logaddexp(0, -x))


def mlx_kl_div(x: mx.array, y: mx.array) -> mx.array:
    """KL batchmean of log-probabilities from probabilities (``kl_div_loss`` takes log-targets)."""
    return mx.sum(y * (mx.log(y) - x)) / x.shape[0]


def mlx_poisson_full(x: mx.array, y: mx.array) -> mx.array:
    """Poisson NLL of log-rates with Stirling's term where ``y > 1``, as the formula reads."""
    stirling = y * mx.log(y) - y + 0.5 * mx.log(2 * np.pi * y)
    return mx.mean(mx.exp(x) - y * x + mx.where(y > 1, stirling, 0))


def mlx_soft_margin(x: mx.array, y: mx.array) -> mx.array:
    return mx.mean(mx.logaddexp(0, -y * x))


def mlx_multilabel_soft_margin(x: mx.array, y: mx.array) -> mx.array:
    return mx.mean(mx.mean(mlx_losses.binary_cross_entropy(x, y, reduction="none"), axis=-1))


# --- the cases ----------------------------------------------------------------------------

M = mlx_losses
K = lossfn


def _class(
    loss: Any, weighted: bool = False, smoothed: bool = False, alpha: float = 0.0
) -> Callable[..., mx.array]:
    graph = class_graph(loss, "mean", weighted, smoothed)
    return lambda x, y, *w: graph(x, y, *w, index=-100, alpha=alpha)[0]  # (loss, index check)


def _reduced(
    loss: Any,
    reduction: str = "mean",
    weighting: str | None = None,
    static: tuple[str, ...] = (),
    **hyper: Any,
) -> Callable[..., mx.array]:
    graph = reduce_graph(loss, reduction, weighting, static)
    return lambda *args: graph(*args, **hyper)


def _torch(name: str, **kw: Any) -> Callable[..., Any] | None:
    return None if TF is None else (lambda *a: getattr(TF, name)(*a, **kw))


_N16M, _N4M = 1 << 24, 1 << 22

CASES: list[Case] = [
    Case(
        "cross_entropy",
        "(8192, 1000)",
        class_scores(8192, 1000),
        F.cross_entropy,
        _class(K.cross_entropy),
        lambda x, y: M.cross_entropy(x, y, reduction="mean"),
        _torch("cross_entropy"),
    ),
    Case(
        "cross_entropy",
        "(2048, 32000)",
        class_scores(2048, 32000),
        F.cross_entropy,
        _class(K.cross_entropy),
        lambda x, y: M.cross_entropy(x, y, reduction="mean"),
        _torch("cross_entropy"),
    ),
    Case(
        "cross_entropy probs",
        "(8192, 1000)",
        class_scores(8192, 1000, target="probabilities"),
        F.cross_entropy,
        _class(K.cross_entropy),
        lambda x, y: M.cross_entropy(x, y, reduction="mean"),
        _torch("cross_entropy"),
    ),
    Case(
        "cross_entropy weight+ignore",
        "(8192, 1000)",
        class_scores(8192, 1000, weight=True, ignored=0.1),
        F.cross_entropy,
        _class(K.cross_entropy, weighted=True),
        mlx_weighted_ce,
        _torch("cross_entropy"),
    ),
    Case(
        "cross_entropy smoothing=0.1",
        "(8192, 1000)",
        class_scores(8192, 1000),
        lambda x, y: F.cross_entropy(x, y, label_smoothing=0.1),
        _class(K.cross_entropy, smoothed=True, alpha=0.1),
        lambda x, y: M.cross_entropy(x, y, label_smoothing=0.1, reduction="mean"),
        _torch("cross_entropy", label_smoothing=0.1),
    ),
    Case(
        "cross_entropy K-dim",
        "(16, 21, 128, 128)",
        class_scores(16, 21, spatial=(128, 128)),
        F.cross_entropy,
        lambda x, y: _class(K.cross_entropy)(
            mx.moveaxis(x, 1, -1).reshape(-1, x.shape[1]), y.reshape(-1)
        ),
        lambda x, y: M.cross_entropy(x, y, axis=1, reduction="mean"),
        _torch("cross_entropy"),
    ),
    Case(
        "nll_loss",
        "(8192, 1000)",
        class_scores(8192, 1000, log_probs=True),
        F.nll_loss,
        _class(K.nll_loss),
        lambda x, y: M.nll_loss(x, y, reduction="mean"),
        _torch("nll_loss"),
    ),
    Case(
        "binary_cross_entropy",
        "4M",
        elementwise_pair(_N4M, "probabilities"),
        F.binary_cross_entropy,
        _reduced(K.binary_cross_entropy),
        lambda x, y: M.binary_cross_entropy(x, y, with_logits=False),
        _torch("binary_cross_entropy"),
    ),
    Case(
        "bce_with_logits",
        "4M",
        elementwise_pair(_N4M, "logits"),
        F.binary_cross_entropy_with_logits,
        _reduced(K.binary_cross_entropy_with_logits),
        lambda x, y: M.binary_cross_entropy(x, y),
        _torch("binary_cross_entropy_with_logits"),
    ),
    Case(
        "bce_with_logits pos_weight",
        "(4096, 1024)",
        lambda s: [
            _normal(4096 // s, 1024),
            _uniform(4096 // s, 1024),
            _uniform(1024) + 0.5,
        ],
        lambda x, y, p: F.binary_cross_entropy_with_logits(x, y, pos_weight=p),
        lambda x, y, p: _reduced(K.binary_cross_entropy_with_logits)(
            x, y, mx.broadcast_to(p, x.shape)
        ),
        mlx_bce_pos_weight,
        None
        if TF is None
        else (lambda x, y, p: TF.binary_cross_entropy_with_logits(x, y, pos_weight=p)),
    ),
    Case(
        "mse_loss",
        "16M",
        elementwise_pair(_N16M),
        F.mse_loss,
        _reduced(K.mse_loss),
        M.mse_loss,
        _torch("mse_loss"),
    ),
    Case(
        "l1_loss",
        "16M",
        elementwise_pair(_N16M),
        F.l1_loss,
        _reduced(K.l1_loss),
        M.l1_loss,
        _torch("l1_loss"),
    ),
    Case(
        "smooth_l1_loss",
        "16M",
        elementwise_pair(_N16M),
        F.smooth_l1_loss,
        _reduced(K.smooth_l1_loss, beta=1.0),
        M.smooth_l1_loss,
        _torch("smooth_l1_loss"),
    ),
    Case(
        "huber_loss",
        "16M",
        elementwise_pair(_N16M),
        F.huber_loss,
        _reduced(K.huber_loss, delta=1.0),
        lambda x, y: M.huber_loss(x, y, reduction="mean"),
        _torch("huber_loss"),
    ),
    # The rest of the catalogue (issue 3). An mlx column only where mlx.nn.losses computes the
    # same number, or where the speed issue asks for the formula written directly in MLX (the
    # mlx_* functions above): its hinge_loss is max(0, 1 - x y), not the hinge embedding loss, and its
    # cosine_similarity_loss is the cosine itself; its kl_div_loss takes log-probability targets;
    # its triplet_loss adds eps to the p-th power sum, PyTorch to the difference (same to ~1e-7).
    Case(
        "kl_div batchmean",
        "(4096, 1024)",
        log_distributions(4096, 1024, log_target=False),
        lambda x, y: F.kl_div(x, y, reduction="batchmean"),
        _reduced(K.kl_div, "batchmean", log_target=False),
        mlx_kl_div,
        _torch("kl_div", reduction="batchmean"),
    ),
    Case(
        "kl_div batchmean log_target",
        "(4096, 1024)",
        log_distributions(4096, 1024, log_target=True),
        lambda x, y: F.kl_div(x, y, reduction="batchmean", log_target=True),
        _reduced(K.kl_div, "batchmean", log_target=True),
        lambda x, y: M.kl_div_loss(x, y, axis=-1, reduction="mean"),
        _torch("kl_div", reduction="batchmean", log_target=True),
    ),
    Case(
        "poisson_nll_loss full",
        "4M",
        lambda s: [_normal(_N4M // s), _rng.poisson(2.0, _N4M // s).astype(np.float32)],
        lambda x, y: F.poisson_nll_loss(x, y, full=True),
        _reduced(K.poisson_nll_loss, log_input=True, full=True, eps=1e-8),
        mlx_poisson_full,
        _torch("poisson_nll_loss", full=True),
    ),
    Case(
        "gaussian_nll_loss",
        "4M",
        lambda s: [_normal(_N4M // s), _normal(_N4M // s), _uniform(_N4M // s) + 0.1],
        F.gaussian_nll_loss,
        _reduced(K.gaussian_nll_loss, full=False, eps=1e-6),
        M.gaussian_nll_loss,
        _torch("gaussian_nll_loss"),
    ),
    Case(
        "cosine_embedding_loss",
        "(8192, 256)",
        embeddings(8192, 256, 2, signs=True),
        F.cosine_embedding_loss,
        _reduced(K.cosine_embedding_loss, margin=0.0),
        None,
        _torch("cosine_embedding_loss"),
    ),
    Case(
        "triplet_margin_loss",
        "(8192, 256)",
        embeddings(8192, 256, 3),
        F.triplet_margin_loss,
        _reduced(
            K.triplet_margin_loss,
            static=("p",),
            margin=1.0,
            p=2.0,
            eps=1e-6,
            swap=False,
        ),
        lambda a, p, n: M.triplet_loss(a, p, n, reduction="mean"),
        _torch("triplet_margin_loss"),
    ),
    Case(
        "triplet_margin_loss swap",
        "(8192, 256)",
        embeddings(8192, 256, 3),
        lambda a, p, n: F.triplet_margin_loss(a, p, n, swap=True),
        _reduced(
            K.triplet_margin_loss, static=("p",), margin=1.0, p=2.0, eps=1e-6, swap=True
        ),
        None,
        _torch("triplet_margin_loss", swap=True),
    ),
    Case(
        "triplet_margin_with_distance_loss",
        "(8192, 256)",
        embeddings(8192, 256, 3),
        F.triplet_margin_with_distance_loss,
        _reduced(
            K.triplet_margin_loss,
            static=("p",),
            margin=1.0,
            p=2.0,
            eps=1e-6,
            swap=False,
        ),
        lambda a, p, n: M.triplet_loss(a, p, n, reduction="mean"),
        _torch("triplet_margin_with_distance_loss"),
    ),
    Case(
        "margin_ranking_loss",
        "4M",
        lambda s: [_normal(_N4M // s), _normal(_N4M // s), _signs(_N4M // s)],
        F.margin_ranking_loss,
        _reduced(K.margin_ranking_loss, margin=0.0),
        lambda a, b, y: M.margin_ranking_loss(a, b, y, reduction="mean"),
        _torch("margin_ranking_loss"),
    ),
    Case(
        "hinge_embedding_loss",
        "4M",
        lambda s: [_normal(_N4M // s), _signs(_N4M // s)],
        F.hinge_embedding_loss,
        _reduced(K.hinge_embedding_loss, margin=1.0),
        None,
        _torch("hinge_embedding_loss"),
    ),
    Case(
        "soft_margin_loss",
        "4M",
        lambda s: [_normal(_N4M // s), _signs(_N4M // s)],
        F.soft_margin_loss,
        _reduced(K.soft_margin_loss),
        mlx_soft_margin,
        _torch("soft_margin_loss"),
    ),
    Case(
        "multi_margin_loss",
        "(8192, 1000)",
        class_scores(8192, 1000),
        F.multi_margin_loss,
        _reduced(K.multi_margin_loss, static=("p",), p=1, margin=1.0),
        None,
        _torch("multi_margin_loss"),
    ),
    Case(
        "multi_margin_loss weight",
        "(8192, 1000)",
        class_scores(8192, 1000, weight=True),
        lambda x, y, w: F.multi_margin_loss(x, y, weight=w),
        _reduced(
            K.multi_margin_loss, weighting="class", static=("p",), p=1, margin=1.0
        ),
        None,
        None if TF is None else (lambda x, y, w: TF.multi_margin_loss(x, y, weight=w)),
    ),
    Case(
        "multilabel_margin_loss",
        "(4096, 100)",
        lambda s: [
            _normal(max(4096 // s, 1), 100),
            _label_lists(max(4096 // s, 1), 100, most=10),
        ],
        F.multilabel_margin_loss,
        _reduced(K.multilabel_margin_loss),
        None,
        _torch("multilabel_margin_loss"),
    ),
    Case(
        "multilabel_soft_margin_loss",
        "(4096, 1000)",
        lambda s: [
            _normal(max(4096 // s, 1), 1000),
            (_uniform(max(4096 // s, 1), 1000) < 0.1).astype(np.float32),
        ],
        F.multilabel_soft_margin_loss,
        _reduced(K.multilabel_soft_margin_loss),
        mlx_multilabel_soft_margin,
        _torch("multilabel_soft_margin_loss"),
    ),
]


# The exp/log-heavy cases of the speed issue, whose median speed-up over MLX is its target.
EXP_LOG_HEAVY = (
    "cross_entropy",
    "cross_entropy probs",
    "cross_entropy weight+ignore",
    "cross_entropy smoothing=0.1",
    "cross_entropy K-dim",
    "bce_with_logits",
    "bce_with_logits pos_weight",
    "kl_div batchmean",
    "kl_div batchmean log_target",
    "soft_margin_loss",
    "multilabel_soft_margin_loss",
    "poisson_nll_loss full",
    "gaussian_nll_loss",
)


# --- timing -------------------------------------------------------------------------------


def mlx_value_and_grad(fn: Callable[..., mx.array]) -> Callable[..., Any]:
    return mx.value_and_grad(fn, argnums=0)


def compiled_step(fn: Callable[..., mx.array]) -> Callable[..., Any]:
    """``mx.compile(mx.value_and_grad(fn))``. (``mx.value_and_grad(mx.compile(fn))``, the mlx-c
    column, does not compile: MLX runs a compiled function called with tracers as plain code.)"""
    return mx.compile(mlx_value_and_grad(fn))


def torch_value_and_grad(fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(x: Any, *rest: Any) -> Any:
        x = x.detach().requires_grad_(True)
        value = fn(x, *rest)
        return value, torch.autograd.grad(value, x)[0]

    return run


def candidates(
    case: Case, inputs: Inputs, backward: bool
) -> dict[str, Callable[[], Any]]:
    """The zero-argument callables timed for ``case``: ours, graph, mlx, mlx-c, torch."""
    a = [to_mx(x) for x in inputs]
    mx.eval(*a)
    wrap = mlx_value_and_grad if backward else (lambda f: f)
    fns = {"ours": wrap(case.ours), "graph": wrap(case.graph)}
    if case.mlx is not None:
        fns["mlx"] = wrap(case.mlx)
        fns["mlx-c"] = wrap(mx.compile(case.mlx))
        if backward:  # the whole step compiled, MLX's own pattern
            fns["ours-cs"] = compiled_step(case.ours)
            fns["mlx-cs"] = compiled_step(case.mlx)
    out: dict[str, Callable[[], Any]] = {k: (lambda f=f: f(*a)) for k, f in fns.items()}
    if case.torch is not None and torch is not None:
        t = [to_torch(x) for x in inputs]
        fn = torch_value_and_grad(case.torch) if backward else case.torch
        out["torch"] = lambda: fn(*t)
    return out


def disagreements(case: Case, scale: int, rtol: float = 1e-4) -> list[str]:
    """Where a candidate's value, or its gradient wrt the first input, differs from ours:
    relative ``rtol`` (elements of a gradient compared to ``rtol`` times its largest one)."""
    inputs = case.make_inputs(scale)
    a = [to_mx(x) for x in inputs]
    ours = [np.asarray(r) for r in mlx_value_and_grad(case.ours)(*a)]
    results = {"graph": mlx_value_and_grad(case.graph)(*a)}
    if case.mlx is not None:
        results["mlx"] = mlx_value_and_grad(case.mlx)(*a)
        results["ours-cs"] = compiled_step(case.ours)(*a)
    if case.torch is not None and torch is not None:
        results["torch"] = torch_value_and_grad(case.torch)(
            *(to_torch(x) for x in inputs)
        )
    found = []
    for name, (value, grad) in results.items():
        value, grad = (
            np.asarray(value.detach().cpu() if name == "torch" else value),
            np.asarray(grad.cpu() if name == "torch" else grad),
        )
        if not np.allclose(value, ours[0], rtol=rtol, atol=0):
            found.append(
                f"{case.name} {case.size}: {name} value {float(value):.8g}, ours {float(ours[0]):.8g}"
            )
        scale_of_grad = float(np.abs(ours[1]).max())
        if not np.allclose(grad, ours[1], rtol=rtol, atol=rtol * scale_of_grad):
            worst = float(np.abs(grad - ours[1]).max())
            found.append(
                f"{case.name} {case.size}: {name} gradient off by {worst:.3g} (largest {scale_of_grad:.3g})"
            )
    return found


def flat(result: Any) -> list[Any]:
    """The leaves of a ``(value, grad)`` result, for ``timing.force``."""
    return list(result) if isinstance(result, tuple) else [result]


def measure(
    case: Case, scale: int, repeats: int, budget: float, backward: bool, burst: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each candidate, interleaved: as many rounds as fit in ``budget``
    seconds, at least 3 and at most ``repeats`` (the first call, which compiles, is not timed).
    With ``burst > 1`` a sample is the mean of ``burst`` calls after an untimed one
    (``timing.samples``).

    MLX's buffer cache is emptied first: full of the previous case's buffers (up to the cache
    limit), it would leave this case's allocations to fresh pages, slowing both candidates
    alike by up to 2.5x (16M-element losses forward+backward after the (2048, 32000) case)
    and pulling every ratio towards 1: the "order effect" of earlier runs.
    """
    gc.collect()
    mx.clear_cache()
    fns = {
        k: (lambda f=f: flat(f()))
        for k, f in candidates(case, case.make_inputs(scale), backward).items()
    }
    first = samples(fns, repeats=1, warmup=1, settle=SETTLE, burst=burst)
    calls = burst + 1 if burst > 1 else 1
    rounds = max(3, min(repeats, int(budget / (calls * sum(t[0] for t in first.values())))))
    rest = samples(fns, repeats=rounds - 1, warmup=0, settle=SETTLE, burst=burst)
    return {k: first[k] + rest[k] for k in fns}


def ratio(times: dict[str, list[float]], a: str, b: str) -> float | None:
    """Median over rounds of ``a``'s time over ``b``'s in the same round (load drift cancels)."""
    if a not in times or b not in times:
        return None
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


COLUMNS = ("ours", "graph", "mlx-c", "mlx", "torch")
RATIOS = (("ours", "mlx-c"), ("graph", "mlx-c"), ("ours", "mlx"), ("ours", "torch"))
# Forward+backward only: ours and MLX's each compiled as a whole step (``compiled_step``).
STEP_COLUMNS, STEP_RATIOS = ("ours-cs", "mlx-cs"), (("ours-cs", "mlx-cs"),)


def table(rows: list[tuple[Case, dict[str, list[float]]]], title: str, backward: bool = False) -> str:
    columns = COLUMNS + STEP_COLUMNS if backward else COLUMNS
    ratios_of = RATIOS + STEP_RATIOS if backward else RATIOS
    head = (
        ["case", "size"]
        + [f"{c} ms" for c in columns]
        + [f"{a}/{b}" for a, b in ratios_of]
    )
    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for case, t in rows:
        times = [
            f"{statistics.median(t[c]) * 1e3:.1f}" if c in t else "-" for c in columns
        ]
        ratios = [ratio(t, a, b) for a, b in ratios_of]
        cells = ["-" if r is None else f"{r:.2f}" for r in ratios]
        lines.append("| " + " | ".join([case.name, case.size, *times, *cells]) + " |")
    lines.append("")
    for a, b in ratios_of:
        values = [r for _, t in rows if (r := ratio(t, a, b)) is not None]
        if values:
            lines.append(
                f"median {a}/{b}: {statistics.median(values):.2f} (max {max(values):.2f})  "
            )
    heavy = [r for case, t in rows if case.name in EXP_LOG_HEAVY and (r := ratio(t, "ours", "mlx-c")) is not None]
    if heavy:
        lines.append(f"median ours/mlx-c over the {len(heavy)} exp/log-heavy cases: {statistics.median(heavy):.2f}  ")
    return "\n".join(lines)


# --- the staged sum -----------------------------------------------------------------------


def bench_accurate_sum(scale: int, repeats: int) -> str:
    """``transforms.accurate_sum`` against ``mx.sum``: alone (eager and compiled) and as the
    reduction of a compiled MSE, with each one's error against a float64 sum."""
    lines = ["### accurate_sum vs mx.sum (float32)", ""]
    compiled_sum = mx.compile(T.accurate_sum)
    mse_accurate = mx.compile(lambda a, b: T.accurate_sum(mx.square(a - b)) / a.size)
    mse_plain = mx.compile(lambda a, b: mx.mean(mx.square(a - b)))
    for n in (1 << 24, 1 << 27):
        x_np = _uniform(n // scale)
        x, y = mx.array(x_np), mx.zeros(x_np.shape)
        mx.eval(x, y)
        fns = {
            "mx.sum": (mx.sum, x),
            "accurate_sum": (T.accurate_sum, x),
            "compiled accurate_sum": (compiled_sum, x),
            "mean(square) by mx.mean": (mse_plain, x, y),
            "mean(square) by accurate_sum": (mse_accurate, x, y),
        }
        t = samples(
            {k: functools.partial(*f) for k, f in fns.items()},
            repeats=repeats,
            warmup=1,
        )
        exact = float(np.sum(x_np, dtype=np.float64))
        err = {
            k: abs(float(f) - exact) / exact
            for k, f in (("mx.sum", mx.sum(x)), ("accurate_sum", T.accurate_sum(x)))
        }
        lines.append(
            f"n = 2**{int(np.log2(x.size))}: mx.sum {statistics.median(t['mx.sum']) * 1e3:.1f} ms "
            f"(relative error {err['mx.sum']:.1e}); accurate_sum x{ratio(t, 'accurate_sum', 'mx.sum'):.3f} "
            f"(error {err['accurate_sum']:.1e}), compiled x{ratio(t, 'compiled accurate_sum', 'mx.sum'):.3f}; "
            f"in a compiled mean of squares x{ratio(t, 'mean(square) by accurate_sum', 'mean(square) by mx.mean'):.3f}  "
        )
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------


def environment() -> str:
    parts = [
        f"mlx {mx.__version__} ({mx.default_device()})",
        f"numpy {np.__version__}",
        f"{cpu_name()} ({platform.machine()}), {os.cpu_count()} CPUs, lossfn on {T.cpu_streams()} CPU streams"
        + (", fixed shapes promised" if T.fixed_shapes() else ""),
    ]
    if torch is not None and TORCH_DEVICE["name"] != "cpu":
        parts.append(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    elif torch is not None:
        parts.append(
            f"torch {torch.__version__} ({torch.get_num_threads()} intra-op threads, "
            f"{torch.get_num_interop_threads()} inter-op)"
        )
    else:
        parts.append("torch not installed")
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 16x smaller")
    parser.add_argument(
        "--only", default="", help="run the cases whose name contains one of these (comma-separated)"
    )
    parser.add_argument(
        "--repeats", type=int, default=25, help="most timed rounds per case (a sub-ms case fits many in its budget)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=5.0,
        help="seconds of timed rounds per case and direction",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=2,
        help="calls per sample, after an untimed one (1: single calls after a pause)",
    )
    parser.add_argument(
        "--no-sum", action="store_true", help="skip the accurate_sum benchmark"
    )
    parser.add_argument(
        "--beyond", action="store_true", help="only the losses beyond PyTorch's, against optax (bench_beyond.py)"
    )
    parser.add_argument(
        "--streams", type=int, default=None, help="CPU streams lossfn shards large batches over (transforms.cpu_streams; default 2)"
    )
    parser.add_argument(
        "--fixed-shapes", action="store_true", help="promise fixed shapes (transforms.fixed_shapes): ours-cs shards and stages"
    )
    parser.add_argument(
        "--torch-device", default=None, help="torch's device (default: cuda where MLX runs on a GPU and torch sees one, else cpu)"
    )
    args = parser.parse_args(argv)
    on_gpu = mx.default_device().type == mx.DeviceType.gpu
    TORCH_DEVICE["name"] = args.torch_device or ("cuda" if on_gpu and torch is not None and torch.cuda.is_available() else "cpu")
    if args.streams is not None:
        T.cpu_streams(args.streams)
    if args.fixed_shapes:
        T.fixed_shapes(True)
    mx.set_cache_limit(1 << 32)  # buffers reused between calls, for every candidate alike
    if args.beyond:
        import bench_beyond

        bench_beyond.main(["--repeats", str(args.repeats)])
        return
    scale = 16 if args.quick else 1
    print(environment())
    print(
        f"scale 1/{scale}; times are medians; ratios are medians of per-round ratios "
        f"(candidates interleaved, 3 to {args.repeats} rounds within {args.budget:g} s per case; "
        + (f"a sample is the mean of {args.burst} calls after an untimed one)\n" if args.burst > 1 else "single calls)\n")
    )
    cases = [c for c in CASES if any(part in c.name for part in args.only.split(","))]
    found = [line for case in cases for line in disagreements(case, scale)]
    print(
        "values and gradients: "
        + (
            "\n".join(["disagree:", *found])
            if found
            else f"all candidates agree with ours in {len(cases)} cases"
        )
        + "\n",
        flush=True,
    )
    for backward, title in (
        (False, "forward"),
        (True, "forward + backward (value_and_grad wrt input)"),
    ):
        rows = []
        for case in cases:
            rows.append(
                (case, measure(case, scale, args.repeats, args.budget, backward, args.burst))
            )
            medians = {k: statistics.median(v) for k, v in rows[-1][1].items()}
            print(
                f"  {case.name} {case.size}: "
                + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in medians.items()),
                file=sys.stderr,
                flush=True,
            )
        print(table(rows, title, backward) + "\n", flush=True)
    if not args.no_sum:
        print(bench_accurate_sum(scale, args.repeats))


if __name__ == "__main__":
    main()
