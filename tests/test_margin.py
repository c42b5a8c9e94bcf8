"""Margin losses (multi-margin, soft margin) against PyTorch 2.13: values, gradients, errors, transforms."""

from __future__ import annotations

import itertools

import mlx.core as mx
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from oracle import assert_close, check_against_torch

import lossfn
import lossfn.functional as F
import lossfn.nn as LN
from lossfn.functional import _margin as functional_margin
from lossfn.functional._graphs import reduce_graph

REDUCTIONS = ("none", "mean", "sum")
NUM_CLASSES = 5
rng = np.random.default_rng(1234)


def scores(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (scale * rng.standard_normal(shape)).astype(np.float32)


# --- multi_margin_loss --------------------------------------------------------------------

# (input shape, target shape): batched, one example with a 0-d or a (1,) target, and torch's
# 0-d input (one class).
MULTI_MARGIN_SHAPES = {
    "batched": ((6, NUM_CLASSES), (6,)),
    "unbatched": ((NUM_CLASSES,), ()),
    "unbatched, target (1,)": ((NUM_CLASSES,), (1,)),
    "0-d": ((), ()),
}


@pytest.mark.parametrize(
    "layout, p, weighted, reduction",
    list(itertools.product(MULTI_MARGIN_SHAPES, (1, 2), (False, True), REDUCTIONS)),
)
def test_multi_margin_matches_torch(layout, p, weighted, reduction):
    input_shape, target_shape = MULTI_MARGIN_SHAPES[layout]
    num_classes = input_shape[-1] if input_shape else 1
    x = scores(*input_shape)
    y = rng.integers(0, num_classes, size=target_shape)
    w = rng.uniform(0.2, 2.0, num_classes).astype(np.float32) if weighted else None
    # Margins: the default, a negative one (only scores above x_y by > 0.5 count) and a wide one.
    for margin in (1.0, -0.5, 2.5):
        check_against_torch(
            lambda a, b, c, m=margin: F.multi_margin_loss(a, b, p=p, margin=m, weight=c, reduction=reduction),
            lambda a, b, c, m=margin: TF.multi_margin_loss(a, b, p=p, margin=m, weight=c, reduction=reduction),
            [x, y, w],
        )


def test_multi_margin_module_matches_functional():
    x, y = scores(4, NUM_CLASSES), rng.integers(0, NUM_CLASSES, 4)
    w = rng.uniform(0.5, 1.5, NUM_CLASSES).astype(np.float32)
    for p, margin, reduction in itertools.product((1, 2), (1.0, -0.3), REDUCTIONS):
        check_against_torch(
            LN.MultiMarginLoss(p=p, margin=margin, weight=mx.array(w), reduction=reduction),
            torch.nn.MultiMarginLoss(p=p, margin=margin, weight=torch.tensor(w), reduction=reduction),
            [x, y],
        )


def test_multi_margin_weight_is_a_buffer_and_repr():
    loss = LN.MultiMarginLoss(p=2, margin=0.5, weight=mx.ones(3))
    assert loss.trainable_parameters() == {}
    assert "p=2" in repr(loss) and "margin=0.5" in repr(loss) and "weight=array(3,)" in repr(loss)


def test_multi_margin_mean_divides_by_batch_not_weight_sum():
    # PyTorch's multi-margin 'mean' is sum(w[y] l) / N, unlike cross-entropy's sum(w[y] l) / sum(w[y]).
    x, y = scores(8, NUM_CLASSES), rng.integers(0, NUM_CLASSES, 8)
    w = mx.array(rng.uniform(0.1, 3.0, NUM_CLASSES).astype(np.float32))
    none = F.multi_margin_loss(mx.array(x), mx.array(y), weight=w, reduction="none")
    mean = F.multi_margin_loss(mx.array(x), mx.array(y), weight=w)
    assert_close(mean, mx.sum(none) / 8)


def test_multi_margin_new_margin_does_not_retrace():
    x, y = mx.array(scores(3, NUM_CLASSES)), mx.array(rng.integers(0, NUM_CLASSES, 3))
    # the call functional makes
    graph = reduce_graph(lossfn.multi_margin_loss, "sum", None, static=("p",), check=functional_margin._indices_valid)
    F.multi_margin_loss(x, y, margin=1.0, reduction="sum")
    traces = graph.traces
    for margin in (0.25, -1.5, 3):
        F.multi_margin_loss(x, y, margin=margin, reduction="sum")
    assert graph.traces == traces
    F.multi_margin_loss(x, y, p=2, margin=1.0, reduction="sum")  # p selects the code: one more trace
    assert graph.traces == traces + 1


def test_multi_margin_no_gradient_at_the_kink():
    # z = margin - x_y + x_i exactly 0: PyTorch's gradient is 0 (strict z > 0); ours too.
    x = np.array([[0.0, 1.0, 0.0, 0.0]], np.float32)
    check_against_torch(
        lambda a, b: F.multi_margin_loss(a, b, reduction="sum"),
        lambda a, b: TF.multi_margin_loss(a, b, reduction="sum"),
        [x, np.array([1])],
    )


IDX = np.array([0, 1, 2])
MULTI_MARGIN_ERRORS = [
    # (input, target, keywords, our error, message fragment)
    (scores(3, 4), IDX, {"p": 3}, ValueError, "p == 1 and p == 2"),
    (scores(3, 4), IDX, {"p": 0}, ValueError, "p == 1 and p == 2"),
    (scores(3, 4), np.array([0, 1, 4]), {}, IndexError, "target holds class index 4"),
    (scores(3, 4), np.array([0, -1, 2]), {}, IndexError, "target holds class index -1"),
    (scores(3, 4), IDX[:, None], {}, ValueError, "target must hold one class index per example"),
    (scores(3, 4), IDX[:2], {}, ValueError, r"shape \(3,\) or \(\)"),
    (scores(2, 3, 4), np.array([0, 1]), {}, ValueError, "input must be a non-empty vector"),
    (scores(3, 0), IDX, {}, ValueError, "input must be a non-empty vector"),
    (scores(3, 4), IDX, {"weight": np.ones(3, np.float32)}, ValueError, "weight must have one entry per class"),
    (scores(3, 4), IDX, {"weight": np.ones((1, 4), np.float32)}, ValueError, "weight must have one entry per class"),
    (scores(3, 4), IDX.astype(np.float32), {}, TypeError, "target must be an integer array"),
    (np.ones((3, 4), np.int64), IDX, {}, TypeError, "input must be a floating-point array"),
    (scores(3, 4), IDX, {"reduction": "batchmean"}, ValueError, "reduction must be one of"),
]


@pytest.mark.parametrize("x, y, kwargs, error, match", MULTI_MARGIN_ERRORS)
def test_multi_margin_errors(x, y, kwargs, error, match):
    to_torch = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    with pytest.raises((RuntimeError, ValueError, IndexError, NotImplementedError)):  # torch raises too
        TF.multi_margin_loss(torch.tensor(x), torch.tensor(y), **to_torch)
    to_mx = {k: mx.array(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    with pytest.raises(error, match=match):
        F.multi_margin_loss(mx.array(x), mx.array(y), **to_mx)


def test_multi_margin_module_errors():
    with pytest.raises(ValueError, match="p == 1 and p == 2"):
        LN.MultiMarginLoss(p=3)
    with pytest.raises(ValueError, match="expected weight to be None or 1-D"):
        LN.MultiMarginLoss(weight=mx.ones((2, 3)))
    with pytest.raises(ValueError, match="p == 1 and p == 2"):
        lossfn.multi_margin_loss(mx.zeros(3), mx.array(0), p=3)


def test_multi_margin_deprecated_reduction_arguments():
    x, y = scores(3, 4), IDX
    with pytest.warns(UserWarning, match="reduction='sum'"):
        ours = F.multi_margin_loss(mx.array(x), mx.array(y), size_average=False)
    assert_close(ours, TF.multi_margin_loss(torch.tensor(x), torch.tensor(y), reduction="sum"))


def test_multi_margin_empty_batch():
    # 'none' and 'sum' as PyTorch; an empty 'mean' is 0/0 = nan (PyTorch returns an arbitrary number).
    x, y = mx.zeros((0, 4)), mx.zeros((0,), mx.int32)
    assert F.multi_margin_loss(x, y, reduction="none").shape == (0,)
    assert F.multi_margin_loss(x, y, reduction="sum").item() == 0
    assert np.isnan(F.multi_margin_loss(x, y).item())


# --- soft_margin_loss ---------------------------------------------------------------------

SOFT_MARGIN_SHAPES = {
    "batched": ((4, 3), (4, 3)),
    "vector": ((7,), (7,)),
    "0-d": ((), ()),
    "k-dim": ((2, 3, 2), (2, 3, 2)),
    "target broadcast": ((4, 3), (3,)),
}


@pytest.mark.parametrize("layout, reduction", list(itertools.product(SOFT_MARGIN_SHAPES, REDUCTIONS)))
def test_soft_margin_matches_torch(layout, reduction):
    input_shape, target_shape = SOFT_MARGIN_SHAPES[layout]
    x = scores(*input_shape, scale=3.0)
    y = np.where(rng.uniform(size=target_shape) < 0.5, -1.0, 1.0).astype(np.float32)
    check_against_torch(
        lambda a, b: F.soft_margin_loss(a, b, reduction=reduction),
        lambda a, b: TF.soft_margin_loss(a, b, reduction=reduction),
        [x, y],
    )
    check_against_torch(
        LN.SoftMarginLoss(reduction=reduction), torch.nn.SoftMarginLoss(reduction=reduction), [x, y]
    )


def test_soft_margin_any_real_target_matches_torch():
    # The formula log(1 + exp(-y x)) holds for any y, not only +-1; integer targets are cast.
    x, y = scores(4, 3), scores(4, 3)
    check_against_torch(F.soft_margin_loss, TF.soft_margin_loss, [x, y])
    check_against_torch(F.soft_margin_loss, TF.soft_margin_loss, [x, np.sign(y).astype(np.int64)], wrt=(0,))


def _torch_reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_soft_margin_is_exact_for_huge_scores(reduction):
    # PyTorch's soft_margin_loss computes log1p(exp(-y x)): inf (gradient nan) once -y x > 88.
    # The oracle here is torch's softplus(-y x), exact at any magnitude, with its gradient.
    x = np.array([[1e4, -1e4, 3e4, -1e30], [1e30, 100.0, -100.0, 0.5]], np.float32)
    y = np.array([[1.0, 1.0, -1.0, -1.0], [-1.0, -1.0, 1.0, 1.0]], np.float32)
    assert np.isinf(TF.soft_margin_loss(torch.tensor(x), torch.tensor(y), reduction="none").numpy()).any()
    check_against_torch(
        lambda a, b: F.soft_margin_loss(a, b, reduction=reduction),
        lambda a, b: _torch_reduce(TF.softplus(-b * a), reduction),
        [x, y],
    )


@pytest.mark.parametrize(
    "x, y, error, match",
    [
        (scores(3), scores(2, 3), ValueError, r"target of shape \(2, 3\) cannot be broadcast"),
        (scores(3), scores(4), ValueError, r"target of shape \(4,\) cannot be broadcast"),
        (np.ones(3, np.int64), np.ones(3, np.float32), TypeError, "input must be a floating-point array"),
    ],
)
def test_soft_margin_errors(x, y, error, match):
    with pytest.raises(RuntimeError):  # torch raises too
        TF.soft_margin_loss(torch.tensor(x), torch.tensor(y))
    with pytest.raises(error, match=match):
        F.soft_margin_loss(mx.array(x), mx.array(y))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.soft_margin_loss(mx.zeros(3), mx.ones(3), reduction="batchmean")


def test_soft_margin_deprecated_reduction_arguments():
    x, y = scores(3), np.ones(3, np.float32)
    with pytest.warns(UserWarning, match="reduction='none'"):
        ours = F.soft_margin_loss(mx.array(x), mx.array(y), reduce=False)
    assert_close(ours, TF.soft_margin_loss(torch.tensor(x), torch.tensor(y), reduction="none"))


def test_soft_margin_empty_is_nan_like_torch():
    assert np.isnan(F.soft_margin_loss(mx.zeros((0,)), mx.zeros((0,))).item())
    assert np.isnan(TF.soft_margin_loss(torch.zeros(0), torch.zeros(0)).item())
