"""KL divergence, Poisson NLL and Gaussian NLL against PyTorch 2.13: values and gradients, every
code path x every reduction x scalar / unbatched / batched / K-dimensional shapes, edge values,
errors and warnings; and the per-example losses under ``mx.compile``, ``mx.vmap`` and ``mx.grad``.
"""

from __future__ import annotations

import functools
import itertools
import warnings

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
SHAPES = {"scalar": (), "vector": (7,), "batched": (4, 5), "kdim": (2, 3, 4)}


def kl_mean_warning() -> pytest.WarningsRecorder:
    return pytest.warns(UserWarning, match="'batchmean' divides only by the batch size")


# --- KL divergence -----------------------------------------------------------------------------


def kl_data(r: np.random.Generator, shape: tuple[int, ...], log_target: bool) -> tuple[np.ndarray, np.ndarray]:
    logits = r.normal(size=shape).astype(np.float32)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True)) if shape else logits
    p = r.uniform(0.05, 1.0, size=shape).astype(np.float32)
    target = np.log(p) if log_target else p
    return log_probs.astype(np.float32), target.astype(np.float32)


KL_GRID = list(itertools.product(SHAPES, (False, True), ("none", "mean", "sum", "batchmean")))


@pytest.mark.parametrize("shape_name,log_target,reduction", KL_GRID)
def test_kl_div(shape_name, log_target, reduction):
    x, y = kl_data(rng("kl", shape_name, log_target, reduction), SHAPES[shape_name], log_target)
    kw = dict(reduction=reduction, log_target=log_target)
    check = functools.partial(
        check_against_torch,
        lambda a, b: F.kl_div(a, b, **kw),
        lambda a, b: TF.kl_div(a, b, **kw),
        [x, y],
        wrt=(0, 1),
    )
    if reduction == "mean":
        with kl_mean_warning():
            check()
    else:
        check()


@pytest.mark.parametrize("reduction", ("none", "sum", "batchmean"))
def test_kl_div_zero_target(reduction):
    """A target of exactly 0 contributes 0: value and input gradient equal torch's; the target
    gradient is finite, ``-input`` (torch's is nan there: d/dy of 0 log 0)."""
    x, y = kl_data(rng("kl0", reduction), (4, 5), False)
    y[0, :3] = 0.0
    y[2] = 0.0
    check_against_torch(
        lambda a, b: F.kl_div(a, b, reduction=reduction),
        lambda a, b: TF.kl_div(a, b, reduction=reduction),
        [x, y],
        wrt=(0,),
    )
    grad_y = mx.grad(lambda b: mx.sum(F.kl_div(to_mx(x), b, reduction="sum")))(to_mx(y))
    grad_y = np.asarray(grad_y)
    assert np.all(np.isfinite(grad_y))
    np.testing.assert_array_equal(grad_y[y == 0], -x[y == 0])
    assert float(F.kl_div(mx.array(-3.0), mx.array(0.0), reduction="sum")) == 0.0


def test_kl_div_mean_warning_is_torchs():
    x, y = kl_data(rng("klw"), (3, 4), False)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        TF.kl_div(to_torch(x), to_torch(y))
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        F.kl_div(to_mx(x), to_mx(y))
    assert [(w.category, str(w.message)) for w in ours] == [(w.category, str(w.message)) for w in theirs]
    assert len(ours) == 1
    with kl_mean_warning():  # the class warns on each call, as torch.nn.KLDivLoss
        N.KLDivLoss()(to_mx(x), to_mx(y))


@pytest.mark.parametrize("reduction", ("batchmean", "none", "sum"))
def test_kl_div_target_broadcasts_input(reduction):
    """torch divides 'batchmean' by input.size(0), even when the target broadcasts the input."""
    r = rng("kl-bcast", reduction)
    x, _ = kl_data(r, (1, 4), False)
    _, y = kl_data(r, (3, 4), False)
    check_against_torch(
        lambda a, b: F.kl_div(a, b, reduction=reduction),
        lambda a, b: TF.kl_div(a, b, reduction=reduction),
        [x, y],
        wrt=(0, 1),
    )


def test_kl_div_legacy_arguments_do_not_give_the_mean_warning():
    x, y = kl_data(rng("kl-legacy"), (3, 4), False)
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated") as record:
        out = F.kl_div(to_mx(x), to_mx(y), size_average=False)
    assert not any("batchmean" in str(w.message) for w in record)
    with pytest.warns(UserWarning, match="size_average and reduce args"):
        expected = TF.kl_div(to_torch(x), to_torch(y), size_average=False)
    assert_close(out, expected)


# --- Poisson NLL -------------------------------------------------------------------------------


def poisson_data(r: np.random.Generator, shape: tuple[int, ...], log_input: bool, with_zero: bool) -> tuple[np.ndarray, np.ndarray]:
    x = r.normal(size=shape) if log_input else r.uniform(0.1, 3.0, size=shape)
    y = r.integers(0 if with_zero else 1, 6, size=shape).astype(np.float64)
    if y.ndim:  # counts 0, 1 (the Stirling mask's edge), fractional, large
        y.reshape(-1)[:4] = [0.0 if with_zero else 3.0, 1.0, 1.5, 1e4]
        if not log_input:
            x.reshape(-1)[0] = 0.0  # log(0 + eps)
    else:
        y = np.asarray(7.0)
    return x.astype(np.float32), y.astype(np.float32)


POISSON_GRID = list(itertools.product(SHAPES, (True, False), (False, True), REDUCTIONS))


@pytest.mark.parametrize("shape_name,log_input,full,reduction", POISSON_GRID)
def test_poisson_nll_loss(shape_name, log_input, full, reduction):
    r = rng("poisson", shape_name, log_input, full, reduction)
    # torch's target gradient is nan at target 0 with full=True (0 * log 0 in the masked term).
    x, y = poisson_data(r, SHAPES[shape_name], log_input, with_zero=not full)
    kw = dict(log_input=log_input, full=full, reduction=reduction, eps=1e-8 if reduction != "sum" else 0.25)
    check_against_torch(
        lambda a, b: F.poisson_nll_loss(a, b, **kw),
        lambda a, b: TF.poisson_nll_loss(a, b, **kw),
        [x, y],
        wrt=(0, 1),
    )


@pytest.mark.parametrize("log_input", (True, False))
def test_poisson_full_zero_target(log_input):
    """full=True at target 0: value and input gradient equal torch's; the target gradient is
    finite (torch's is nan) and Stirling's term adds nothing to it (it is masked for y <= 1)."""
    x, y = poisson_data(rng("poisson0", log_input), (4, 5), log_input, with_zero=True)
    kw = dict(log_input=log_input, full=True, reduction="sum")
    check_against_torch(lambda a, b: F.poisson_nll_loss(a, b, **kw), lambda a, b: TF.poisson_nll_loss(a, b, **kw), [x, y])
    grad_full = mx.grad(lambda b: F.poisson_nll_loss(to_mx(x), b, **kw))(to_mx(y))
    grad_plain = mx.grad(lambda b: F.poisson_nll_loss(to_mx(x), b, log_input=log_input, reduction="sum"))(to_mx(y))
    assert np.all(np.isfinite(np.asarray(grad_full)))
    low = y <= 1
    np.testing.assert_array_equal(np.asarray(grad_full)[low], np.asarray(grad_plain)[low])


def test_poisson_full_nan_and_inf_targets_are_torchs():
    """Stirling's term at a nan or infinite count: value and both gradients nan (or -inf) as torch's."""
    x = np.array([0.3, -0.5, 1.0, 0.2, 0.1, -1.0], np.float32)
    y = np.array([np.nan, np.inf, 0.5, 1.0, 2.0, 7.0], np.float32)
    kw = dict(full=True, reduction="none")
    check_against_torch(lambda a, b: F.poisson_nll_loss(a, b, **kw), lambda a, b: TF.poisson_nll_loss(a, b, **kw), [x, y], wrt=(0, 1))


def test_poisson_integer_counts_and_broadcast():
    r = rng("poisson-int")
    x = r.normal(size=(3, 4)).astype(np.float32)
    counts = r.integers(0, 9, size=(1, 4)).astype(np.int64)
    check_against_torch(
        lambda a, b: F.poisson_nll_loss(a, b, full=True, reduction="none"),
        lambda a, b: TF.poisson_nll_loss(a, b, full=True, reduction="none"),
        [x, counts],
    )


# --- Gaussian NLL ------------------------------------------------------------------------------

# var layouts by input shape: the same shape, one axis fewer, the last (or a middle) axis 1, a float
VAR_LAYOUTS = {
    "scalar": {"same": (), "float": None},
    "vector": {"same": (7,), "fewer": (), "last1": (1,), "float": None},
    "batched": {"same": (4, 5), "fewer": (4,), "last1": (4, 1), "first1": (1, 5), "float": None},
    "kdim": {"same": (2, 3, 4), "fewer": (2, 3), "last1": (2, 3, 1), "middle1": (2, 1, 4), "float": None},
}
GAUSS_GRID = [
    (shape_name, layout, full, reduction)
    for shape_name, layouts in VAR_LAYOUTS.items()
    for layout, full, reduction in itertools.product(layouts, (False, True), REDUCTIONS)
]


@pytest.mark.parametrize("shape_name,layout,full,reduction", GAUSS_GRID)
def test_gaussian_nll_loss(shape_name, layout, full, reduction):
    r = rng("gauss", shape_name, layout, full, reduction)
    shape = SHAPES[shape_name]
    x = r.normal(size=shape).astype(np.float32)
    y = r.normal(size=shape).astype(np.float32)
    kw = dict(full=full, reduction=reduction, eps=1e-6 if reduction != "sum" else 0.05)
    if layout == "float":
        check_against_torch(
            lambda a, b: F.gaussian_nll_loss(a, b, 0.7, **kw),
            lambda a, b: TF.gaussian_nll_loss(a, b, 0.7, **kw),
            [x, y],
            wrt=(0, 1),
        )
        return
    var = r.uniform(0.2, 2.0, size=VAR_LAYOUTS[shape_name][layout]).astype(np.float32)
    if var.size > 3:  # variances below eps (clamped; the gradient passes straight through)
        var.reshape(-1)[:3] = [0.0, 1e-9, 0.04]
    check_against_torch(
        lambda a, b, v: F.gaussian_nll_loss(a, b, v, **kw),
        lambda a, b, v: TF.gaussian_nll_loss(a, b, v, **kw),
        [x, y, var],
        wrt=(0, 1, 2),
    )


def test_gaussian_target_broadcasts():
    r = rng("gauss-bcast")
    x, y = r.normal(size=(1, 4)).astype(np.float32), r.normal(size=(3, 4)).astype(np.float32)
    var = r.uniform(0.5, 1.0, size=(1, 4)).astype(np.float32)
    check_against_torch(
        lambda a, b, v: F.gaussian_nll_loss(a, b, v, reduction="none"),
        lambda a, b, v: TF.gaussian_nll_loss(a, b, v, reduction="none"),
        [x, y, var],
        wrt=(0, 1, 2),
    )


@pytest.mark.parametrize(
    "input_shape,var",
    [
        ((3, 4), (3, 5)),
        ((3, 4), (1, 1)),  # two axes of size 1
        ((3, 4), ()),  # a 0-d var is neither a number nor one axis fewer
        ((3, 4), (4,)),
        ((2, 3, 4), (2,)),
    ],
)
def test_gaussian_var_of_incorrect_size(input_shape, var):
    x, v = np.zeros(input_shape, np.float32), np.ones(var, np.float32)
    with pytest.raises(ValueError, match="var is of incorrect size"):
        TF.gaussian_nll_loss(to_torch(x), to_torch(x), to_torch(v))
    with pytest.raises(ValueError, match=r"var is of incorrect size: input has shape \(.*\), var has shape"):
        F.gaussian_nll_loss(to_mx(x), to_mx(x), to_mx(v))


@pytest.mark.parametrize("var", [-0.5, np.array([[1.0, -1e-3], [1.0, 1.0]], np.float32)])
def test_gaussian_negative_var(var):
    x = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="var has negative entry/entries"):
        TF.gaussian_nll_loss(to_torch(x), to_torch(x), var if isinstance(var, float) else to_torch(var))
    with pytest.raises(ValueError, match="var has negative entry/entries"):
        F.gaussian_nll_loss(to_mx(x), to_mx(x), var if isinstance(var, float) else to_mx(var))


# --- errors and reductions ---------------------------------------------------------------------


def test_errors():
    x = mx.zeros((3, 4))
    with pytest.raises(TypeError, match="input must be a floating-point array"):
        F.kl_div(mx.zeros((3,), dtype=mx.int32), mx.zeros((3,)), reduction="sum")
    with pytest.raises(TypeError, match="target must be a floating-point array"):
        F.kl_div(mx.zeros((3,)), mx.zeros((3,), dtype=mx.int32), reduction="sum")
    with pytest.raises(ValueError, match=r"input of shape \(3, 4\), target of shape \(3, 5\) cannot be broadcast"):
        F.kl_div(x, mx.zeros((3, 5)), reduction="sum")
    with pytest.raises(ValueError, match=r"input of shape \(3, 4\), target of shape \(2, 4\) cannot be broadcast"):
        F.poisson_nll_loss(x, mx.zeros((2, 4)))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.kl_div(x, x, reduction="bogus")
    for fn, args in [(F.poisson_nll_loss, (x, x)), (F.gaussian_nll_loss, (x, x, x))]:
        with pytest.raises(ValueError, match=r"reduction must be one of .*got 'batchmean'"):
            fn(*args, reduction="batchmean")
    with pytest.raises(ValueError, match=r"reduction must be one of .*got 'batchmean'"):
        N.PoissonNLLLoss(reduction="batchmean")
    with pytest.raises(ValueError, match="batchmean is not a valid value"):  # torch raises too
        TF.poisson_nll_loss(to_torch(np.zeros(3, np.float32)), to_torch(np.zeros(3, np.float32)), reduction="batchmean")


# --- nn classes --------------------------------------------------------------------------------

CLASS_CASES = [
    ("KLDivLoss", dict(reduction="batchmean", log_target=True), "kl"),
    ("KLDivLoss", dict(reduction="sum"), "kl"),
    ("PoissonNLLLoss", dict(log_input=False, full=True, eps=1e-3, reduction="none"), "poisson"),
    ("PoissonNLLLoss", dict(), "poisson"),
    ("GaussianNLLLoss", dict(full=True, eps=1e-2, reduction="sum"), "gauss"),
    ("GaussianNLLLoss", dict(), "gauss"),
]


@pytest.mark.parametrize("name,kw,data", CLASS_CASES)
def test_modules_against_torch(name, kw, data):
    r = rng("module", name, tuple(kw.items()))
    if data == "kl":
        inputs = list(kl_data(r, (4, 5), kw.get("log_target", False)))
    elif data == "poisson":
        inputs = list(poisson_data(r, (4, 5), kw.get("log_input", True), with_zero=not kw.get("full", False)))
    else:
        inputs = [r.normal(size=(4, 5)).astype(np.float32), r.normal(size=(4, 5)).astype(np.float32)]
        inputs.append(r.uniform(0.1, 2.0, size=(4, 1)).astype(np.float32))
    ours, theirs = getattr(N, name)(**kw), getattr(tnn, name)(**kw)
    check_against_torch(ours, theirs, inputs, wrt=tuple(range(len(inputs))))
    for key, value in kw.items():
        assert getattr(ours, key) == value
    assert ours.parameters() == {} and name in repr(ours)


# --- transforms: compiled == eager, vmap(grad) == loop ------------------------------------------

PER_EXAMPLE = [
    (lossfn.kl_div, dict(log_target=False), "kl"),
    (lossfn.kl_div, dict(log_target=True), "kl-log"),
    (lossfn.poisson_nll_loss, dict(log_input=True, full=True), "poisson"),
    (lossfn.poisson_nll_loss, dict(log_input=False, full=True, eps=1e-3), "poisson-rate"),
    (lossfn.gaussian_nll_loss, dict(full=True, eps=1e-2), "gauss"),
]


def one_batch(kind: str, r: np.random.Generator, n: int = 4, d: int = 5) -> list[mx.array]:
    if kind.startswith("kl"):
        x, y = kl_data(r, (n, d), kind == "kl-log")
        y[0, 0] = 0.0 if kind == "kl" else y[0, 0]
        return [to_mx(x), to_mx(y)]
    if kind.startswith("poisson"):
        return [to_mx(a) for a in poisson_data(r, (n, d), kind == "poisson", with_zero=True)]
    var = r.uniform(0.0, 1.0, size=(n, d)).astype(np.float32)
    return [to_mx(r.normal(size=(n, d)).astype(np.float32)), to_mx(r.normal(size=(n, d)).astype(np.float32)), to_mx(var)]


@pytest.mark.parametrize("loss,kw,kind", [PER_EXAMPLE[i] for i in (0, 3, 4)])  # one per loss: compiles are slow
def test_compiled_equals_eager(loss, kw, kind):
    example = [a[1] for a in one_batch(kind, rng("compile", kind))]
    value_and_grads = mx.value_and_grad(lambda *a: mx.sum(loss(*a, **kw)), argnums=list(range(len(example))))
    (value, grads), (eager_value, eager_grads) = mx.compile(value_and_grads)(*example), value_and_grads(*example)
    assert_close(value, eager_value)
    for ours, eager in zip(grads, eager_grads, strict=True):
        assert_close(ours, eager)


@pytest.mark.parametrize("loss,kw,kind", PER_EXAMPLE)
def test_vmap_grad_equals_loop(loss, kw, kind):
    batch = one_batch(kind, rng("vmap", kind))
    argnums = list(range(len(batch)))
    per_example = mx.grad(lambda *a: mx.sum(loss(*a, **kw)), argnums=argnums)
    vmapped = mx.vmap(per_example)(*batch)
    for i in range(batch[0].shape[0]):
        looped = per_example(*(a[i] for a in batch))
        for g_batch, g_one in zip(vmapped, looped, strict=True):
            assert g_one.shape == batch[0].shape[1:] and np.all(np.isfinite(np.asarray(g_one)))
            assert_close(g_batch[i], g_one)


def test_gaussian_clamp_gradient_passes_through():
    """Below eps the value uses eps, and d/dvar is the derivative at eps (not 0), as torch's."""
    x, y, v = mx.array([1.0]), mx.array([0.0]), mx.array([1e-9])
    g = mx.grad(lambda var: mx.sum(lossfn.gaussian_nll_loss(x, y, var, eps=0.5)))(v)
    expected = torch.tensor([1e-9], requires_grad=True)
    TF.gaussian_nll_loss(torch.tensor([1.0]), torch.tensor([0.0]), expected, eps=0.5, reduction="sum").backward()
    assert_close(g, expected.grad)
    assert float(g[0]) == pytest.approx(0.5 * (1 / 0.5 - 1 / 0.25))
