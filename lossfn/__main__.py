"""``python -m lossfn``: every implemented loss on a random batch, beside PyTorch's value.

PyTorch is optional: without it only our values are printed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

import lossfn
import lossfn.functional as F

Inputs = Callable[[np.random.Generator], tuple[Any, ...]]


class Demo(NamedTuple):
    name: str
    inputs: Inputs
    kwargs: dict[str, Any] = {}


def _pair(r: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return r.normal(size=(8, 5)).astype(np.float32), r.normal(size=(8, 5)).astype(np.float32)


def _logits_labels(r: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return r.normal(size=(8, 5)).astype(np.float32), r.integers(0, 5, size=8)


def _log_probs_labels(r: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x, y = _logits_labels(r)
    return x - np.log(np.exp(x).sum(1, keepdims=True)), y


def _probs_binary(r: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return r.uniform(0.05, 0.95, size=(8, 5)).astype(np.float32), (r.uniform(size=(8, 5)) > 0.5).astype(np.float32)


def _logits_binary(r: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return r.normal(size=(8, 5)).astype(np.float32), (r.uniform(size=(8, 5)) > 0.5).astype(np.float32)


def _scores_signs(r: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return r.normal(size=(8, 5)).astype(np.float32), np.where(r.uniform(size=(8, 5)) < 0.5, -1.0, 1.0).astype(np.float32)


def _scores_label_lists(r: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = np.stack([r.permutation(5) for _ in range(8)])
    labels[np.arange(8), r.integers(0, 5, size=8)] = -1  # each list ends at its first -1
    return r.normal(size=(8, 5)).astype(np.float32), labels


def _log_probs_probs(r: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x, _ = _log_probs_labels(r)
    p = r.uniform(0.05, 1.0, size=x.shape)
    return x.astype(np.float32), (p / p.sum(1, keepdims=True)).astype(np.float32)


def _signs(r: np.random.Generator, *shape: int) -> np.ndarray:
    return np.where(r.uniform(size=shape) > 0.5, 1.0, -1.0).astype(np.float32)


def _rates_counts(r: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return r.normal(size=(8, 5)).astype(np.float32), r.poisson(3.0, size=(8, 5)).astype(np.float32)


def _means_variances(r: np.random.Generator) -> tuple[np.ndarray, ...]:
    return (*_pair(r), r.uniform(0.5, 2.0, size=(8, 1)).astype(np.float32))


def _pairs_labels(r: np.random.Generator) -> tuple[np.ndarray, ...]:
    return (*_pair(r), _signs(r, 8))


def _triples(r: np.random.Generator) -> tuple[np.ndarray, ...]:
    return (*_pair(r), r.normal(size=(8, 5)).astype(np.float32))


def _scores_labels(r: np.random.Generator) -> tuple[np.ndarray, ...]:
    return r.normal(size=8).astype(np.float32), r.normal(size=8).astype(np.float32), _signs(r, 8)


def _distances_labels(r: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return np.abs(r.normal(size=(8, 5))).astype(np.float32), _signs(r, 8, 5)


def _ctc_batch(r: np.random.Generator) -> tuple[np.ndarray, ...]:
    frames = r.normal(size=(12, 4, 5))  # (T, N, C)
    log_probs = (frames - np.log(np.exp(frames).sum(-1, keepdims=True))).astype(np.float32)
    return log_probs, r.integers(1, 5, size=(4, 3)), np.full(4, 12), r.integers(1, 4, size=4)


def _hidden_vocabulary_labels(r: np.random.Generator) -> tuple[np.ndarray, ...]:
    return r.normal(size=(8, 4)).astype(np.float32), r.normal(size=(50, 4)).astype(np.float32), r.integers(0, 50, size=8)


DEMOS: list[Demo] = [
    Demo("l1_loss", _pair),
    Demo("mse_loss", _pair),
    Demo("smooth_l1_loss", _pair, {"beta": 0.5}),
    Demo("huber_loss", _pair, {"delta": 0.5}),
    Demo("cross_entropy", _logits_labels, {"label_smoothing": 0.1}),
    Demo("nll_loss", _log_probs_labels),
    Demo("binary_cross_entropy", _probs_binary),
    Demo("binary_cross_entropy_with_logits", _logits_binary),
    Demo("multi_margin_loss", _logits_labels, {"p": 2, "margin": 0.5}),
    Demo("soft_margin_loss", _scores_signs),
    Demo("multilabel_margin_loss", _scores_label_lists),
    Demo("multilabel_soft_margin_loss", _logits_binary),
    Demo("kl_div", _log_probs_probs, {"reduction": "batchmean"}),
    Demo("poisson_nll_loss", _rates_counts, {"full": True}),
    Demo("gaussian_nll_loss", _means_variances),
    Demo("cosine_embedding_loss", _pairs_labels, {"margin": 0.2}),
    Demo("triplet_margin_loss", _triples, {"swap": True}),
    Demo("triplet_margin_with_distance_loss", _triples, {"margin": 0.5}),
    Demo("margin_ranking_loss", _scores_labels, {"margin": 0.1}),
    Demo("hinge_embedding_loss", _distances_labels),
    Demo("ctc_loss", _ctc_batch),
    Demo("linear_cross_entropy", _hidden_vocabulary_labels, {"label_smoothing": 0.1}),
]


def main() -> None:
    try:
        import torch
        import torch.nn.functional as TF
    except ImportError:  # the demo runs without the oracle
        torch = TF = None
    print(f"lossfn {lossfn.__version__} on MLX {mx.__version__}, device {mx.default_device()}")
    print(f"{'loss':<36}{'lossfn':>14}{'torch':>14}{'|diff|':>11}")
    rng = np.random.default_rng(0)
    for demo in DEMOS:
        arrays = demo.inputs(rng)
        ours = getattr(F, demo.name)(*(mx.array(a) for a in arrays), **demo.kwargs).item()
        line = f"{demo.name:<36}{ours:>14.6f}"
        if TF is not None:
            theirs = getattr(TF, demo.name)(*(torch.tensor(a) for a in arrays), **demo.kwargs).item()
            line += f"{theirs:>14.6f}{abs(ours - theirs):>11.2e}"
        print(line)


if __name__ == "__main__":
    main()
