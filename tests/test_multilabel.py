"""Multi-label losses (margin, soft margin) against PyTorch 2.13: values, gradients, errors, transforms."""

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

REDUCTIONS = ("none", "mean", "sum")
NUM_CLASSES = 5
rng = np.random.default_rng(4321)


def scores(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (scale * rng.standard_normal(shape)).astype(np.float32)


# --- multilabel_margin_loss ---------------------------------------------------------------

# Label lists of C = 5 entries padded with -1: only the entries before the first -1 count.
PADDED_TARGETS = {
    "padding first (no label)": [-1, 2, 3, 0, 1],
    "no padding, every class a label": [3, 1, 4, 0, 2],
    "no padding, duplicates": [1, 1, 2, 2, 3],
    "padding second": [3, -1, 1, 4, 4],
    "padding in the middle, classes after it": [3, 0, -1, 1, 4],
    "padding last": [2, 4, 1, 0, -1],
    "duplicate label": [1, 1, -1, 0, 0],
    "one label, padding repeated": [4, -1, -1, -1, -1],
}
TARGET_ROWS = np.array(list(PADDED_TARGETS.values()), np.int64)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_margin_batched_matches_torch(reduction):
    x = scores(len(TARGET_ROWS), NUM_CLASSES)
    check_against_torch(
        lambda a, b: F.multilabel_margin_loss(a, b, reduction=reduction),
        lambda a, b: TF.multilabel_margin_loss(a, b, reduction=reduction),
        [x, TARGET_ROWS],
    )
    check_against_torch(
        LN.MultiLabelMarginLoss(reduction=reduction),
        torch.nn.MultiLabelMarginLoss(reduction=reduction),
        [x, TARGET_ROWS],
    )


@pytest.mark.parametrize(
    "name, reduction", list(itertools.product(PADDED_TARGETS, REDUCTIONS))
)
def test_multilabel_margin_unbatched_matches_torch(name, reduction):
    x = scores(NUM_CLASSES, scale=0.5)
    check_against_torch(
        lambda a, b: F.multilabel_margin_loss(a, b, reduction=reduction),
        lambda a, b: TF.multilabel_margin_loss(a, b, reduction=reduction),
        [x, np.array(PADDED_TARGETS[name], np.int64)],
    )


@pytest.mark.parametrize(
    "x, y, reduction",
    [
        (x, y, r)
        for x, y in [
            (np.float32(0.3), np.int64(0)),  # 0-d input: one class
            (np.float32(0.3), np.int64(-1)),
            (np.array([0.3], np.float32), np.int64(0)),  # (1,) input, 0-d target
            (np.float32(-0.2), np.array([0])),  # 0-d input, (1,) target
        ]
        for r in REDUCTIONS
    ],
)
def test_multilabel_margin_one_class_matches_torch(x, y, reduction):
    check_against_torch(
        lambda a, b: F.multilabel_margin_loss(a, b, reduction=reduction),
        lambda a, b: TF.multilabel_margin_loss(a, b, reduction=reduction),
        [np.asarray(x), np.asarray(y)],
    )


def test_multilabel_margin_no_gradient_at_the_kink():
    # 1 - (x_y - x_i) exactly 0: PyTorch's gradient is 0 (strict > 0); ours too.
    check_against_torch(
        lambda a, b: F.multilabel_margin_loss(a, b, reduction="sum"),
        lambda a, b: TF.multilabel_margin_loss(a, b, reduction="sum"),
        [np.array([0.0, 1.0, 0.0, 0.0], np.float32), np.array([1, -1, 0, 0])],
    )


def test_multilabel_margin_duplicates_count_twice():
    # PyTorch sums over the listed entries, not over the set of labels.
    x = mx.array(scores(NUM_CLASSES))
    once = F.multilabel_margin_loss(x, mx.array([1, -1, 0, 0, 0]))
    twice = F.multilabel_margin_loss(x, mx.array([1, 1, -1, 0, 0]))
    assert_close(twice, 2 * once)


def test_multilabel_margin_accepts_int32_targets():
    x, y = scores(len(TARGET_ROWS), NUM_CLASSES), TARGET_ROWS
    ours = F.multilabel_margin_loss(mx.array(x), mx.array(y.astype(np.int32)), reduction="none")
    assert_close(ours, TF.multilabel_margin_loss(torch.tensor(x), torch.tensor(y), reduction="none"))


def test_multilabel_margin_empty_batch():
    # 'none' and 'sum' as PyTorch; an empty 'mean' is 0/0 = nan (PyTorch returns an arbitrary number).
    x, y = mx.zeros((0, 4)), mx.zeros((0, 4), mx.int32)
    assert F.multilabel_margin_loss(x, y, reduction="none").shape == (0,)
    assert F.multilabel_margin_loss(x, y, reduction="sum").item() == 0
    assert np.isnan(F.multilabel_margin_loss(x, y).item())


def _labels(*rows: list[int]) -> np.ndarray:
    return np.array(rows, np.int64)


MULTILABEL_MARGIN_ERRORS = [
    # (input, target, our error, message fragment)
    (scores(2, 4), _labels([0, 4, -1, 1], [0, 1, 2, 3]), IndexError, "target holds 4"),
    (scores(2, 4), _labels([0, -2, -1, 1], [0, 1, 2, 3]), IndexError, "target holds -2"),
    (scores(4), np.array([1, -1, 7, 0]), IndexError, "target holds 7"),  # checked after the -1 too
    (np.float32(0.5), np.int64(1), IndexError, r"class index in \[0, 1\)"),
    (scores(2, 4), _labels([0, 1, 2, 3]), ValueError, "target must have the shape of input"),
    (scores(4), np.array([0, 1, 2]), ValueError, "target must have the shape of input"),
    (scores(2, 3, 4), np.zeros((2, 3, 4), np.int64), ValueError, "input must be a non-empty vector"),
    (scores(0), np.zeros(0, np.int64), ValueError, "input must be a non-empty vector"),
    (scores(2, 0), np.zeros((2, 0), np.int64), ValueError, "input must be a non-empty vector"),
    (scores(4), np.array([0.0, 1, -1, 0], np.float32), TypeError, "target must be an integer array"),
    (np.arange(4), np.array([0, 1, -1, 0]), TypeError, "input must be a floating-point array"),
]


@pytest.mark.parametrize("x, y, error, match", MULTILABEL_MARGIN_ERRORS)
def test_multilabel_margin_errors(x, y, error, match):
    with pytest.raises((RuntimeError, NotImplementedError)):  # torch raises too
        TF.multilabel_margin_loss(torch.tensor(x), torch.tensor(y))
    with pytest.raises(error, match=match):
        F.multilabel_margin_loss(mx.array(x), mx.array(y))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.multilabel_margin_loss(mx.zeros(4), mx.zeros(4, mx.int32), reduction="batchmean")


def test_multilabel_margin_deprecated_reduction_arguments():
    x = scores(len(TARGET_ROWS), NUM_CLASSES)
    with pytest.warns(UserWarning, match="reduction='sum'"):
        ours = F.multilabel_margin_loss(mx.array(x), mx.array(TARGET_ROWS), size_average=False)
    assert_close(ours, TF.multilabel_margin_loss(torch.tensor(x), torch.tensor(TARGET_ROWS), reduction="sum"))


# --- multilabel_soft_margin_loss ----------------------------------------------------------

# (input shape, target shape): batched, unbatched, extra leading axes, a target broadcast over the batch.
SOFT_SHAPES = {
    "batched": ((6, NUM_CLASSES),) * 2,
    "unbatched": ((NUM_CLASSES,),) * 2,
    "leading axes": ((2, 3, NUM_CLASSES),) * 2,
    "target broadcast": ((6, NUM_CLASSES), (NUM_CLASSES,)),
}
# Weight shapes, as functions of the input shape: none, per class (the documented use), per example.
WEIGHTS = {"none": None, "per class": lambda s: (s[-1],), "per example": lambda s: s[:-1] + (1,)}


@pytest.mark.parametrize(
    "layout, weight, reduction", list(itertools.product(SOFT_SHAPES, WEIGHTS, REDUCTIONS))
)
def test_multilabel_soft_margin_matches_torch(layout, weight, reduction):
    input_shape, target_shape = SOFT_SHAPES[layout]
    x = scores(*input_shape, scale=2.0)
    y = rng.integers(0, 2, target_shape).astype(np.float32)
    w = None if WEIGHTS[weight] is None else rng.uniform(0.2, 2.0, WEIGHTS[weight](input_shape)).astype(np.float32)
    check_against_torch(
        lambda a, b, c: F.multilabel_soft_margin_loss(a, b, weight=c, reduction=reduction),
        lambda a, b, c: TF.multilabel_soft_margin_loss(a, b, weight=c, reduction=reduction),
        [x, y, w],
        wrt=(0, 1) if w is None else (0, 1, 2),
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_soft_margin_module_matches_torch(reduction):
    x, y = scores(4, NUM_CLASSES), rng.uniform(size=(4, NUM_CLASSES)).astype(np.float32)  # soft labels too
    w = rng.uniform(0.5, 1.5, NUM_CLASSES).astype(np.float32)
    for weight in (None, w):
        ours = LN.MultiLabelSoftMarginLoss(weight=None if weight is None else mx.array(weight), reduction=reduction)
        theirs = torch.nn.MultiLabelSoftMarginLoss(
            weight=None if weight is None else torch.tensor(weight), reduction=reduction
        )
        check_against_torch(
            ours,
            theirs,
            [x, y],
            wrt=(0, 1),
        )
    assert LN.MultiLabelSoftMarginLoss(weight=mx.array(w)).trainable_parameters() == {}


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_soft_margin_is_exact_for_huge_logits(reduction):
    x = np.array([[1e4, -1e4, 3e4, -1e30, 0.5], [1e30, -3e4, 1e4, -1e4, -0.5]], np.float32)
    y = np.array([[1.0, 0.0, 0.0, 1.0, 0.3], [0.0, 1.0, 1.0, 0.0, 1.0]], np.float32)
    w = np.array([1.0, 0.5, 2.0, 1.5, 1.0], np.float32)
    check_against_torch(
        lambda a, b, c: F.multilabel_soft_margin_loss(a, b, weight=c, reduction=reduction),
        lambda a, b, c: TF.multilabel_soft_margin_loss(a, b, weight=c, reduction=reduction),
        [x, y, w],
        wrt=(0, 2),  # the target's gradient is -x w / C: 1e30-sized, compared below at 1e4
    )
    check_against_torch(
        lambda a, b: F.multilabel_soft_margin_loss(a, b, reduction=reduction),
        lambda a, b: TF.multilabel_soft_margin_loss(a, b, reduction=reduction),
        [np.clip(x, -1e4, 1e4), y],
        wrt=(0, 1),
    )


def test_multilabel_soft_margin_integer_targets():
    x, y = scores(3, NUM_CLASSES), rng.integers(0, 2, (3, NUM_CLASSES))
    check_against_torch(F.multilabel_soft_margin_loss, TF.multilabel_soft_margin_loss, [x, y])


def test_multilabel_soft_margin_empty_is_nan_like_torch():
    for shape, reduction in [((0, 3), "mean"), ((2, 0), "none")]:
        ours = F.multilabel_soft_margin_loss(mx.zeros(shape), mx.zeros(shape), reduction=reduction)
        theirs = TF.multilabel_soft_margin_loss(torch.zeros(shape), torch.zeros(shape), reduction=reduction)
        assert_close(ours, theirs)


ONES = np.ones((2, 3), np.float32)


@pytest.mark.parametrize(
    "x, y, w, torch_error, error, match",
    [
        (np.float32(0.5), np.float32(1.0), None, IndexError, ValueError, "input must have a class axis"),
        # torch broadcasts the input up to this target and then sums over axis 0, not the class
        # axis (a 'none' of shape (3,)); we refuse a target larger than the input instead.
        (scores(3), np.ones((2, 3), np.float32), None, None, ValueError, r"target of shape \(2, 3\)"),
        (scores(2, 3), ONES, np.ones(2, np.float32), RuntimeError, ValueError, r"weight of shape \(2,\)"),
        (np.ones((2, 3), np.int64), ONES, None, NotImplementedError, TypeError, "input must be a floating"),
    ],
)
def test_multilabel_soft_margin_errors(x, y, w, torch_error, error, match):
    if torch_error is not None:
        with pytest.raises(torch_error):  # torch raises too
            TF.multilabel_soft_margin_loss(torch.tensor(x), torch.tensor(y), None if w is None else torch.tensor(w))
    with pytest.raises(error, match=match):
        F.multilabel_soft_margin_loss(mx.array(x), mx.array(y), None if w is None else mx.array(w))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.multilabel_soft_margin_loss(mx.zeros(3), mx.ones(3), reduction="batchmean")


def test_multilabel_soft_margin_deprecated_reduction_arguments():
    x, y = scores(3, 4), np.ones((3, 4), np.float32)
    with pytest.warns(UserWarning, match="reduction='none'"):
        ours = F.multilabel_soft_margin_loss(mx.array(x), mx.array(y), reduce=False)
    assert_close(ours, TF.multilabel_soft_margin_loss(torch.tensor(x), torch.tensor(y), reduction="none"))


def _multilabel_margin_by_definition(x: np.ndarray, y: np.ndarray) -> float:
    """The loss as PyTorch's kernel loops: over the listed labels, then over every other class."""
    listed = list(itertools.takewhile(lambda v: v >= 0, y))
    labels = set(listed)
    return sum(max(0.0, 1 - (x[j] - x[i])) for j in listed for i in range(len(x)) if i not in labels) / len(x)


def test_multilabel_margin_sorted_search_matches_the_definition_with_ties():
    # Scores on a grid of halves: many ties between a score and a threshold x_y - 1.
    x = (rng.integers(-4, 5, size=(64, 9)) / 2).astype(np.float32)
    y = np.stack([rng.permutation(9) for _ in range(64)])
    y[np.arange(64), rng.integers(0, 9, size=64)] = -1
    y[::3, 1] = y[::3, 0]  # duplicated labels count twice
    expected = [_multilabel_margin_by_definition(a, b) for a, b in zip(x.astype(np.float64), y)]
    per_example = lossfn.multilabel_margin_loss
    xs, ys = mx.array(x), mx.array(y.astype(np.int32))
    for name, got in {
        "batch rule": F.multilabel_margin_loss(xs, ys, reduction="none"),
        "vmap": mx.vmap(per_example)(xs, ys),
        "loop": mx.stack([per_example(xs[i], ys[i]) for i in range(64)]),
    }.items():
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6, atol=1e-7, err_msg=name)
