"""Parity with PyTorch 2.13 for the foundation losses: values and gradients, every parameter
combination x every reduction x unbatched / batched / K-dimensional shapes.

The cases are data: each row names a loss, its keyword arguments and a shape; the grid is
expanded with ``itertools.product``.
"""

from __future__ import annotations

import itertools
import warnings

import mlx.core as mx
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from oracle import check_against_torch, rng

import lossfn.functional as F

REDUCTIONS = ("none", "mean", "sum")
C = 5
# input shapes of class losses: unbatched, batched, K-dimensional (N, C, d1, d2)
CLASS_SHAPES = {"unbatched": (C,), "batched": (6, C), "kdim": (3, C, 2, 4)}
# input shapes of element-wise losses
ELEMENT_SHAPES = {"scalar": (), "vector": (7,), "batched": (6, C), "kdim": (3, C, 2, 4)}


def index_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return () if len(shape) == 1 else shape[:1] + shape[2:]


def class_targets(r: np.random.Generator, shape: tuple[int, ...], ignore: int | None) -> np.ndarray:
    target = r.integers(0, C, size=index_shape(shape)).astype(np.int64)
    if ignore is not None and target.ndim:
        target.reshape(-1)[::3] = ignore  # every third position ignored
    return target


def probability_targets(r: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    p = r.uniform(0.1, 1.0, size=shape).astype(np.float32)
    axis = 0 if len(shape) == 1 else 1
    return p / p.sum(axis=axis, keepdims=True)


# --- cross-entropy and NLL -----------------------------------------------------------------

CE_GRID = [
    case
    for case in itertools.product(
        CLASS_SHAPES,
        ("index", "probabilities"),
        (False, True),  # class weights
        (None, -100, 2),  # ignore_index: none present, the default, a valid class
        (0.0, 0.15),  # label_smoothing
        REDUCTIONS,
    )
    if case[1] == "index" or case[3] is None  # probability targets have no index to ignore
]


@pytest.mark.parametrize("shape_name,target_kind,use_weight,ignore,smoothing,reduction", CE_GRID)
def test_cross_entropy(shape_name, target_kind, use_weight, ignore, smoothing, reduction):
    shape = CLASS_SHAPES[shape_name]
    r = rng("ce", shape_name, target_kind, use_weight, ignore, smoothing, reduction)
    logits = r.normal(size=shape).astype(np.float32) * 3
    target = class_targets(r, shape, ignore) if target_kind == "index" else probability_targets(r, shape)
    weight = r.uniform(0.2, 2.0, size=C).astype(np.float32) if use_weight else None
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    if ignore is not None:
        kw["ignore_index"] = ignore
    check_against_torch(
        lambda x, t, w: F.cross_entropy(x, t, w, **kw),
        lambda x, t, w: TF.cross_entropy(x, t, w, **kw),
        [logits, target, weight],
    )


NLL_GRID = list(itertools.product(CLASS_SHAPES, (False, True), (None, -100, 2), REDUCTIONS))


@pytest.mark.parametrize("shape_name,use_weight,ignore,reduction", NLL_GRID)
def test_nll_loss(shape_name, use_weight, ignore, reduction):
    shape = CLASS_SHAPES[shape_name]
    r = rng("nll", shape_name, use_weight, ignore, reduction)
    logits = r.normal(size=shape).astype(np.float32)
    axis = 0 if len(shape) == 1 else 1
    log_probs = (logits - np.log(np.exp(logits).sum(axis=axis, keepdims=True))).astype(np.float32)
    target = class_targets(r, shape, ignore)
    weight = r.uniform(0.2, 2.0, size=C).astype(np.float32) if use_weight else None
    kw = dict(reduction=reduction) if ignore is None else dict(reduction=reduction, ignore_index=ignore)
    check_against_torch(
        lambda x, t, w: F.nll_loss(x, t, w, **kw),
        lambda x, t, w: TF.nll_loss(x, t, w, **kw),
        [log_probs, target, weight],
    )


@pytest.mark.parametrize("use_weight,smoothing,reduction", list(itertools.product((False, True), (0.0, 0.3), REDUCTIONS)))
def test_cross_entropy_all_ignored(use_weight, smoothing, reduction):
    """Every target ignored: 'mean' is nan, 'sum' 0, 'none' zeros; gradients are 0 or nan as torch's."""
    r = rng("all-ignored", use_weight, smoothing, reduction)
    logits = r.normal(size=(4, C)).astype(np.float32)
    target = np.full(4, -100, dtype=np.int64)
    weight = r.uniform(0.2, 2.0, size=C).astype(np.float32) if use_weight else None
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    check_against_torch(
        lambda x, t, w: F.cross_entropy(x, t, w, **kw),
        lambda x, t, w: TF.cross_entropy(x, t, w, **kw),
        [logits, target, weight],
    )


@pytest.mark.parametrize("target_kind,reduction", list(itertools.product(("index", "probabilities"), REDUCTIONS)))
def test_cross_entropy_extreme_logits(target_kind, reduction):
    """Logits of magnitude 1e4: finite and equal to torch's, in value and gradient."""
    r = rng("extreme", target_kind, reduction)
    logits = (np.sign(r.normal(size=(6, C))) * 1e4 * r.uniform(0.5, 1.0, size=(6, C))).astype(np.float32)
    target = class_targets(r, (6, C), None) if target_kind == "index" else probability_targets(r, (6, C))
    check_against_torch(
        lambda x, t: F.cross_entropy(x, t, reduction=reduction, label_smoothing=0.1),
        lambda x, t: TF.cross_entropy(x, t, reduction=reduction, label_smoothing=0.1),
        [logits, target],
        rtol=1e-5,
        atol=1e-2,  # values are ~1e4: atol is far below float32 resolution there
    )


# --- binary cross-entropy --------------------------------------------------------------------

BCE_GRID = list(itertools.product(ELEMENT_SHAPES, ("none", "broadcast", "full"), REDUCTIONS))


def bce_weight(r: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray | None:
    if kind == "none":
        return None
    if kind == "broadcast":
        return r.uniform(0.2, 2.0, size=shape[-1:] if len(shape) != 4 else (2, 4)).astype(np.float32)
    return r.uniform(0.2, 2.0, size=shape).astype(np.float32)


@pytest.mark.parametrize("shape_name,weight_kind,reduction", BCE_GRID)
def test_binary_cross_entropy(shape_name, weight_kind, reduction):
    shape = ELEMENT_SHAPES[shape_name]
    r = rng("bce", shape_name, weight_kind, reduction)
    x = r.uniform(0.02, 0.98, size=shape).astype(np.float32)
    y = r.uniform(0, 1, size=shape).astype(np.float32)
    if x.ndim:  # probabilities exactly 0 and 1, against targets 0, 1 and in between
        x.reshape(-1)[:4] = [0.0, 1.0, 0.0, 1.0]
        y.reshape(-1)[:4] = [0.0, 1.0, 1.0, 0.3]
    weight = bce_weight(r, shape, weight_kind)
    check_against_torch(
        lambda a, b, w: F.binary_cross_entropy(a, b, w, reduction=reduction),
        lambda a, b, w: TF.binary_cross_entropy(a, b, w, reduction=reduction),
        [x, y, weight],
        wrt=(0, 1),
        atol=1e-4 if x.ndim else 1e-6,  # a gradient of 1e12 at x = 0 sits beside ordinary ones
    )


BCE_LOGITS_GRID = list(itertools.product(ELEMENT_SHAPES, ("none", "broadcast", "full"), (False, True), REDUCTIONS))


@pytest.mark.parametrize("shape_name,weight_kind,use_pos_weight,reduction", BCE_LOGITS_GRID)
def test_binary_cross_entropy_with_logits(shape_name, weight_kind, use_pos_weight, reduction):
    shape = ELEMENT_SHAPES[shape_name]
    r = rng("bcel", shape_name, weight_kind, use_pos_weight, reduction)
    x = (r.normal(size=shape) * 4).astype(np.float32)
    if x.ndim:  # extreme logits
        x.reshape(-1)[:4] = [1e4, -1e4, 3e4, -3e4]
    y = r.uniform(0, 1, size=shape).astype(np.float32)
    weight = bce_weight(r, shape, weight_kind)
    pos_weight = r.uniform(0.5, 3.0, size=shape[-1:] if shape else ()).astype(np.float32) if use_pos_weight else None
    check_against_torch(
        lambda a, b, w, p: F.binary_cross_entropy_with_logits(a, b, w, reduction=reduction, pos_weight=p),
        lambda a, b, w, p: TF.binary_cross_entropy_with_logits(a, b, w, reduction=reduction, pos_weight=p),
        [x, y, weight, pos_weight],
        wrt=(0, 1),
        atol=1e-2 if x.ndim else 1e-6,  # losses of ~3e4 in 'none'
    )


# --- regression --------------------------------------------------------------------------------

REGRESSION = {
    "l1_loss": [{}],
    "mse_loss": [{}],
    "smooth_l1_loss": [{"beta": 0.0}, {"beta": 0.5}, {"beta": 1.0}, {"beta": 2.0}],
    "huber_loss": [{"delta": 0.5}, {"delta": 1.0}, {"delta": 2.0}],
}
WEIGHTED_REGRESSION = {"l1_loss", "mse_loss", "huber_loss"}
REGRESSION_GRID = [
    (name, kw, shape_name, use_weight, reduction)
    for name, kws in REGRESSION.items()
    for kw, shape_name, use_weight, reduction in itertools.product(kws, ELEMENT_SHAPES, (False, True), REDUCTIONS)
    if not use_weight or name in WEIGHTED_REGRESSION
]


@pytest.mark.parametrize("name,kw,shape_name,use_weight,reduction", REGRESSION_GRID)
def test_regression(name, kw, shape_name, use_weight, reduction):
    shape = ELEMENT_SHAPES[shape_name]
    r = rng(name, tuple(kw.items()), shape_name, use_weight, reduction)
    x = (r.normal(size=shape) * 2).astype(np.float32)
    y = (r.normal(size=shape) * 2).astype(np.float32)
    if x.ndim:  # exact ties and the branch points |x - y| = beta
        y.reshape(-1)[0] = x.reshape(-1)[0]
        y.reshape(-1)[1] = x.reshape(-1)[1] - 1.0
    weight = r.uniform(0.2, 2.0, size=shape).astype(np.float32) if use_weight else None
    ours, theirs = getattr(F, name), getattr(TF, name)
    kwargs = dict(kw, reduction=reduction)
    if use_weight:
        check_against_torch(
            lambda a, b, w: ours(a, b, weight=w, **kwargs),
            lambda a, b, w: theirs(a, b, weight=w, **kwargs),
            [x, y, weight],
            wrt=(0, 1),
        )
    else:
        check_against_torch(lambda a, b: ours(a, b, **kwargs), lambda a, b: theirs(a, b, **kwargs), [x, y], wrt=(0, 1))


@pytest.mark.parametrize("name", sorted(REGRESSION))
def test_regression_broadcasting_warns_like_torch(name):
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    y = np.array([0.5, 4.0], dtype=np.float32)
    ours, theirs = getattr(F, name), getattr(TF, name)
    with pytest.warns(UserWarning, match=r"target size \(\(2,\)\) that is different to the input size \(\(3, 2\)\)"):
        ours(mx.array(x), mx.array(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check_against_torch(ours, theirs, [x, y], wrt=(0, 1))


@pytest.mark.parametrize("target_kind", ["index", "probabilities"])
def test_cross_entropy_with_many_classes_stays_accurate(target_kind):
    """32000 classes, label smoothing: within 1e-5 of a float64 reference (a float32 row sum of
    the smoothed target once drifted by 8e-4 here)."""
    r = rng("many-classes", target_kind)
    logits = (r.normal(size=(4, 32000)) * 3).astype(np.float32)
    index = r.integers(0, 32000, size=4)
    smoothed_one_hot = np.full((4, 32000), 0.1 / 32000, dtype=np.float32)
    smoothed_one_hot[np.arange(4), index] += 0.9
    target = index if target_kind == "index" else smoothed_one_hot
    ours = F.cross_entropy(mx.array(logits), mx.array(target), reduction="none", label_smoothing=0.1)
    target64 = torch.tensor(target if target_kind == "index" else target.astype(np.float64))
    reference = TF.cross_entropy(torch.tensor(logits, dtype=torch.float64), target64, reduction="none", label_smoothing=0.1)
    np.testing.assert_allclose(np.asarray(ours), reference.numpy(), rtol=1e-5)
