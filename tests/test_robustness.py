"""Named regression tests for the failures found inside real training loops: half precision,
empty batches, NaN and infinity, inputs PyTorch refuses, and the per-example and transform
layers misused. Each test pins one reported repro, compared with PyTorch where it has one.
(Traced bad data and shapeless compilation: ``test_traced``.)
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from oracle import assert_close

import lossfn
import lossfn.functional as F
import transforms as T

NAN, INF = float("nan"), float("inf")


def grad_of(fn, *args, argnums=0):
    return mx.grad(lambda *a: mx.sum(fn(*a)), argnums=argnums)(*args)


# --- half precision -------------------------------------------------------------------------------


def test_float16_mean_of_1000_squares_of_10_is_100_not_inf():
    x, y = mx.full((1000,), 10.0, dtype=mx.float16), mx.zeros((1000,), dtype=mx.float16)
    ours = F.mse_loss(x, y)
    assert ours.dtype == mx.float16
    assert_close(ours, TF.mse_loss(torch.full((1000,), 10.0, dtype=torch.float16), torch.zeros(1000, dtype=torch.float16)))
    assert ours.item() == 100.0


def test_float16_mean_over_70000_elements_is_finite_with_a_gradient():
    x, y = mx.ones((70000,), dtype=mx.float16), mx.zeros((70000,), dtype=mx.float16)
    assert F.l1_loss(x, y).item() == 1.0
    grad = grad_of(F.l1_loss, x, y)
    assert grad.dtype == mx.float16
    assert_close(grad, np.full(70000, np.float16(1 / 70000)), rtol=1e-3)


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
@pytest.mark.parametrize(
    "loss",
    [
        lambda x: F.smooth_l1_loss(x, x + 1, beta=0.5),
        lambda x: F.huber_loss(x, x + 1, delta=0.5),
        lambda x: F.gaussian_nll_loss(x, x + 1, x * x + 1),
        lambda x: F.cosine_embedding_loss(x, x + 1, mx.ones(x.shape[0], dtype=x.dtype), margin=0.1),
        lambda x: F.triplet_margin_loss(x, x + 1, x - 1, margin=0.5),
        lambda x: F.triplet_margin_with_distance_loss(x, x + 1, x - 1, margin=0.5),
        lambda x: F.margin_ranking_loss(x[:, 0], x[:, 1], mx.ones(x.shape[0], dtype=x.dtype), margin=0.2),
        lambda x: F.hinge_embedding_loss(x, mx.ones(x.shape, dtype=x.dtype), margin=0.3),
        lambda x: F.multi_margin_loss(x, mx.zeros(x.shape[0], dtype=mx.int32), margin=0.4),
        lambda x: F.poisson_nll_loss(mx.abs(x) + 1, x * 0 + 1, log_input=False),
        lambda x: F.cross_entropy(x, mx.softmax(x, axis=-1), label_smoothing=0.1),
    ],
    ids=["smooth_l1", "huber", "gaussian_nll", "cosine_embedding", "triplet", "triplet_with_distance",
         "margin_ranking", "hinge_embedding", "multi_margin", "poisson_not_log_input", "cross_entropy_probabilities_smoothed"],
)
def test_half_precision_input_gives_a_half_precision_loss(loss, dtype):
    x = mx.array(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)).astype(dtype)
    assert loss(x).dtype == dtype
    assert grad_of(loss, x).dtype == dtype


# --- empty batches ---------------------------------------------------------------------------------


def test_cross_entropy_of_an_empty_batch_is_nan():
    ours = F.cross_entropy(mx.zeros((0, 3)), mx.zeros((0,), mx.int32))
    assert math.isnan(ours.item())
    assert grad_of(F.cross_entropy, mx.zeros((0, 3)), mx.zeros((0,), mx.int32)).shape == (0, 3)


@pytest.mark.parametrize("loss, target", [(F.nll_loss, mx.zeros((0,), mx.int32)), (F.multilabel_margin_loss, mx.zeros((0, 3), mx.int32))])
def test_gradient_of_an_empty_batch_has_the_input_shape(loss, target):
    grad = grad_of(lambda x: loss(x, target, reduction="sum"), mx.zeros((0, 3)))
    assert grad.shape == (0, 3)


@pytest.mark.parametrize("targets", [np.zeros((0,), np.int64), np.zeros((2, 0), np.int64)], ids=["concatenated", "padded"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_ctc_with_every_target_empty(targets, reduction):
    lp = np.log(np.full((5, 2, 4), 0.25, dtype=np.float32))
    lengths = np.array([5, 5]), np.array([0, 0])
    ours = F.ctc_loss(mx.array(lp), mx.array(targets), *(mx.array(a) for a in lengths), reduction=reduction)
    theirs = TF.ctc_loss(torch.tensor(lp), torch.tensor(targets), *(torch.tensor(a) for a in lengths), reduction=reduction)
    assert_close(ours, theirs)
    if reduction == "mean":
        assert abs(ours.item() - 5 * math.log(4)) < 1e-5  # 6.93


# --- NaN and infinity -------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.0, 1.0, 1.5, 2.0, 3.0, math.inf])
def test_pairwise_distance_propagates_nan(p):
    a, b = [[NAN, 1.0]], [[1.0, 1.0]]
    ours = F.pairwise_distance(mx.array(a), mx.array(b), p=p)
    theirs = TF.pairwise_distance(torch.tensor(a), torch.tensor(b), p=p)
    assert_close(ours, theirs)
    if p != 0:
        assert math.isnan(ours.item())
    else:
        assert ours.item() == 2.0  # nan counts as non-zero (with 1 + eps - 1)


def test_triplet_loss_with_a_nan_anchor_is_nan():
    anchor, pos, neg = [[NAN, 1.0]], [[1.0, 1.0]], [[1.0, 2.0]]
    ours = F.triplet_margin_loss(*(mx.array(v) for v in (anchor, pos, neg)))
    assert math.isnan(ours.item())
    assert math.isnan(TF.triplet_margin_loss(*(torch.tensor(v) for v in (anchor, pos, neg))).item())


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (
            lambda x: F.margin_ranking_loss(x, mx.zeros(2), mx.ones(2), margin=1.0),
            lambda x: TF.margin_ranking_loss(x, torch.zeros(2), torch.ones(2), margin=1.0),
        ),
        (lambda x: F.hinge_embedding_loss(x, -mx.ones(2)), lambda x: TF.hinge_embedding_loss(x, -torch.ones(2))),
        (
            lambda x: F.triplet_margin_loss(x[None], mx.ones((1, 2)), mx.zeros((1, 2))),
            lambda x: TF.triplet_margin_loss(x[None], torch.ones(1, 2), torch.zeros(1, 2)),
        ),
        (
            lambda x: F.triplet_margin_with_distance_loss(x[None], mx.ones((1, 2)), mx.zeros((1, 2))),
            lambda x: TF.triplet_margin_with_distance_loss(x[None], torch.ones(1, 2), torch.zeros(1, 2)),
        ),
        (
            lambda x: F.cosine_embedding_loss(x[None], mx.ones((1, 2)), -mx.ones(1)),
            lambda x: TF.cosine_embedding_loss(x[None], torch.ones(1, 2), -torch.ones(1)),
        ),
    ],
    ids=["margin_ranking", "hinge_embedding", "triplet", "triplet_with_distance", "cosine_embedding"],
)
def test_hinge_gradient_at_nan_is_torchs(ours, theirs):
    x = [NAN, 0.5]
    t = torch.tensor(x, requires_grad=True)
    theirs(t).backward()
    assert_close(grad_of(ours, mx.array(x)), t.grad, what="gradient")


@pytest.mark.parametrize("loss", [F.huber_loss, F.smooth_l1_loss])
@pytest.mark.parametrize("x, y", [(INF, 0.0), (3e38, -3e38), (-INF, 1.0)])
def test_robust_loss_gradient_is_one_where_the_residual_overflows(loss, x, y):
    grad = grad_of(loss, mx.array([x]), mx.array([y]))
    scale = 1.0  # delta = beta = 1
    assert grad.item() == math.copysign(scale, x - y if math.isfinite(x - y) else x)


def test_soft_margin_of_an_infinite_margin_is_zero():
    assert F.soft_margin_loss(mx.array([INF]), mx.array([1.0])).item() == 0.0


def test_gaussian_nll_of_nan_and_infinite_variances():
    assert math.isnan(F.gaussian_nll_loss(mx.array([1.0]), mx.array([1.0]), mx.array([NAN])).item())
    x, y, var = mx.array([1.0]), mx.array([0.0]), mx.array([INF])
    assert F.gaussian_nll_loss(x, y, var).item() == INF
    grads = mx.grad(lambda *a: F.gaussian_nll_loss(*a), argnums=[0, 1, 2])(x, y, var)
    assert all(g.item() == 0 for g in grads)


@pytest.mark.parametrize(
    "loss",
    [
        lambda x: F.soft_margin_loss(x, mx.ones(1)),
        lambda x: F.binary_cross_entropy_with_logits(x, mx.ones(1)),
        lambda x: F.multilabel_soft_margin_loss(x, mx.ones(1)),
    ],
    ids=["soft_margin", "bce_with_logits", "multilabel_soft_margin"],
)
def test_gradient_in_the_confident_tail_is_accurate(loss):
    grad = grad_of(loss, mx.array([22.0])).item()
    exact = -1 / (1 + math.exp(22.0))  # -2.79e-10
    assert abs(grad - exact) <= 1e-2 * abs(exact)


def test_pairwise_distance_does_not_overflow_where_it_is_finite():
    assert F.pairwise_distance(mx.array([[1e20]]), mx.array([[0.0]])).item() == pytest.approx(1e20, rel=1e-6)
    assert_close(grad_of(lambda x: F.pairwise_distance(x, mx.zeros((1, 2))), mx.array([[3e20, 4e20]])), [[0.6, 0.8]])


def test_cross_entropy_of_large_logits_is_exact():
    """0.0076207, where logsumexp(x) - x_y keeps a float32 ulp of 1e4 (0.0078125, 2.5% off).

    What is left is float32's resolution at log(1.0077): 1e-7 absolute, 1.6e-5 of this loss.
    """
    logits = [[1e4, 1e4 - 5, 1e4 - 7]]
    exact = math.log(1 + math.exp(-5) + math.exp(-7))
    assert F.cross_entropy(mx.array(logits), mx.array([0])).item() == pytest.approx(exact, rel=2e-5)
    target = [[0.7, 0.2, 0.1]]
    exact_p = sum(-p * (z - 1e4 - exact) for p, z in zip(target[0], logits[0]))
    assert F.cross_entropy(mx.array(logits), mx.array(target)).item() == pytest.approx(exact_p, rel=1e-6)


# --- inputs PyTorch refuses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: F.mse_loss(mx.array([1 + 1j]), mx.array([0j])), "input must be a floating-point array, got dtype mlx.core.complex64"),
        (lambda: F.cross_entropy(mx.array([[1 + 1j, 2 + 0j]]), mx.array([0])), "input must be a floating-point array"),
        (lambda: lossfn.mse_loss(mx.array([1.0]), mx.array([1j])), "mse_loss: target must be real"),
        (lambda: lossfn.l1_loss(mx.array([1]), mx.array([1])), "l1_loss: input must be a floating-point array"),
        (lambda: F.cross_entropy(mx.zeros((2, 3)), mx.array([1, 0]), ignore_index=1.5), "ignore_index must be an int, got float 1.5"),
        (lambda: T.ignore_index(lossfn.cross_entropy, 1.5), "index must be an integer"),
    ],
)
def test_refused_with_a_type_error_naming_the_argument(call, match):
    with pytest.raises(TypeError, match=match):
        call()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: F.smooth_l1_loss(mx.zeros(2), mx.ones(2), beta=NAN), "does not support negative values for beta, got beta=nan"),
        (lambda: F.smooth_l1_loss(mx.zeros(2), mx.ones(2), beta=-1.0), "does not support negative values for beta"),
        (lambda: F.huber_loss(mx.zeros(2), mx.ones(2), delta=NAN), "does not support non-positive values for delta, got delta=nan"),
        (lambda: F.huber_loss(mx.zeros(2), mx.ones(2), delta=-1.0), "does not support non-positive values for delta"),
    ],
)
def test_nan_or_negative_beta_and_delta_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- the per-example and transform layers -----------------------------------------------------------


def test_a_batch_given_to_a_per_example_loss_raises_naming_the_fix():
    with pytest.raises(ValueError, match=r"cross_entropy takes one example: logits must have shape \(C,\), got shape \(4, 3\)\. "
                       r"For a batch, use transforms\.reduce"):
        lossfn.cross_entropy(mx.zeros((4, 3)), mx.zeros((4,), mx.int32))


def test_a_class_weight_of_the_wrong_length_raises():
    with pytest.raises(ValueError, match=r"weight must have one entry per class, shape \(3,\).*got shape \(5,\)"):
        T.reduce(T.weighted(lossfn.cross_entropy))(mx.zeros((4, 3)), mx.zeros((4,), mx.int32), mx.ones(5))


def test_a_weighted_loss_called_without_its_weight_names_it():
    with pytest.raises(TypeError, match=r"the class weight, shape \(C,\), is missing"):
        T.reduce(T.weighted(lossfn.cross_entropy))(mx.zeros((4, 3)), mx.zeros((4,), mx.int32))


def test_ctc_is_not_twice_differentiable():
    lp = mx.log(mx.full((5, 1, 4), 0.25))
    args = (mx.array([[1, 2]]), mx.array([5]), mx.array([2]))

    def grad_norm(x):
        return mx.sum(mx.square(mx.grad(lambda y: F.ctc_loss(y, *args))(x)))

    with pytest.raises(ValueError, match="ctc_loss is not twice differentiable"):
        mx.grad(grad_norm)(lp)
    with pytest.raises(ValueError, match="ctc_loss is not twice differentiable"):  # traced too
        mx.compile(mx.grad(grad_norm))(lp)
    # First derivatives are untouched, in every order of the transformations.
    first = mx.grad(lambda y: F.ctc_loss(y, *args))(lp)
    assert np.isfinite(np.asarray(first)).all() and np.abs(np.asarray(first)).sum() > 0
    assert_close(mx.compile(mx.grad(lambda y: F.ctc_loss(y, *args)))(lp), first)


def test_per_example_losses_take_numpy_arrays_lists_and_numbers():
    row = np.array([0.1, 2.0, -1.0, 0.5, 0.0], dtype=np.float32)
    ours = lossfn.cross_entropy(row, 3)
    assert_close(ours, TF.cross_entropy(torch.tensor(row), torch.tensor(3)))
    assert_close(lossfn.mse_loss([1.0, 2.0], [0.0, 0.0]), [1.0, 4.0])
    assert_close(T.reduce(lossfn.cross_entropy)(np.stack([row, row]), [3, 1]), TF.cross_entropy(torch.tensor(np.stack([row, row])), torch.tensor([3, 1])))
