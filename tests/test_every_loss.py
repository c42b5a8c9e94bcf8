"""Properties every loss in the library must have, over one table of cases:

- per-example gradients: ``mx.vmap(mx.grad(f))`` over a batch of 64 examples equals a Python
  loop of single-example ``mx.grad`` calls (transforms applied where a loss takes them);
- ``mx.compile`` changes nothing, in value or gradient;
- every ``lossfn.functional`` function and ``lossfn.nn`` class has PyTorch 2.13's signature.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from oracle import assert_close, rng

import lossfn
import lossfn.functional as F
import lossfn.nn as LN
from transforms import Weighted, ignore_index, smooth_labels, weighted
from transforms._precision import in_float32

B, C, D = 64, 5, 6


class Case(NamedTuple):
    loss: Callable[..., Any]
    inputs: Callable[[np.random.Generator], list[np.ndarray]]  # batched arrays, leading axis B
    shared: int = 0  # how many trailing arguments are shared by the batch (in_axes None)


def normal(r, *shape):
    return r.normal(size=(B, *shape)).astype(np.float32)


def signs(r, *shape):
    return np.where(r.uniform(size=(B, *shape)) < 0.5, -1.0, 1.0).astype(np.float32)


def labels(r):
    return r.integers(0, C, size=B).astype(np.int32)


def padded_label_lists(r):
    lists = np.stack([r.permutation(C) for _ in range(B)])
    lists[np.arange(B), r.integers(0, C, size=B)] = -1
    return lists.astype(np.int32)


def log_probs(r):
    x = normal(r, C)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def positive_and_own(r, keys):
    """Each query's positive key and its own row among the keys, never the same."""
    positive = r.integers(0, keys, size=B)
    return positive.astype(np.int32), ((positive + r.integers(1, keys, size=B)) % keys).astype(np.int32)


def cosine_distance(x1, x2):
    return 1 - mx.sum(x1 * x2) / mx.sqrt(mx.sum(x1 * x1) * mx.sum(x2 * x2))


def ctc_inputs(r):
    """Frames (B, 6, C) of log-probabilities, targets (B, 3) padded, input and target lengths."""
    frames = r.normal(size=(B, 6, C))
    log_probs = (frames - np.log(np.exp(frames).sum(-1, keepdims=True))).astype(np.float32)
    targets = r.integers(1, C, size=(B, 3)).astype(np.int32)
    return [log_probs, targets, np.full(B, 6, dtype=np.int32), r.integers(0, 4, size=B).astype(np.int32)]


CASES: dict[str, Case] = {
    "l1_loss": Case(lossfn.l1_loss, lambda r: [normal(r, D), normal(r, D)]),
    "mse_loss": Case(lossfn.mse_loss, lambda r: [normal(r, D), normal(r, D)]),
    "smooth_l1_loss": Case(functools.partial(lossfn.smooth_l1_loss, beta=0.5), lambda r: [normal(r, D), normal(r, D)]),
    "huber_loss": Case(functools.partial(lossfn.huber_loss, delta=0.5), lambda r: [normal(r, D), normal(r, D)]),
    "cross_entropy": Case(
        ignore_index(smooth_labels(weighted(lossfn.cross_entropy), 0.1), 2),
        lambda r: [normal(r, C), labels(r), r.uniform(0.5, 2, size=C).astype(np.float32)],
        shared=1,
    ),
    "nll_loss": Case(
        ignore_index(weighted(lossfn.nll_loss), 2),
        lambda r: [log_probs(r), labels(r), r.uniform(0.5, 2, size=C).astype(np.float32)],
        shared=1,
    ),
    "binary_cross_entropy": Case(
        lossfn.binary_cross_entropy,
        lambda r: [r.uniform(0.05, 0.95, size=(B, D)).astype(np.float32), r.uniform(size=(B, D)).astype(np.float32)],
    ),
    "binary_cross_entropy_with_logits": Case(
        lossfn.binary_cross_entropy_with_logits,
        lambda r: [normal(r, D), r.uniform(size=(B, D)).astype(np.float32), r.uniform(0.5, 3, size=(B, D)).astype(np.float32)],
    ),
    "kl_div": Case(lossfn.kl_div, lambda r: [log_probs(r), np.exp(log_probs(r))]),
    "poisson_nll_loss": Case(
        functools.partial(lossfn.poisson_nll_loss, full=True),
        lambda r: [normal(r, D), r.poisson(3.0, size=(B, D)).astype(np.float32)],
    ),
    "gaussian_nll_loss": Case(
        lossfn.gaussian_nll_loss, lambda r: [normal(r, D), normal(r, D), r.uniform(0.5, 2, size=(B, D)).astype(np.float32)]
    ),
    "cosine_embedding_loss": Case(
        functools.partial(lossfn.cosine_embedding_loss, margin=0.1), lambda r: [normal(r, D), normal(r, D), signs(r)]
    ),
    "triplet_margin_loss": Case(
        functools.partial(lossfn.triplet_margin_loss, swap=True), lambda r: [normal(r, D), normal(r, D), normal(r, D)]
    ),
    "triplet_margin_with_distance_loss": Case(
        functools.partial(lossfn.triplet_margin_with_distance_loss, distance_function=cosine_distance, margin=0.5),
        lambda r: [normal(r, D), normal(r, D), normal(r, D)],
    ),
    "margin_ranking_loss": Case(
        functools.partial(lossfn.margin_ranking_loss, margin=0.1), lambda r: [normal(r), normal(r), signs(r)]
    ),
    "hinge_embedding_loss": Case(lossfn.hinge_embedding_loss, lambda r: [np.abs(normal(r, D)), signs(r, D)]),
    "multilabel_margin_loss": Case(lossfn.multilabel_margin_loss, lambda r: [normal(r, C), padded_label_lists(r)]),
    "multilabel_soft_margin_loss": Case(
        lossfn.multilabel_soft_margin_loss,
        lambda r: [normal(r, C), (r.uniform(size=(B, C)) > 0.5).astype(np.float32), r.uniform(0.5, 2, size=C).astype(np.float32)],
        shared=1,
    ),
    "multi_margin_loss": Case(
        weighted(functools.partial(lossfn.multi_margin_loss, p=2, margin=0.5), normalize=False),
        lambda r: [normal(r, C), labels(r), r.uniform(0.5, 2, size=C).astype(np.float32)],
        shared=1,
    ),
    "multi_margin_loss, p=1, negative margin": Case(
        functools.partial(lossfn.multi_margin_loss, p=1, margin=-0.4), lambda r: [normal(r, C), labels(r)]
    ),
    "soft_margin_loss": Case(lossfn.soft_margin_loss, lambda r: [normal(r, D), signs(r, D)]),
    "ctc_loss": Case(lossfn.ctc_loss, ctc_inputs),
    "linear_cross_entropy": Case(
        # hidden states and labels batched; the vocabulary (V, D) and its bias shared. A tile of
        # 128 logits makes the batch cross several tiles of both tokens and classes.
        lambda h, y, W, b, w: ignore_index(smooth_labels(weighted(lossfn.linear_cross_entropy), 0.1), 2)(h, W, y, b, w, tile=128),
        lambda r: [normal(r, D), r.integers(0, 300, size=B).astype(np.int32), r.normal(size=(300, D)).astype(np.float32),
                   r.normal(size=300).astype(np.float32), r.uniform(0.5, 2, size=300).astype(np.float32)],
        shared=3,
    ),
    "pairwise_distance": Case(functools.partial(lossfn.pairwise_distance, p=1.5), lambda r: [normal(r, D), normal(r, D)]),
    # beyond PyTorch's catalogue
    "sigmoid_focal_loss": Case(
        functools.partial(lossfn.sigmoid_focal_loss, alpha=0.3, gamma=1.5), lambda r: [normal(r, D), r.uniform(size=(B, D)).astype(np.float32)]
    ),
    "poly1_cross_entropy": Case(
        ignore_index(weighted(functools.partial(lossfn.poly1_cross_entropy, epsilon=1.5)), 2),
        lambda r: [normal(r, C), labels(r), r.uniform(0.5, 2, size=C).astype(np.float32)],
        shared=1,
    ),
    "multiclass_hinge_loss": Case(lossfn.multiclass_hinge_loss, lambda r: [normal(r, C), labels(r)]),
    "multiclass_perceptron_loss": Case(lossfn.multiclass_perceptron_loss, lambda r: [normal(r, C), labels(r)]),
    "perceptron_loss": Case(lossfn.perceptron_loss, lambda r: [normal(r, D), signs(r, D)]),
    "log_cosh": Case(lossfn.log_cosh, lambda r: [normal(r, D) * 30, normal(r, D)]),
    "generalized_kl_divergence": Case(lossfn.generalized_kl_divergence, lambda r: [normal(r, C), r.uniform(0, 2, size=(B, C)).astype(np.float32)]),
    "convex_kl_divergence": Case(lossfn.convex_kl_divergence, lambda r: [normal(r, C), r.uniform(0, 2, size=(B, C)).astype(np.float32)]),
    "cosine_similarity": Case(lossfn.cosine_similarity, lambda r: [normal(r, D), normal(r, D)]),
    # sparsemax is a projection, not a loss: a weighted sum of it, computed in float32 as a loss is
    "sparsemax": Case(in_float32(lambda x, t: lossfn.sparsemax(x) * t), lambda r: [normal(r, C), normal(r, C)]),
    "multiclass_sparsemax_loss": Case(lossfn.multiclass_sparsemax_loss, lambda r: [normal(r, C), labels(r)]),
    "sparsemax_loss": Case(lossfn.sparsemax_loss, lambda r: [normal(r, D), (r.uniform(size=(B, D)) < 0.5).astype(np.float32)]),
    "ranking_softmax_loss": Case(
        lossfn.ranking_softmax_loss, lambda r: [normal(r, C), r.integers(0, 3, size=(B, C)).astype(np.float32), r.uniform(size=(B, C)) < 0.8]
    ),
    "dice_loss": Case(lossfn.dice_loss, lambda r: [normal(r, 3, 4, 4), r.uniform(size=(B, 3, 4, 4)).astype(np.float32)]),
    "generalized_dice_loss": Case(lossfn.generalized_dice_loss, lambda r: [normal(r, 3, 4, 4), r.uniform(size=(B, 3, 4, 4)).astype(np.float32)]),
    "binary_dice_loss": Case(lossfn.binary_dice_loss, lambda r: [normal(r, 4, 4), (r.uniform(size=(B, 4, 4)) < 0.4).astype(np.float32)]),
    "ntxent": Case(
        lambda q, p, o, keys: lossfn.ntxent(q, keys, p, o, temperature=0.2),
        lambda r: [normal(r, D), r.integers(0, 9, size=B).astype(np.int32), np.full(B, -1, np.int32), r.normal(size=(9, D)).astype(np.float32)],
        shared=1,
    ),
    "ctc_forward_probabilities": Case(lambda *a: lossfn.ctc_forward_probabilities(*a)[0], ctc_inputs),
    "info_nce": Case(
        lambda q, p, o, keys: lossfn.info_nce(q, keys, p, o, temperature=0.5),
        lambda r: [normal(r, D), *positive_and_own(r, 9), r.normal(size=(9, D)).astype(np.float32)],
        shared=1,
    ),
    "cosine_distance": Case(functools.partial(lossfn.cosine_distance, epsilon=1e-6), lambda r: [normal(r, D), normal(r, D)]),
}


# Not a differentiable function of its inputs: tested on its own (test_beyond_torch).
NOT_DIFFERENTIABLE = {"ctc_forced_alignment"}


def test_every_loss_in_the_library_has_a_case():
    assert set(lossfn.__all__) - NOT_DIFFERENTIABLE <= set(CASES)


def scalar_loss(loss: Callable[..., Any]) -> Callable[..., mx.array]:
    """One example's loss as one number: element-wise losses are summed over the example."""

    def scalar(x, *rest):
        out = loss(x, *rest)
        return mx.sum(out.value if isinstance(out, Weighted) else out)

    return scalar


@pytest.mark.parametrize("name", sorted(CASES))
def test_vmap_of_grad_equals_a_loop_of_grads(name):
    case = CASES[name]
    args = [mx.array(a) for a in case.inputs(rng("per-example", name))]
    in_axes = (0,) * (len(args) - case.shared) + (None,) * case.shared
    grad = mx.grad(scalar_loss(case.loss))
    vmapped = mx.vmap(grad, in_axes=in_axes)(*args)
    looped = mx.stack([grad(*[a if ax is None else a[i] for a, ax in zip(args, in_axes)]) for i in range(B)])
    assert vmapped.shape == args[0].shape
    assert np.isfinite(np.asarray(vmapped)).all()
    assert_close(vmapped, looped)


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_equals_eager(name):
    case = CASES[name]
    args = [mx.array(a) for a in case.inputs(rng("compiled", name))]
    in_axes = (0,) * (len(args) - case.shared) + (None,) * case.shared
    batch = mx.vmap(scalar_loss(case.loss), in_axes=in_axes)
    assert_close(mx.compile(batch)(*args), batch(*args))
    grad = mx.grad(scalar_loss(case.loss))
    example = [a if ax is None else a[3] for a, ax in zip(args, in_axes)]
    assert_close(mx.compile(grad)(*example), grad(*example))


FUNCTIONAL = sorted(name for name in dir(F) if not name.startswith("_") and callable(getattr(F, name)))
MODULES = sorted(name for name in dir(LN) if name.endswith("Loss") and not name.startswith("_") and name not in LN.BEYOND_TORCH)


def parameters(fn):
    return [(p.name, p.default, p.kind) for p in inspect.signature(fn).parameters.values()]


def test_every_loss_of_pytorchs_catalogue_has_a_functional_and_a_module():
    catalogue = set(lossfn.__all__) - set(lossfn.BEYOND_TORCH)
    assert {n for n in catalogue if n != "pairwise_distance"} <= set(FUNCTIONAL)
    assert len(MODULES) == len(catalogue) - 1  # one class per loss
    assert not set(lossfn.BEYOND_TORCH) & set(FUNCTIONAL)  # lossfn.functional stays PyTorch's API


@pytest.mark.parametrize("name", FUNCTIONAL)
def test_functional_signature_is_torchs(name):
    if name == "pairwise_distance":  # a C builtin in torch: its documented signature
        assert [(p, d) for p, d, _ in parameters(F.pairwise_distance)] == [
            ("x1", inspect.Parameter.empty), ("x2", inspect.Parameter.empty), ("p", 2.0), ("eps", 1e-6), ("keepdim", False)
        ]
        return
    assert parameters(getattr(F, name)) == parameters(getattr(TF, name))


@pytest.mark.parametrize("name", MODULES)
def test_module_signature_is_torchs(name):
    assert parameters(getattr(LN, name).__init__) == parameters(getattr(torch.nn, name).__init__)
