"""Cosine embedding, triplet margin (with any distance), margin ranking and hinge embedding losses
against PyTorch 2.13: values and gradients, every code path x every reduction x unbatched /
batched shapes, edge values (kinks, ties, zero vectors), errors; and the per-example losses
under ``mx.compile``, ``mx.vmap`` and ``mx.grad``.
"""

from __future__ import annotations

import functools
import itertools
import math

import mlx.core as mx
import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF
from oracle import assert_close, check_against_torch, rng, to_mx, to_torch

import lossfn
import lossfn.functional as F
import lossfn.nn as N

REDUCTIONS = ("none", "mean", "sum")
D = 6


def normal(r: np.random.Generator, *shape: int) -> np.ndarray:
    return r.normal(size=shape).astype(np.float32)


def signs(r: np.random.Generator, *shape: int, other: bool = False) -> np.ndarray:
    labels = r.choice([1.0, -1.0], size=shape).astype(np.float32)
    if other and labels.size > 2:  # labels that are neither 1 nor -1
        labels.reshape(-1)[:2] = [0.0, 2.0]
    return labels


# --- cosine embedding --------------------------------------------------------------------------

COSINE_SHAPES = {"unbatched": ((D,), (D,), ()), "batched": ((5, D), (5, D), (5,)), "broadcast": ((5, D), (1, D), (1,))}
COSINE_GRID = list(itertools.product(COSINE_SHAPES, (0.0, 0.3, -0.5), REDUCTIONS))


@pytest.mark.parametrize("shape_name,margin,reduction", COSINE_GRID)
def test_cosine_embedding_loss(shape_name, margin, reduction):
    r = rng("cos", shape_name, margin, reduction)
    s1, s2, st = COSINE_SHAPES[shape_name]
    x1, x2, y = normal(r, *s1), normal(r, *s2), signs(r, *st, other=True)
    if shape_name == "batched":
        x1[1] = 0.0  # a zero vector: cosine 0 thanks to the 1e-12 on each squared norm
        x2[2] = 1e-7 * x1[2]  # nearly zero
    kw = dict(margin=margin, reduction=reduction)
    check_against_torch(
        lambda a, b, t: F.cosine_embedding_loss(a, b, t, **kw),
        lambda a, b, t: TF.cosine_embedding_loss(a, b, t, **kw),
        [x1, x2, y],
        wrt=(0, 1),
    )


def test_cosine_target_broadcasts_inputs():
    """Inputs (1, D) against a target (N,): torch broadcasts the batch axis."""
    r = rng("cos-rows")
    check_against_torch(
        lambda a, b, t: F.cosine_embedding_loss(a, b, t, margin=0.1, reduction="none"),
        lambda a, b, t: TF.cosine_embedding_loss(a, b, t, margin=0.1, reduction="none"),
        [normal(r, 1, D), normal(r, 1, D), signs(r, 5)],
        wrt=(0, 1),
    )


def test_cosine_integer_targets_and_tiny_vectors():
    """Integer labels; vectors of norm 1e-6, where the 1e-12 added to each squared norm matters."""
    r = rng("cos-int")
    x1, x2 = normal(r, 4, D), normal(r, 4, D)
    x1[0] *= 1e-6
    x1[1], x2[1] = 1e-6 * np.eye(D, dtype=np.float32)[0], 1e-6 * np.eye(D, dtype=np.float32)[0]
    y = np.array([1, -1, 1, -1], np.int64)
    check_against_torch(
        lambda a, b, t: F.cosine_embedding_loss(a, b, t, margin=-0.2, reduction="none"),
        lambda a, b, t: TF.cosine_embedding_loss(a, b, t, margin=-0.2, reduction="none"),
        [x1, x2, y],
        wrt=(0, 1),
    )


@pytest.mark.parametrize(
    "s1,s2,st,match",
    [
        ((4, D), (4, D), (4, 1), "0D or 1D target tensor expected, multi-target not supported"),
        ((D,), (4, D), (4,), "1D target tensor expects 2D input tensors, but found inputs with sizes"),
        ((D,), (D,), (1,), "1D target tensor expects 2D input tensors"),
        ((4, D), (4, D), (), "0D target tensor expects 1D input tensors"),
        ((4, D), (4, D + 1), (4,), None),
        ((4, D), (4, D), (3,), None),
    ],
)
def test_cosine_errors(s1, s2, st, match):
    x1, x2, y = np.ones(s1, np.float32), np.ones(s2, np.float32), np.ones(st, np.float32)
    with pytest.raises(RuntimeError, match=match):
        TF.cosine_embedding_loss(to_torch(x1), to_torch(x2), to_torch(y))
    with pytest.raises(ValueError, match=match or "cannot be broadcast|does not match the batch"):
        F.cosine_embedding_loss(to_mx(x1), to_mx(x2), to_mx(y))


# --- triplet margin ----------------------------------------------------------------------------

TRIPLET_SHAPES = {
    "unbatched": ((D,),) * 3,
    "batched": ((5, D),) * 3,
    "3d": ((2, 3, D),) * 3,
    "broadcast": ((5, D), (1, D), (5, 1)),
    "scalar": ((),) * 3,
}
# every norm order (each selects its own code) x swap, with the default reduction and shape ...
TRIPLET_GRID = [("batched", p, swap, "mean") for p, swap in itertools.product((2.0, 1.0, math.inf, 3.0, 0.5), (False, True))]
# ... and every shape x reduction x swap with p = 2
TRIPLET_GRID += [(s, 2.0, swap, red) for s, swap, red in itertools.product(TRIPLET_SHAPES, (False, True), REDUCTIONS)]


def triplet_data(r: np.random.Generator, shape_name: str) -> list[np.ndarray]:
    return [normal(r, *shape) for shape in TRIPLET_SHAPES[shape_name]]


@pytest.mark.parametrize("shape_name,p,swap,reduction", TRIPLET_GRID)
def test_triplet_margin_loss(shape_name, p, swap, reduction):
    r = rng("triplet", shape_name, p, swap, reduction)
    a, pos, neg = triplet_data(r, shape_name)
    if shape_name == "batched":
        pos[0] = a[0]  # positive == anchor: d(a, n) == d(p, n) with swap (a tie) and d(a, p) = ||eps||
        neg[1] = a[1] - 1e-6  # a - n + eps == 0: a zero distance
    kw = dict(margin=0.5 + r.uniform(), p=p, eps=1e-6 if reduction == "mean" else 1e-3, swap=swap, reduction=reduction)
    check_against_torch(
        lambda x, y, z: F.triplet_margin_loss(x, y, z, **kw),
        lambda x, y, z: TF.triplet_margin_loss(x, y, z, **kw),
        [a, pos, neg],
        wrt=(0, 1, 2),
    )


def test_triplet_p0_counts_nonzero_entries():
    """p = 0: the 'norm' counts non-zero entries; torch gives no gradient, ours is 0."""
    r = rng("triplet-p0")
    a, pos, neg = triplet_data(r, "batched")
    neg[0, :3] = a[0, :3] + 1e-6
    check_against_torch(
        lambda x, y, z: F.triplet_margin_loss(x, y, z, p=0, reduction="none"),
        lambda x, y, z: TF.triplet_margin_loss(x, y, z, p=0, reduction="none"),
        [a, pos, neg],
        wrt=(),
    )
    g = mx.grad(lambda x: F.triplet_margin_loss(x, to_mx(pos), to_mx(neg), p=0))(to_mx(a))
    np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_triplet_new_margin_eps_do_not_recompile():
    from lossfn.functional._embedding import _triplet_margin
    from lossfn.functional._graphs import reduce_graph

    a, pos, neg = (to_mx(x) for x in triplet_data(rng("recompile"), "batched"))
    graph = reduce_graph(_triplet_margin, "sum", static=("p",))
    F.triplet_margin_loss(a, pos, neg, reduction="sum", p=1.5)
    traces = graph.traces
    for margin, eps in [(0.3, 1e-6), (2.0, 1e-3)]:
        F.triplet_margin_loss(a, pos, neg, margin=margin, eps=eps, p=1.5, reduction="sum")
    assert graph.traces == traces
    F.triplet_margin_loss(a, pos, neg, p=2.5, reduction="sum")  # a new p is a new graph
    assert graph.traces == traces + 1


@pytest.mark.parametrize(
    "fn,shapes,kw,match,torch_error",
    [
        ("triplet_margin_loss", ((3, D), (3, D), (D,)), {}, "same number of dimensions, but got: anchor 2D, positive 2D, and negative 1D", RuntimeError),
        ("triplet_margin_loss", ((3, D),) * 3, dict(margin=0.0), "margin must be greater than 0, got 0.0", ValueError),
        ("triplet_margin_loss", ((3, D),) * 3, dict(margin=-1.0), "margin must be greater than 0, got -1.0", ValueError),
        ("triplet_margin_loss", ((3, D), (3, D), (2, D)), {}, None, RuntimeError),
        ("triplet_margin_loss", ((3, D),) * 3, dict(reduction="batchmean"), None, ValueError),
        ("triplet_margin_with_distance_loss", ((3, D), (3, D), (D,)), {}, "same number of dimensions", RuntimeError),
        ("triplet_margin_with_distance_loss", ((3, D),) * 3, dict(margin=0.0), "margin must be greater than 0", ValueError),
        ("triplet_margin_with_distance_loss", ((3, D),) * 3, dict(reduction="batchmean"), None, ValueError),
    ],
)
def test_triplet_errors(fn, shapes, kw, match, torch_error):
    arrays = [np.ones(s, np.float32) for s in shapes]
    with pytest.raises(torch_error, match=match):
        getattr(TF, fn)(*map(to_torch, arrays), **kw)
    with pytest.raises(ValueError, match=match or "cannot be broadcast|reduction must be one of"):
        getattr(F, fn)(*map(to_mx, arrays), **kw)


def test_triplet_negative_p_is_refused():
    x = mx.ones((3, D))
    with pytest.raises(ValueError, match=r"p must be non-negative \(0 to inf\), got p=-1"):
        F.triplet_margin_loss(x, x, x, p=-1)
    with pytest.raises(ValueError, match="the norm's order p must be non-negative"):
        lossfn.triplet_margin_loss(x[0], x[0], x[0], p=-1.0)


# --- triplet margin with a distance function ---------------------------------------------------


def torch_cosine_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 1.0 - TF.cosine_similarity(x, y, dim=-1)


def mlx_cosine_distance(x: mx.array, y: mx.array) -> mx.array:
    """1 - cos over the last axis (after broadcasting, as torch's): per-example on ``(D,)``, batched on ``(N, D)``."""
    x, y = mx.broadcast_arrays(x, y)
    norms = mx.maximum(mx.linalg.norm(x, axis=-1), 1e-8) * mx.maximum(mx.linalg.norm(y, axis=-1), 1e-8)
    return 1.0 - mx.sum(x * y, axis=-1) / norms


DISTANCES = {  # name: (ours, batched; ours, per example; torch's)
    "default": (None, None, None),
    "cosine": (mlx_cosine_distance, mlx_cosine_distance, torch_cosine_distance),
    "linf": (
        lambda x, y: F.pairwise_distance(x, y, p=math.inf),
        functools.partial(lossfn.pairwise_distance, p=math.inf),
        lambda x, y: TF.pairwise_distance(x, y, p=math.inf),
    ),
}
DISTANCE_GRID = list(itertools.product(DISTANCES, ("unbatched", "batched"), (False, True), REDUCTIONS))
DISTANCE_GRID += [(name, "broadcast", True, "none") for name in DISTANCES]  # the distance broadcasts


@pytest.mark.parametrize("distance,shape_name,swap,reduction", DISTANCE_GRID)
def test_triplet_margin_with_distance_loss(distance, shape_name, swap, reduction):
    r = rng("twd", distance, shape_name, swap, reduction)
    a, pos, neg = triplet_data(r, shape_name)
    ours, _, theirs = DISTANCES[distance]
    kw = dict(margin=0.25 + r.uniform(), swap=swap, reduction=reduction)
    check_against_torch(
        lambda x, y, z: F.triplet_margin_with_distance_loss(x, y, z, distance_function=ours, **kw),
        lambda x, y, z: TF.triplet_margin_with_distance_loss(x, y, z, distance_function=theirs, **kw),
        [a, pos, neg],
        wrt=(0, 1, 2),
    )


@pytest.mark.parametrize("distance", DISTANCES)
def test_per_example_distance_loss_matches_functional(distance):
    """The per-example loss with a per-example distance, vmapped, is the functional's 'none'."""
    batched, per_example, _ = DISTANCES[distance]
    a, pos, neg = (to_mx(x) for x in triplet_data(rng("twd-vmap", distance), "batched"))
    loss = functools.partial(lossfn.triplet_margin_with_distance_loss, distance_function=per_example, margin=1.5, swap=True)
    expected = F.triplet_margin_with_distance_loss(a, pos, neg, distance_function=batched, margin=1.5, swap=True, reduction="none")
    assert_close(mx.vmap(loss)(a, pos, neg), expected)


# --- margin ranking ----------------------------------------------------------------------------

RANKING_SHAPES = {"scalar": ((), (), ()), "vector": ((7,),) * 3, "2d": ((3, 4),) * 3, "broadcast": ((7,), (1,), (7,))}
RANKING_GRID = list(itertools.product(RANKING_SHAPES, (0.0, 0.5, -0.3), REDUCTIONS))


@pytest.mark.parametrize("shape_name,margin,reduction", RANKING_GRID)
def test_margin_ranking_loss(shape_name, margin, reduction):
    r = rng("ranking", shape_name, margin, reduction)
    s1, s2, st = RANKING_SHAPES[shape_name]
    x1, x2, y = normal(r, *s1), normal(r, *s2), signs(r, *st)
    if shape_name == "vector":
        x2[:2] = x1[:2] - y[:2] * margin  # exactly on the kink: torch's clamp passes the gradient
    kw = dict(margin=margin, reduction=reduction)
    check_against_torch(
        lambda a, b, t: F.margin_ranking_loss(a, b, t, **kw),
        lambda a, b, t: TF.margin_ranking_loss(a, b, t, **kw),
        [x1, x2, y],
        wrt=(0, 1, 2),
    )


def test_margin_ranking_edge_values_match_torch():
    # The hinge is maximum(0, z), not a where: its value and gradient at the kink, at nan and
    # at +-inf must still be torch's clamp_min's (1 at the kink, 0 at nan).
    x1 = np.array([0.5, np.nan, np.inf, -np.inf, 1.0, 2.0, np.inf], np.float32)
    x2 = np.array([0.5, 0.0, 0.0, 0.0, np.nan, 1.0, np.inf], np.float32)
    y = np.array([1.0, -1.0, -1.0, -1.0, 1.0, -1.0, 1.0], np.float32)
    check_against_torch(
        lambda a, b, t: F.margin_ranking_loss(a, b, t, reduction="none"),
        lambda a, b, t: TF.margin_ranking_loss(a, b, t, reduction="none"),
        [x1, x2, y],
        wrt=(0, 1, 2),
    )


@pytest.mark.parametrize("shapes", [((3,), (3,), ()), ((3,), (3, 1), (3,)), ((3,), (4,), (3,)), ((3,), (3,), (2,))])
def test_margin_ranking_errors(shapes):
    x1, x2, y = (np.ones(s, np.float32) for s in shapes)
    with pytest.raises(RuntimeError):
        TF.margin_ranking_loss(to_torch(x1), to_torch(x2), to_torch(y))
    match = "All input tensors should have same dimension but got sizes" if len(set(map(len, shapes))) > 1 else "cannot be broadcast"
    with pytest.raises(ValueError, match=match):
        F.margin_ranking_loss(to_mx(x1), to_mx(x2), to_mx(y))


# --- hinge embedding ---------------------------------------------------------------------------

HINGE_SHAPES = {"scalar": ((), ()), "vector": ((7,), (7,)), "2d": ((3, 4), (3, 4)), "broadcast": ((3, 4), (4,))}
HINGE_GRID = list(itertools.product(HINGE_SHAPES, (1.0, 0.5, -0.2), REDUCTIONS))


@pytest.mark.parametrize("shape_name,margin,reduction", HINGE_GRID)
def test_hinge_embedding_loss(shape_name, margin, reduction):
    r = rng("hinge", shape_name, margin, reduction)
    sx, sy = HINGE_SHAPES[shape_name]
    x = np.abs(normal(r, *sx)) * 1.5
    y = signs(r, *sy, other=shape_name == "vector")
    if shape_name == "2d":
        x[0, :2], y[0, :2] = margin, -1.0  # on the kink
    kw = dict(margin=margin, reduction=reduction)
    check_against_torch(
        lambda a, t: F.hinge_embedding_loss(a, t, **kw),
        lambda a, t: TF.hinge_embedding_loss(a, t, **kw),
        [x, y],
    )


def test_hinge_integer_targets_and_errors():
    r = rng("hinge-int")
    x, y = normal(r, 5), np.array([1, -1, 1, -1, 0], np.int64)
    check_against_torch(
        lambda a, t: F.hinge_embedding_loss(a, t, reduction="sum"),
        lambda a, t: TF.hinge_embedding_loss(a, t, reduction="sum"),
        [x, y],
    )
    with pytest.raises(ValueError, match=r"input of shape \(4,\), target of shape \(3,\) cannot be broadcast"):
        F.hinge_embedding_loss(mx.zeros((4,)), mx.ones((3,)))
    with pytest.raises(TypeError, match="input must be a floating-point array"):
        F.hinge_embedding_loss(mx.zeros((4,), dtype=mx.int32), mx.ones((4,)))


# --- nn classes --------------------------------------------------------------------------------

CLASS_CASES = [
    ("CosineEmbeddingLoss", dict(margin=0.2, reduction="sum"), "pair"),
    ("TripletMarginLoss", dict(margin=0.7, p=1.0, eps=1e-4, swap=True, reduction="none"), "triple"),
    ("TripletMarginLoss", dict(), "triple"),
    ("TripletMarginWithDistanceLoss", dict(margin=2.0, swap=True, reduction="sum"), "triple"),
    ("TripletMarginWithDistanceLoss", dict(distance_function="cosine", margin=0.5), "triple"),
    ("MarginRankingLoss", dict(margin=0.1, reduction="none"), "ranking"),
    ("HingeEmbeddingLoss", dict(margin=0.4), "hinge"),
]


@pytest.mark.parametrize("name,kw,data", CLASS_CASES)
def test_modules_against_torch(name, kw, data):
    r = rng("module", name, tuple(kw))
    inputs = {
        "pair": lambda: [normal(r, 5, D), normal(r, 5, D), signs(r, 5)],
        "triple": lambda: triplet_data(r, "batched"),
        "ranking": lambda: [normal(r, 7), normal(r, 7), signs(r, 7)],
        "hinge": lambda: [np.abs(normal(r, 3, 4)), signs(r, 3, 4)],
    }[data]()
    ours_kw, theirs_kw = dict(kw), dict(kw)
    if kw.get("distance_function") == "cosine":
        ours_kw["distance_function"], theirs_kw["distance_function"] = mlx_cosine_distance, torch_cosine_distance
    ours, theirs = getattr(N, name)(**ours_kw), getattr(tnn, name)(**theirs_kw)
    wrt = (0,) if data == "hinge" else (0, 1) if data == "pair" else (0, 1, 2)
    check_against_torch(ours, theirs, inputs, wrt=wrt)
    for key, value in ours_kw.items():
        assert getattr(ours, key) == value
    assert ours.parameters() == {} and name in repr(ours)


@pytest.mark.parametrize("name", ["TripletMarginLoss", "TripletMarginWithDistanceLoss"])
def test_module_margin_errors(name):
    with pytest.raises(ValueError, match=f"{name}: expected margin to be greater than 0, got 0.0 instead"):
        getattr(tnn, name)(margin=0.0)
    with pytest.raises(ValueError, match=f"{name}: expected margin to be greater than 0, got 0.0 instead"):
        getattr(N, name)(margin=0.0)


# --- transforms: compiled == eager, vmap(grad) == loop ------------------------------------------


def batch_of(kind: str, r: np.random.Generator, n: int = 4) -> list[mx.array]:
    arrays = {
        "pair": lambda: [normal(r, n, D), normal(r, n, D), signs(r, n)],
        "triple": lambda: triplet_data(r, "batched")[:3],
        "ranking": lambda: [normal(r, n, 3), normal(r, n, 3), signs(r, n, 3)],
        "hinge": lambda: [np.abs(normal(r, n, 3)), signs(r, n, 3)],
    }[kind]()
    return [to_mx(x) for x in arrays]


PER_EXAMPLE = [  # (loss, keywords, data, differentiable arguments)
    (lossfn.cosine_embedding_loss, dict(margin=0.1), "pair", 2),
    (lossfn.triplet_margin_loss, dict(margin=1.0, p=2.0, swap=True), "triple", 3),
    (lossfn.triplet_margin_loss, dict(margin=0.5, p=1.0, eps=1e-3), "triple", 3),
    (lossfn.triplet_margin_loss, dict(margin=0.5, p=math.inf, swap=True), "triple", 3),
    (lossfn.triplet_margin_with_distance_loss, dict(margin=1.5), "triple", 3),
    (lossfn.triplet_margin_with_distance_loss, dict(distance_function=mlx_cosine_distance, swap=True), "triple", 3),
    (lossfn.triplet_margin_with_distance_loss, dict(distance_function=DISTANCES["linf"][1], swap=True), "triple", 3),
    (lossfn.margin_ranking_loss, dict(margin=0.2), "ranking", 3),
    (lossfn.hinge_embedding_loss, dict(margin=0.7), "hinge", 1),
]
IDS = [f"{loss.__name__}-{i}" for i, (loss, *_) in enumerate(PER_EXAMPLE)]


def grads_of(loss, kw: dict, nargs: int):
    """The gradients of ``sum(loss)`` in its first ``nargs`` arguments, always a tuple."""
    grad = mx.grad(lambda *a: mx.sum(loss(*a, **kw)), argnums=list(range(nargs)))
    return lambda *a: tuple(grad(*a)) if nargs > 1 else (grad(*a),)


# One configuration per loss: each compile costs C++ kernel builds on the CPU.
COMPILED = [PER_EXAMPLE[i] for i in (0, 1, 5, 7, 8)]


@pytest.mark.parametrize("loss,kw,kind,nargs", COMPILED, ids=[IDS[i] for i in (0, 1, 5, 7, 8)])
def test_compiled_equals_eager(loss, kw, kind, nargs):
    example = [a[1] for a in batch_of(kind, rng("compile", kind))]
    value_and_grads = mx.value_and_grad(lambda *a: mx.sum(loss(*a, **kw)), argnums=list(range(nargs)))
    (value, grads), (eager_value, eager_grads) = mx.compile(value_and_grads)(*example), value_and_grads(*example)
    assert_close(value, eager_value)
    for ours, eager in zip(grads, eager_grads, strict=True):
        assert_close(ours, eager)


@pytest.mark.parametrize("loss,kw,kind,nargs", PER_EXAMPLE, ids=IDS)
def test_vmap_grad_equals_loop(loss, kw, kind, nargs):
    batch = batch_of(kind, rng("vmap", kind))
    per_example = grads_of(loss, kw, nargs)
    vmapped = mx.vmap(per_example)(*batch)
    for i in range(batch[0].shape[0]):
        for g_batch, g_one in zip(vmapped, per_example(*(a[i] for a in batch)), strict=True):
            assert g_batch.shape == batch[0].shape[:1] + g_one.shape
            assert_close(g_batch[i], g_one)


@pytest.mark.parametrize("p,keepdim", list(itertools.product((2.0, 1.0, math.inf, 0.7), (False, True))))
def test_pairwise_distance_matches_torch(p, keepdim):
    r = rng("pdist", p, keepdim)
    check_against_torch(
        lambda a, b: F.pairwise_distance(a, b, p=p, keepdim=keepdim),
        lambda a, b: TF.pairwise_distance(a, b, p=p, keepdim=keepdim),
        [normal(r, 4, D), normal(r, 1, D)],
        wrt=(0, 1),
    )
