"""'sum', 'mean' and 'batchmean' stay within 1e-6 relative of a float64 reference at any size.

MLX's own float32 ``sum`` accumulates sequentially and saturates (``mx.sum(mx.ones(2**25))``
is ``2**24``); the staged ``accurate_sum`` behind every reduction does not.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import lossfn.functional as F
from transforms import accurate_sum

SIZES = [2**20, 2**24, 2**27]


def relative_error(ours: mx.array, reference: float) -> float:
    return abs(float(ours.item()) - reference) / abs(reference)


def test_accurate_sum_does_not_saturate():
    assert mx.sum(mx.ones(2**25)).item() == 2**24  # the trap, measured
    assert accurate_sum(mx.ones(2**25)).item() == 2**25


@pytest.mark.parametrize("size", [1, 4095, 4096, 4097, 3 * 4096 + 5, 4096**2 + 7])
def test_accurate_sum_of_awkward_sizes(size):
    x = mx.random.uniform(shape=(size,), key=mx.random.key(size))
    reference = np.asarray(x).astype(np.float64).sum()
    assert relative_error(accurate_sum(x), reference) < 1e-6


@pytest.mark.parametrize("size", SIZES)
def test_mse_reduction_accuracy(size):
    kx, ky = mx.random.split(mx.random.key(size))
    x, y = mx.random.normal((size,), key=kx), mx.random.normal((size,), key=ky)
    ours = {r: F.mse_loss(x, y, reduction=r) for r in ("sum", "mean")}
    mx.eval(ours)
    d = np.asarray(x).astype(np.float64)
    d -= np.asarray(y)
    d *= d
    total = d.sum()
    assert relative_error(ours["sum"], total) < 1e-6
    assert relative_error(ours["mean"], total / size) < 1e-6


@pytest.mark.parametrize("size", SIZES)
def test_bce_with_logits_reduction_accuracy(size):
    kx, ky = mx.random.split(mx.random.key(size + 1))
    x = mx.random.normal((size,), key=kx) * 3
    y = (mx.random.uniform(shape=(size,), key=ky) > 0.5).astype(mx.float32)
    ours = {r: F.binary_cross_entropy_with_logits(x, y, reduction=r) for r in ("sum", "mean")}
    mx.eval(ours)
    x64 = np.asarray(x).astype(np.float64)
    total = (np.logaddexp(0, -x64) + (1 - np.asarray(y)) * x64).sum()
    assert relative_error(ours["sum"], total) < 1e-6
    assert relative_error(ours["mean"], total / size) < 1e-6


def test_kl_style_batchmean_accuracy():
    """'batchmean' divides the accurate total by the batch size."""
    import lossfn
    from transforms import reduce

    x = mx.random.normal((2**12, 2**12), key=mx.random.key(3))
    ours = reduce(lossfn.mse_loss, "batchmean")(x, mx.zeros_like(x))
    x64 = np.asarray(x).astype(np.float64)
    assert relative_error(ours, (x64 * x64).sum() / x.shape[0]) < 1e-6


def test_flat_staging_follows_the_shape_under_a_shapeless_compile():
    # Staged as one flat array where shapes are fixed; in a user's shapeless compile, whose
    # graph outlives its first shape, the sum keeps no size: right for the next batch too.
    import lossfn
    import transforms as T

    losses = {
        "functional mean": lambda a, b: F.mse_loss(a, b),
        "functional sum": lambda a, b: F.l1_loss(a, b, reduction="sum"),
        "reduce mean": lambda a, b: T.reduce(lossfn.mse_loss, "mean")(a, b),
    }
    rng = np.random.default_rng(5)
    for name, loss in losses.items():
        compiled = mx.compile(loss, shapeless=True)
        for n in (70_001, 2**17, 90_000):  # above the staging threshold, padded or not
            a, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
            exact = np.mean((a.astype(np.float64) - b) ** 2) if "mse" in name or "mean" in name else np.sum(np.abs(a.astype(np.float64) - b))
            for got in (loss(mx.array(a), mx.array(b)), compiled(mx.array(a), mx.array(b))):
                assert relative_error(got, float(exact)) < 1e-6, (name, n)
