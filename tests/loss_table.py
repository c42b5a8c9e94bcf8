"""One row per ``lossfn.functional`` loss, as data: how to make a batch, and the call in ours and in torch's.

Each row makes NumPy inputs for a batch of ``n`` examples (``n`` may be 0), names which of
them are floating-point data (differentiable, cast to half precision, where NaN and inf
are put) and calls the loss with ``reduction`` in both libraries. Shared by the property
suite (``test_properties``) and the scripts it runs in a subprocess.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

import lossfn.functional as F
from lossfn.nn import LinearCrossEntropyOptions

C, D, T_FRAMES = 5, 4, 6


class Row(NamedTuple):
    make: Callable[[np.random.Generator, int], list[np.ndarray]]
    ours: Callable[..., Any]  # (*mx arrays, reduction=...) -> mx.array
    theirs: Callable[..., Any]  # (*torch tensors, reduction=...) -> torch.Tensor
    floats: tuple[int, ...] = (0,)  # the floating-point data among the inputs
    shapeless: bool = True  # False where MLX cannot compile it shapeless (an mx.custom_function)
    reductions: tuple[str, ...] = ("none", "mean", "sum")


def normal(r: np.random.Generator, *shape: int) -> np.ndarray:
    return r.normal(size=shape).astype(np.float32)


def unit(r: np.random.Generator, *shape: int) -> np.ndarray:
    return r.uniform(0.05, 0.95, size=shape).astype(np.float32)


def signs(r: np.random.Generator, *shape: int) -> np.ndarray:
    return np.where(r.uniform(size=shape) < 0.5, -1.0, 1.0).astype(np.float32)


def labels(r: np.random.Generator, n: int) -> np.ndarray:
    return r.integers(0, C, size=n).astype(np.int64)


def distributions(r: np.random.Generator, n: int) -> np.ndarray:
    p = r.uniform(0.1, 1.0, size=(n, C)).astype(np.float32)
    return p / p.sum(-1, keepdims=True)


def log_probs(r: np.random.Generator, *shape: int) -> np.ndarray:
    x = r.normal(size=shape)
    return (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(np.float32)


def label_lists(r: np.random.Generator, n: int) -> np.ndarray:
    lists = np.array([r.permutation(C) for _ in range(n)], dtype=np.int64).reshape(n, C)
    if n:
        lists[np.arange(n), r.integers(0, C, size=n)] = -1
    return lists.astype(np.int64)


def ctc(r: np.random.Generator, n: int) -> list[np.ndarray]:
    return [
        log_probs(r, T_FRAMES, n, C),
        r.integers(1, C, size=(n, 3)).astype(np.int64),
        np.full(n, T_FRAMES, dtype=np.int64),
        r.integers(0, 4, size=n).astype(np.int64),
    ]


def _torch_ctc_true_derivative(t: Any, log_probs: Any, *rest: Any, reduction: str) -> Any:
    """PyTorch's CTC loss with our gradient convention: the true derivative with respect to
    ``log_probs``. PyTorch's backward adds ``exp(log_probs)`` to it (on every frame here, where
    every input is full length); a term of value 0 takes that away again."""
    e = log_probs.exp()
    per_example = t.ctc_loss(log_probs, *rest, reduction="none") - (e - e.detach()).sum((0, 2))
    if reduction == "none":
        return per_example
    if reduction == "sum":
        return per_example.sum()
    return (per_example / rest[2].clamp(min=1)).mean()


def _weights(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


W = _weights(0.5, 1.0, 2.0, 1.5, 0.25)

ROWS: dict[str, Row] = {
    "l1_loss": Row(lambda r, n: [normal(r, n, D), normal(r, n, D)], F.l1_loss, lambda t, *a, **k: t.l1_loss(*a, **k), (0, 1)),
    "mse_loss": Row(lambda r, n: [normal(r, n, D), normal(r, n, D)], F.mse_loss, lambda t, *a, **k: t.mse_loss(*a, **k), (0, 1)),
    "smooth_l1_loss": Row(
        lambda r, n: [normal(r, n, D), normal(r, n, D)],
        lambda *a, **k: F.smooth_l1_loss(*a, beta=0.5, **k),
        lambda t, *a, **k: t.smooth_l1_loss(*a, beta=0.5, **k),
        (0, 1),
    ),
    "huber_loss": Row(
        lambda r, n: [normal(r, n, D), normal(r, n, D)],
        lambda *a, **k: F.huber_loss(*a, delta=0.7, **k),
        lambda t, *a, **k: t.huber_loss(*a, delta=0.7, **k),
        (0, 1),
    ),
    "cross_entropy": Row(lambda r, n: [normal(r, n, C) * 3, labels(r, n)], F.cross_entropy, lambda t, *a, **k: t.cross_entropy(*a, **k)),
    "cross_entropy, every option": Row(
        lambda r, n: [normal(r, n, C) * 3, labels(r, n), W],
        lambda x, y, w, **k: F.cross_entropy(x, y, weight=w, ignore_index=2, label_smoothing=0.1, **k),
        lambda t, x, y, w, **k: t.cross_entropy(x, y, weight=w, ignore_index=2, label_smoothing=0.1, **k),
    ),
    "cross_entropy, probabilities": Row(
        lambda r, n: [normal(r, n, C) * 3, distributions(r, n)],
        lambda *a, **k: F.cross_entropy(*a, label_smoothing=0.2, **k),
        lambda t, *a, **k: t.cross_entropy(*a, label_smoothing=0.2, **k),
        (0, 1),
    ),
    "cross_entropy, K-dim": Row(
        lambda r, n: [normal(r, n, C, 3) * 3, r.integers(0, C, size=(n, 3)).astype(np.int64)],
        F.cross_entropy,
        lambda t, *a, **k: t.cross_entropy(*a, **k),
    ),
    "nll_loss": Row(
        lambda r, n: [log_probs(r, n, C), labels(r, n), W],
        lambda x, y, w, **k: F.nll_loss(x, y, weight=w, **k),
        lambda t, x, y, w, **k: t.nll_loss(x, y, weight=w, **k),
    ),
    "binary_cross_entropy": Row(
        lambda r, n: [unit(r, n, D), unit(r, n, D)], F.binary_cross_entropy, lambda t, *a, **k: t.binary_cross_entropy(*a, **k), (0, 1), False
    ),
    "binary_cross_entropy_with_logits": Row(
        lambda r, n: [normal(r, n, D) * 3, unit(r, n, D), _weights(1.0, 2.0, 0.5, 3.0)],
        lambda x, y, w, **k: F.binary_cross_entropy_with_logits(x, y, pos_weight=w, **k),
        lambda t, x, y, w, **k: t.binary_cross_entropy_with_logits(x, y, pos_weight=w, **k),
        (0, 1),
    ),
    "kl_div": Row(
        lambda r, n: [log_probs(r, n, C), distributions(r, n)],
        lambda *a, **k: F.kl_div(*a, reduction="batchmean" if k["reduction"] == "mean" else k["reduction"]),
        lambda t, *a, **k: t.kl_div(*a, reduction="batchmean" if k["reduction"] == "mean" else k["reduction"]),
        (0, 1),
    ),
    "poisson_nll_loss": Row(
        lambda r, n: [normal(r, n, D), r.poisson(2.0, size=(n, D)).astype(np.float32)],
        lambda *a, **k: F.poisson_nll_loss(*a, full=True, **k),
        lambda t, *a, **k: t.poisson_nll_loss(*a, full=True, **k),
    ),
    "gaussian_nll_loss": Row(
        lambda r, n: [normal(r, n, D), normal(r, n, D), r.uniform(0.5, 2.0, size=(n, D)).astype(np.float32)],
        F.gaussian_nll_loss,
        lambda t, *a, **k: t.gaussian_nll_loss(*a, **k),
        (0, 1, 2),
    ),
    "cosine_embedding_loss": Row(
        lambda r, n: [normal(r, n, D), normal(r, n, D), signs(r, n)],
        lambda *a, **k: F.cosine_embedding_loss(*a, margin=0.2, **k),
        lambda t, *a, **k: t.cosine_embedding_loss(*a, margin=0.2, **k),
        (0, 1),
    ),
    "triplet_margin_loss": Row(
        lambda r, n: [normal(r, n, D), normal(r, n, D), normal(r, n, D)],
        lambda *a, **k: F.triplet_margin_loss(*a, swap=True, **k),
        lambda t, *a, **k: t.triplet_margin_loss(*a, swap=True, **k),
        (0, 1, 2),
    ),
    "triplet_margin_loss, p=3": Row(
        lambda r, n: [normal(r, n, D), normal(r, n, D), normal(r, n, D)],
        lambda *a, **k: F.triplet_margin_loss(*a, p=3, **k),
        lambda t, *a, **k: t.triplet_margin_loss(*a, p=3, **k),
        (0, 1, 2),
    ),
    "triplet_margin_with_distance_loss": Row(
        lambda r, n: [normal(r, n, D), normal(r, n, D), normal(r, n, D)],
        lambda *a, **k: F.triplet_margin_with_distance_loss(
            *a, distance_function=lambda x, y: mx.sum(mx.abs(x - y), axis=-1), margin=0.5, **k
        ),
        lambda t, *a, **k: t.triplet_margin_with_distance_loss(
            *a, distance_function=lambda x, y: (x - y).abs().sum(-1), margin=0.5, **k
        ),
        (0, 1, 2),
    ),
    "margin_ranking_loss": Row(
        lambda r, n: [normal(r, n), normal(r, n), signs(r, n)],
        lambda *a, **k: F.margin_ranking_loss(*a, margin=0.1, **k),
        lambda t, *a, **k: t.margin_ranking_loss(*a, margin=0.1, **k),
        (0, 1),
    ),
    "hinge_embedding_loss": Row(
        lambda r, n: [np.abs(normal(r, n, D)), signs(r, n, D)],
        lambda *a, **k: F.hinge_embedding_loss(*a, margin=0.8, **k),
        lambda t, *a, **k: t.hinge_embedding_loss(*a, margin=0.8, **k),
    ),
    "multi_margin_loss": Row(
        lambda r, n: [normal(r, n, C), labels(r, n), W],
        lambda x, y, w, **k: F.multi_margin_loss(x, y, p=2, margin=0.5, weight=w, **k),
        lambda t, x, y, w, **k: t.multi_margin_loss(x, y, p=2, margin=0.5, weight=w, **k),
    ),
    "multilabel_margin_loss": Row(
        lambda r, n: [normal(r, n, C), label_lists(r, n)], F.multilabel_margin_loss, lambda t, *a, **k: t.multilabel_margin_loss(*a, **k)
    ),
    "multilabel_soft_margin_loss": Row(
        lambda r, n: [normal(r, n, C) * 3, (r.uniform(size=(n, C)) > 0.5).astype(np.float32), W],
        lambda x, y, w, **k: F.multilabel_soft_margin_loss(x, y, weight=w, **k),
        lambda t, x, y, w, **k: t.multilabel_soft_margin_loss(x, y, weight=w, **k),
    ),
    "soft_margin_loss": Row(
        lambda r, n: [normal(r, n, D) * 3, signs(r, n, D)], F.soft_margin_loss, lambda t, *a, **k: t.soft_margin_loss(*a, **k)
    ),
    "ctc_loss": Row(ctc, F.ctc_loss, lambda t, *a, **k: _torch_ctc_true_derivative(t, *a, **k), (0,), False),
    "linear_cross_entropy": Row(
        lambda r, n: [normal(r, n, D), normal(r, C, D), labels(r, n)],
        F.linear_cross_entropy,
        lambda t, *a, **k: t.linear_cross_entropy(*a, **k),
        (0, 1),
    ),
    "linear_cross_entropy, tiled": Row(
        lambda r, n: [normal(r, n, D), normal(r, C, D), labels(r, n)],
        lambda *a, **k: F.linear_cross_entropy(*a, options=LinearCrossEntropyOptions(tile=8), **k),
        lambda t, *a, **k: t.linear_cross_entropy(*a, **k),
        (0, 1),
        False,
    ),
    "pairwise_distance": Row(
        lambda r, n: [normal(r, n, D), normal(r, n, D)],
        lambda *a, reduction: F.pairwise_distance(*a),
        lambda t, *a, reduction: t.pairwise_distance(*a),
        (0, 1),
        reductions=("none",),
    ),
}


def to_mx(x: np.ndarray) -> mx.array:
    return mx.array(x.astype(np.int32) if x.dtype == np.int64 else x)
