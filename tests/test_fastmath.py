"""The CPU's cheap transcendentals (``lossfn._fastmath``) against float64 NumPy: at least as
accurate as MLX's own ``exp`` / ``log1p``, special values included, eager and compiled."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from lossfn import _fastmath as fm

rng = np.random.default_rng(0)


def _relative_error(ours: mx.array | np.ndarray, exact: np.ndarray) -> float:
    ours64 = np.asarray(ours).astype(np.float64)
    return float(np.max(np.abs(ours64 - exact) / np.abs(exact)))


@pytest.mark.parametrize("low, high", [(-87, 0), (-20, 20), (0, 88), (-103, -87)])
@pytest.mark.parametrize("compiled", [False, True])
def test_exp_is_at_least_as_accurate_as_mlx(low: float, high: float, compiled: bool) -> None:
    x = rng.uniform(low, high, 1 << 16).astype(np.float32)
    exact = np.exp(x.astype(np.float64))
    normal = exact > np.finfo(np.float32).tiny  # subnormal results carry fewer digits
    f = mx.compile(fm.exp) if compiled else fm.exp
    ours = _relative_error(np.asarray(f(mx.array(x)))[normal], exact[normal])
    assert ours < 2.5e-7
    assert ours <= _relative_error(np.asarray(mx.exp(mx.array(x)))[normal], exact[normal])


def test_exp_special_values_and_gradient() -> None:
    x = mx.array([-np.inf, np.inf, np.nan, 0.0, 89.0, -50.0, 50.0])
    np.testing.assert_array_equal(np.asarray(fm.exp(x))[:5], [0.0, np.inf, np.nan, 1.0, np.inf])  # e**89 overflows float32
    np.testing.assert_allclose(np.asarray(fm.exp(x))[5:], np.exp([-50.0, 50.0]), rtol=2e-7)
    grad = mx.grad(lambda v: fm.exp(v).sum())(mx.array([-np.inf, -50.0, 0.0, 50.0]))
    np.testing.assert_allclose(np.asarray(grad), np.exp([-np.inf, -50.0, 0.0, 50.0]), rtol=3e-7)


def test_exp_nonpositive_clamps_below_minus_87() -> None:
    x = mx.array([-np.inf, -1000.0, -87.0, -1.0, 0.0])
    np.testing.assert_allclose(np.asarray(fm.exp_nonpositive(x)), [np.exp(-87.0)] * 3 + [np.exp(-1.0), 1.0], rtol=2e-7)
    assert np.asarray(mx.grad(lambda v: fm.exp_nonpositive(v).sum())(x))[:2].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("low, high", [(0, 1), (0, 1e-6), (-1, 0), (-1e-6, 0), (1e-30, 1e-20)])
def test_log1p(low: float, high: float) -> None:
    u = rng.uniform(low, high, 1 << 16).astype(np.float32)
    exact = np.log1p(u.astype(np.float64))
    assert _relative_error(mx.compile(fm.log1p)(mx.array(u)), exact) < 2e-7
    assert _relative_error(fm.log1p(mx.array(u)), exact) < 2e-7


def test_log1p_ends_and_gradient() -> None:
    out = np.asarray(fm.log1p(mx.array([-1.0, 0.0, 1.0, np.nan])))
    assert out[0] == -np.inf and out[1] == 0 and np.isnan(out[3])
    np.testing.assert_allclose(out[2], np.log(2.0), rtol=1e-7)
    u = np.array([0.0, 1e-8, 0.5, 1.0], np.float32)
    grad = mx.grad(lambda v: fm.log1p(v).sum())(mx.array(u))
    np.testing.assert_allclose(np.asarray(grad), 1 / (1 + u.astype(np.float64)), rtol=1e-7)


def test_other_dtypes_take_mlx_own() -> None:
    x = mx.array([-3.0, 0.5], mx.float16)
    assert fm.exp(x).dtype == mx.float16
    np.testing.assert_array_equal(np.asarray(fm.exp(x)), np.asarray(mx.exp(x)))
    np.testing.assert_array_equal(np.asarray(fm.log1p(x)), np.asarray(mx.log1p(x)))
