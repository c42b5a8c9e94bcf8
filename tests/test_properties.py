"""Properties of every loss, drawn by hypothesis over the data, against PyTorch and float64:

- half precision: float16 and bfloat16 inputs give a loss and gradients of that dtype, each
  element at most PyTorch's own error against float64 (where PyTorch has no half kernel on
  the CPU, at most one rounding: correctly rounded);
- empty batches: PyTorch's result for every reduction, gradients of the inputs' shapes;
- NaN and infinity in any input: PyTorch's values and gradients;
- shift invariance: cross-entropy of logits shifted by up to 1e6, and BCE with logits of
  that size, within 1e-6 of float64 on the same float32 inputs.

Traced invalid data and shapeless compilation run in subprocesses (``test_traced``).
Shapes are fixed per loss, so that the drawn examples share compiled kernels.
"""

from __future__ import annotations

import warnings

import mlx.core as mx
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from loss_table import ROWS, Row, to_mx
from oracle import assert_close
from test_every_loss import CASES

import lossfn
from transforms import Weighted

SETTINGS = settings(max_examples=4, deadline=None, derandomize=True)
HALF = {"float16": (mx.float16, torch.float16, 2.0**-11), "bfloat16": (mx.bfloat16, torch.bfloat16, 2.0**-8)}
N = 6


def _floating(a: np.ndarray) -> bool:
    return a.dtype == np.float32


def run_ours(row: Row, arrays: list[np.ndarray], reduction: str, dtype: mx.Dtype = mx.float32) -> tuple[np.ndarray, list[np.ndarray], list[mx.Dtype]]:
    """Our value and the gradients of ``sum(value * r)`` with respect to the row's float inputs."""
    inputs = [to_mx(a).astype(dtype) if _floating(a) else to_mx(a) for a in arrays]
    value = row.ours(*inputs, reduction=reduction)
    r = mx.array(cotangent(value.shape)).astype(value.dtype)

    def objective(*xs: mx.array) -> mx.array:
        args = list(inputs)
        for i, x in zip(row.floats, xs):
            args[i] = x
        return mx.sum(row.ours(*args, reduction=reduction) * r)

    grads = mx.grad(objective, argnums=list(range(len(row.floats))))(*[inputs[i] for i in row.floats])
    grads = list(grads) if isinstance(grads, (list, tuple)) else [grads]
    dtypes = [value.dtype] + [g.dtype for g in grads]
    as64 = lambda x: np.asarray(x.astype(mx.float32)).astype(np.float64)  # noqa: E731
    return as64(value), [as64(g) for g in grads], dtypes


def run_torch(row: Row, arrays: list[np.ndarray], reduction: str, dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, list[np.ndarray]]:
    inputs = [
        torch.tensor(a).to(dtype).requires_grad_(i in row.floats) if _floating(a) else torch.tensor(a)
        for i, a in enumerate(arrays)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = row.theirs(TF, *inputs, reduction=reduction)
    (value * torch.tensor(cotangent(tuple(value.shape))).to(value.dtype)).sum().backward()
    as64 = lambda t: t.detach().to(torch.float64).numpy()  # noqa: E731
    return as64(value), [as64(inputs[i].grad) for i in row.floats]


def cotangent(shape: tuple[int, ...]) -> np.ndarray:
    """A fixed cotangent of exact half-precision numbers (multiples of 1/8 in [0.5, 1.5])."""
    return (np.random.default_rng(0).integers(4, 13, size=shape) / 8).astype(np.float32)


def rounded(arrays: list[np.ndarray], dtype: mx.Dtype) -> list[np.ndarray]:
    """The arrays as the half-precision loss sees them, back in float64 (integers untouched)."""
    return [np.asarray(mx.array(a).astype(dtype).astype(mx.float32)).astype(np.float64) if _floating(a) else a for a in arrays]


# --- half precision -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype_name", HALF)
@pytest.mark.parametrize("name", sorted(ROWS))
@SETTINGS
@given(seed=st.integers(0, 2**16), reduction=st.sampled_from(["none", "mean", "sum"]))
def test_half_precision_is_as_accurate_as_torch(name, dtype_name, seed, reduction):
    row = ROWS[name]
    reduction = reduction if reduction in row.reductions else row.reductions[0]
    mx_dtype, torch_dtype, unit_roundoff = HALF[dtype_name]
    arrays = row.make(np.random.default_rng(seed), N)
    value, grads, dtypes = run_ours(row, arrays, reduction, mx_dtype)
    assert all(d == mx_dtype for d in dtypes), f"dtypes {dtypes}, expected {mx_dtype}"
    exact = run_torch_float64(row, rounded(arrays, mx_dtype), reduction)
    try:
        torch_half = run_torch(row, arrays, reduction, torch_dtype)
    except RuntimeError as err:  # no half kernel on the CPU: hold ours to one rounding
        assert "not implemented for" in str(err)
        torch_half = None
    for what, ours, ref, k in [("value", value, exact[0], 0)] + [(f"grad {i}", g, e, i + 1) for i, (g, e) in enumerate(zip(grads, exact[1]))]:
        error = np.abs(ours - ref)
        if torch_half is None:
            bound = unit_roundoff * np.abs(ref) + 2.0**-24  # correctly rounded (the constant: subnormals)
        else:
            bound = np.abs((torch_half[0] if k == 0 else torch_half[1][k - 1]) - ref)
        slack = 2.0**-18 * (np.max(np.abs(ref)) if ref.size else 0.0)  # float32 arithmetic on the way
        assert np.all(error <= bound + slack), f"{what}: max error {error.max()} above torch's {np.max(bound)}"


def run_torch_float64(row: Row, arrays: list[np.ndarray], reduction: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """PyTorch in float64 on ``arrays`` (float64 data, integer targets)."""
    inputs = [
        torch.tensor(a).requires_grad_(i in row.floats) if a.dtype == np.float64 else torch.tensor(a)
        for i, a in enumerate(arrays)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = row.theirs(TF, *inputs, reduction=reduction)
    (value * torch.tensor(cotangent(tuple(value.shape))).to(torch.float64)).sum().backward()
    return value.detach().numpy(), [inputs[i].grad.numpy() for i in row.floats]


@pytest.mark.parametrize("dtype_name", HALF)
@pytest.mark.parametrize("name", sorted(CASES))
def test_per_example_losses_keep_half_precision_and_round_once(name, dtype_name):
    """Every loss of ``lossfn``: a half-precision example gives a loss and gradient of its dtype,
    correctly rounded from the same loss in float64."""
    mx_dtype, _, unit_roundoff = HALF[dtype_name]
    case = CASES[name]
    raw = case.inputs(np.random.default_rng(3))
    in_axes = (0,) * (len(raw) - case.shared) + (None,) * case.shared
    half = [mx.array(a).astype(mx_dtype) if a.dtype == np.float32 else mx.array(a) for a in raw]
    wide = [a.astype(mx.float64) if mx.issubdtype(a.dtype, mx.floating) else a for a in half]

    def loss(*example: mx.array) -> mx.array:  # the example's loss, an array for an element-wise one
        out = case.loss(*example)
        return out.value if isinstance(out, Weighted) else out

    def scalar(*example: mx.array) -> mx.array:  # summed in float32: the sum is the test's, not the loss's
        return mx.sum(loss(*example).astype(mx.float32))

    value, grad = mx.vmap(loss, in_axes=in_axes), mx.vmap(mx.grad(scalar), in_axes=in_axes)
    ours_value, ours_grad = value(*half), grad(*half)
    assert ours_value.dtype == mx_dtype and ours_grad.dtype == mx_dtype
    for ours, ref in ((ours_value, value(*wide)), (ours_grad, grad(*wide))):
        ours, ref = np.asarray(ours.astype(mx.float32)).astype(np.float64), np.asarray(ref)
        slack = 2.0**-18 * np.max(np.abs(ref))
        assert np.all(np.abs(ours - ref) <= unit_roundoff * np.abs(ref) + 2.0**-24 + slack)


# --- empty batches --------------------------------------------------------------------------------

# PyTorch's CPU kernels return uninitialised memory for these (2.13): 0 and nan are the law.
TORCH_EMPTY_GARBAGE = {"multi_margin_loss", "multilabel_margin_loss"}


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("name", sorted(ROWS))
def test_empty_batch_is_torchs(name, reduction):
    row = ROWS[name]
    if reduction not in row.reductions:
        return
    arrays = row.make(np.random.default_rng(0), 0)
    if name == "ctc_loss":  # PyTorch: "log_probs tensor must not be empty"; so do we
        with pytest.raises(ValueError, match="log_probs must not be empty"):
            run_ours(row, arrays, reduction)
        with pytest.raises(RuntimeError, match="must not be empty"):
            run_torch(row, arrays, reduction)
        return
    value, grads, _ = run_ours(row, arrays, reduction)
    for g, i in zip(grads, row.floats):
        assert g.shape == arrays[i].shape
    if name in TORCH_EMPTY_GARBAGE and reduction != "none":
        np.testing.assert_equal(value, {"sum": 0.0, "mean": np.nan}[reduction])
        return
    theirs, their_grads = run_torch(row, arrays, reduction)
    assert_close(value, theirs)
    for g, t in zip(grads, their_grads):
        assert_close(g, t, what="gradient")


# --- NaN and infinity -----------------------------------------------------------------------------

# Where we differ from PyTorch by design (README, "PyTorch compatibility notes"), checked as our rule:
# - soft margin and BCE with logits are exact where PyTorch's formulas overflow or give
#   inf - inf: finite gradients (+-1 times the cotangent), and BCE's value inf, not nan;
# - BCE with logits: a target of +-inf (no probability) gives nan, where PyTorch's gives +-inf;
# - CTC: where a log-probability is -inf the gradient is 0, not nan; where one is nan, the
#   (or +inf), the example's loss is nan and so is its whole gradient (PyTorch's: only there).
EXACT_AT_INFINITY = {("soft_margin_loss", np.inf), ("soft_margin_loss", -np.inf), ("ctc_loss", -np.inf)}
EXACT_AT_INFINITY |= {("binary_cross_entropy_with_logits", -np.inf)}


def check_by_design(name, which, special, value, grads, theirs, their_grads) -> None:
    if name == "binary_cross_entropy_with_logits" and which == 1:
        same = np.isfinite(theirs)
        assert_close(value[same], theirs[same], rtol=1e-4)
        assert np.isnan(value[~same]).all()
    elif (name, special) in EXACT_AT_INFINITY:
        same = ~np.isnan(theirs)
        assert_close(value[same], theirs[same], rtol=1e-4)
        assert np.all(value[~same] == np.inf)
        for g, t in zip(grads, their_grads):  # PyTorch's where finite or alike, else finite
            same = np.isfinite(t) | (g == t) | (np.isnan(t) & np.isnan(g))
            assert_close(g[same], t[same], rtol=1e-4, what="gradient")
            assert np.isfinite(g[~same]).all()
    else:  # ("ctc_loss", nan or +inf)
        assert_close(value, theirs, rtol=1e-4)
        bad = np.isnan(theirs if theirs.ndim else theirs[None])
        (g,), (t,) = grads, their_grads
        if theirs.ndim:  # per example: a nan loss has an all-nan gradient, the others are PyTorch's
            assert np.isnan(g[:, bad]).all()
            assert_close(g[:, ~bad], t[:, ~bad], rtol=1e-4, what="gradient")
        else:
            assert np.isnan(g).any()


@pytest.mark.parametrize("name", sorted(ROWS))
@SETTINGS
@given(data=st.data())
def test_nan_and_inf_propagate_like_torch(name, data):
    row = ROWS[name]
    which = data.draw(st.sampled_from(row.floats), label="input")
    special = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]), label="value")
    reduction = data.draw(st.sampled_from(row.reductions), label="reduction")
    arrays = row.make(np.random.default_rng(data.draw(st.integers(0, 99), label="seed")), 3)
    arrays[which] = arrays[which].copy()
    arrays[which].reshape(-1)[data.draw(st.integers(0, arrays[which].size - 1), label="position")] = special
    if name == "binary_cross_entropy":  # PyTorch and we refuse probabilities outside [0, 1], nan too
        with pytest.raises(ValueError, match="between 0 and 1"):
            run_ours(row, arrays, reduction)
        with pytest.raises(RuntimeError, match="between 0 and 1"):
            run_torch(row, arrays, reduction)
        return
    value, grads, _ = run_ours(row, arrays, reduction)
    theirs, their_grads = run_torch(row, arrays, reduction)
    target_infinity = name == "binary_cross_entropy_with_logits" and which == 1 and np.isinf(special)
    if target_infinity or (name, special) in EXACT_AT_INFINITY or (name == "ctc_loss" and not special == -np.inf):
        check_by_design(name, which, special, value, grads, theirs, their_grads)
        return
    assert_close(value, theirs, rtol=1e-4)
    for g, t in zip(grads, their_grads):
        assert_close(g, t, rtol=1e-4, what="gradient")


# --- shift invariance -----------------------------------------------------------------------------


@SETTINGS
@given(offset=st.floats(-1e6, 1e6), seed=st.integers(0, 2**16), probabilities=st.booleans())
def test_cross_entropy_is_exact_for_shifted_logits(offset, seed, probabilities):
    r = np.random.default_rng(seed)
    logits = (r.normal(size=(N, 7)) * 4 + offset).astype(np.float32)
    target = r.dirichlet(np.ones(7), size=N).astype(np.float32) if probabilities else r.integers(0, 7, N).astype(np.int64)
    ours = lossfn.functional.cross_entropy(to_mx(logits), to_mx(target), reduction="none")
    grad = mx.grad(lambda x: mx.sum(lossfn.functional.cross_entropy(x, to_mx(target), reduction="none")))(to_mx(logits))
    x = torch.tensor(logits.astype(np.float64), requires_grad=True)
    exact = TF.cross_entropy(x, torch.tensor(target.astype(np.float64) if probabilities else target), reduction="none")
    exact.sum().backward()
    assert_close(ours, exact, rtol=1e-6, atol=1e-6)
    assert_close(grad, x.grad, rtol=1e-6, atol=1e-7, what="gradient")


@SETTINGS
@given(scale=st.floats(1.0, 1e6), seed=st.integers(0, 2**16))
def test_bce_with_logits_is_exact_for_large_logits(scale, seed):
    r = np.random.default_rng(seed)
    logits = (r.normal(size=(N, 5)) * scale).astype(np.float32)
    target = r.uniform(size=(N, 5)).astype(np.float32)
    ours = lossfn.functional.binary_cross_entropy_with_logits(to_mx(logits), to_mx(target), reduction="none")
    grad = mx.grad(lambda x: mx.sum(lossfn.functional.binary_cross_entropy_with_logits(x, to_mx(target), reduction="none")))(
        to_mx(logits)
    )
    x = torch.tensor(logits.astype(np.float64), requires_grad=True)
    exact = TF.binary_cross_entropy_with_logits(x, torch.tensor(target.astype(np.float64)), reduction="none")
    exact.sum().backward()
    assert_close(ours, exact, rtol=1e-6, atol=1e-6)
    assert_close(grad, x.grad, rtol=1e-5, atol=1e-7, what="gradient")
