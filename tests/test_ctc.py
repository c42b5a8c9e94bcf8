"""CTC loss against PyTorch 2.13: values and gradients (both conventions) for every reduction,
padded and concatenated targets, blank != 0, empty and impossible targets, zero_infinity,
unbatched inputs, lengths as lists and tuples, long and peaked inputs; bad input; and the
transform laws: reduce == loop, vmap(grad) == loop of grads, vmap over a further axis,
compiled == eager, and the custom vjp is what autodiff uses in every order."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
import torch

import lossfn
import lossfn.functional as F
import lossfn.nn as lnn
import transforms as T
from lossfn import _ctc_scan as K

RTOL, ATOL = 1e-5, 1e-5
# The gradient is exp(alpha + beta - log p): float32 cancellation in that sum costs about
# ulp(|log p|) in every posterior, for torch as for us.
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-5


def case(
    T_: int = 12,
    N: int = 5,
    C: int = 5,
    S: int = 6,
    blank: int = 0,
    scale: float = 1.0,
    seed: int = 0,
    input_lengths: list[int] | None = None,
    target_lengths: list[int] | None = None,
) -> dict[str, np.ndarray]:
    """Logits ``(T, N, C)``, their log-softmax, targets ``(N, S)`` without the blank, lengths."""
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(T_, N, C)) * scale).astype(np.float32)
    labels = rng.integers(0, C - 1, size=(N, S))
    targets = (labels + (labels >= blank)).astype(np.int64)
    il = np.array(input_lengths if input_lengths is not None else [T_] * N, np.int64)
    tl = np.array(target_lengths if target_lengths is not None else rng.integers(0, S + 1, N), np.int64)
    log_probs = torch.tensor(logits).log_softmax(-1).numpy()
    return {"logits": logits, "log_probs": log_probs, "targets": targets, "il": il, "tl": tl}


# Five examples: full length; shorter input; empty target; a repeated label; impossible
# (5 labels, two of them repeated, in 4 frames).
MIXED = dict(input_lengths=[12, 9, 7, 12, 4], target_lengths=[6, 4, 0, 3, 5])


def mixed_case(blank: int) -> dict[str, np.ndarray]:
    c = case(blank=blank, **MIXED)
    other = 2 if blank != 2 else 1
    c["targets"][3, :3] = other  # 'a a a' needs blanks in between
    c["targets"][4, :2] = other
    return c


def concatenated(targets: np.ndarray, tl: np.ndarray) -> np.ndarray:
    return np.concatenate([targets[n, : tl[n]] for n in range(len(tl))])


def torch_ctc(c: dict[str, np.ndarray], targets: np.ndarray, x: torch.Tensor, **kw: Any) -> torch.Tensor:
    return torch.nn.functional.ctc_loss(x, torch.tensor(targets), torch.tensor(c["il"]), torch.tensor(c["tl"]), **kw)


def cotangent(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(1).uniform(0.5, 1.5, size=shape).astype(np.float32)


def close(ours: Any, theirs: Any, rtol: float = RTOL, atol: float = ATOL, what: str = "") -> None:
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def compare_with_torch(
    c: dict[str, np.ndarray],
    targets: np.ndarray,
    rtol: float = RTOL,
    grad_rtol: float = GRAD_RTOL,
    grad_atol: float = GRAD_ATOL,
    **kw: Any,
) -> None:
    """Value, gradient through log_softmax, and the direct gradient with torch's exp(lp) removed."""
    # Through log_softmax on logits: both conventions agree.
    z = torch.tensor(c["logits"], requires_grad=True)
    out_t = torch_ctc(c, targets, z.log_softmax(-1), **kw)
    r = cotangent(tuple(out_t.shape))
    (out_t * torch.tensor(r)).sum().backward()

    def ours(logits: mx.array) -> mx.array:
        lp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        return F.ctc_loss(lp, mx.array(targets), mx.array(c["il"]), mx.array(c["tl"]), **kw)

    value, grad = mx.value_and_grad(lambda a: mx.sum(ours(a) * mx.array(r)))(mx.array(c["logits"]))
    close(ours(mx.array(c["logits"])), out_t, rtol, what="value")
    close(grad, z.grad, grad_rtol, grad_atol, what="gradient through log_softmax")

    # Directly on log_probs: torch's gradient is the true one plus exp(log_probs) on the live
    # frames of each possible target (zero_infinity zeroes the impossible ones outright).
    x = torch.tensor(c["log_probs"], requires_grad=True)
    (torch_ctc(c, targets, x, **kw) * torch.tensor(r)).sum().backward()
    possible = np.isfinite(torch_ctc(c, targets, x, reduction="none", blank=kw.get("blank", 0)).detach().numpy())
    live = ((np.arange(c["log_probs"].shape[0])[:, None] < c["il"][None, :]) & possible[None, :])[..., None]
    scale = r if r.ndim else np.full(len(c["il"]), float(r))
    if kw.get("reduction", "mean") == "mean":
        scale = scale / np.maximum(c["tl"], 1) / len(c["il"])
    expected = x.grad.numpy() - live * scale[None, :, None] * np.exp(c["log_probs"])
    lp_grad = mx.grad(
        lambda a: mx.sum(F.ctc_loss(a, mx.array(targets), mx.array(c["il"]), mx.array(c["tl"]), **kw) * mx.array(r))
    )(mx.array(c["log_probs"]))
    close(lp_grad, expected, grad_rtol, grad_atol, what="gradient wrt log_probs")


@pytest.mark.parametrize(
    "reduction, form, blank, zero_infinity",
    list(itertools.product(["none", "mean", "sum"], ["padded", "concatenated"], [0, 3], [False, True])),
)
def test_matches_torch(reduction: str, form: str, blank: int, zero_infinity: bool) -> None:
    c = mixed_case(blank)
    targets = c["targets"] if form == "padded" else concatenated(c["targets"], c["tl"])
    compare_with_torch(c, targets, reduction=reduction, blank=blank, zero_infinity=zero_infinity)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("form", ["concatenated", "padded"])
def test_unbatched_matches_torch(reduction: str, form: str) -> None:
    c = case(N=1, S=4, target_lengths=[3])
    lp, tl = c["log_probs"][:, 0], int(c["tl"][0])
    targets = c["targets"][0, :tl] if form == "concatenated" else c["targets"]
    il_t, tl_t = torch.tensor(c["il"][0]), torch.tensor(tl)
    x = torch.tensor(lp, requires_grad=True)
    out_t = torch.nn.functional.ctc_loss(x, torch.tensor(targets), il_t, tl_t, reduction=reduction)
    out_t.backward()
    value, grad = mx.value_and_grad(F.ctc_loss)(mx.array(lp), mx.array(targets), mx.array(c["il"][0]), tl, reduction=reduction)
    close(value, out_t)
    close(grad, x.grad.numpy() - (1 / max(tl, 1) if reduction == "mean" else 1) * np.exp(lp), GRAD_RTOL, GRAD_ATOL)


@pytest.mark.parametrize("as_type", [list, tuple, np.array])
def test_lengths_as_sequences(as_type: Any) -> None:
    c = mixed_case(0)
    args = (mx.array(c["log_probs"]), mx.array(c["targets"]))
    expected = F.ctc_loss(*args, mx.array(c["il"]), mx.array(c["tl"]), reduction="none")
    got = F.ctc_loss(*args, as_type(c["il"].tolist()), as_type(c["tl"].tolist()), reduction="none")
    close(got, expected, 0, 0)


def test_repeated_labels_need_blanks() -> None:
    """'a a a' fits 5 frames (a _ a _ a) but not 4; 'a b c' fits 3."""
    lp = np.log(np.full((5, 1, 4), 0.25, np.float32))
    aaa, abc = np.array([[1, 1, 1]]), np.array([[1, 2, 3]])
    for targets, frames in [(aaa, 5), (aaa, 4), (abc, 3)]:
        il, tl = np.array([frames]), np.array([3])
        ours = F.ctc_loss(mx.array(lp), mx.array(targets), mx.array(il), mx.array(tl), reduction="none")
        theirs = torch.nn.functional.ctc_loss(
            torch.tensor(lp), torch.tensor(targets), torch.tensor(il), torch.tensor(tl), reduction="none"
        )
        close(ours, theirs)
    assert np.isinf(np.asarray(F.ctc_loss(mx.array(lp), mx.array(aaa), [4], [3], reduction="sum")))


def test_empty_target_is_all_blanks() -> None:
    c = case(N=2, target_lengths=[0, 0], input_lengths=[12, 5])
    ours = F.ctc_loss(mx.array(c["log_probs"]), mx.array(c["targets"]), mx.array(c["il"]), mx.array(c["tl"]), reduction="none")
    blank_lp = c["log_probs"][:, :, 0]
    close(ours, [-blank_lp[:12, 0].sum(), -blank_lp[:5, 1].sum()])


def test_long_sequence_matches_torch() -> None:
    """T = 1000 frames, S = 200 labels: values to rtol 1e-4, gradients to float32's resolution."""
    c = case(T_=1000, N=2, C=30, S=200, scale=3.0, target_lengths=[200, 150], input_lengths=[1000, 800])
    x = torch.tensor(c["logits"], dtype=torch.float64, requires_grad=True)
    out_t = torch_ctc(c, c["targets"], x.log_softmax(-1), reduction="sum")
    out_t.backward()
    value, grad = mx.value_and_grad(
        lambda a: F.ctc_loss(a - mx.logsumexp(a, axis=-1, keepdims=True), mx.array(c["targets"]), mx.array(c["il"]), mx.array(c["tl"]), reduction="sum")
    )(mx.array(c["logits"]))
    close(value, out_t.float(), 1e-4)
    close(grad, x.grad.float(), 0, 1e-6 * abs(out_t.item()), what="gradient vs float64")


@pytest.mark.parametrize("scale", [30.0, 3000.0])
def test_peaked_values_match_torch(scale: float) -> None:
    """Log-probabilities down to about -1e2 and -1e4: values to rtol 1e-4."""
    c = case(T_=40, N=4, C=6, S=10, scale=scale, seed=3, target_lengths=[10, 7, 3, 0])
    assert c["log_probs"].min() < -scale
    ours = F.ctc_loss(mx.array(c["log_probs"]), mx.array(c["targets"]), mx.array(c["il"]), mx.array(c["tl"]), reduction="none")
    theirs = torch_ctc(c, c["targets"], torch.tensor(c["log_probs"]), reduction="none")
    close(ours, theirs, 1e-4)


def test_minus_infinity_log_probs() -> None:
    """A class of probability 0 (log -inf): values as torch; the gradient there is the true 0
    (torch's kernel computes exp(-inf - -inf) = nan there), elsewhere torch's."""
    c = case(T_=10, N=3, C=5, S=3, target_lengths=[3, 3, 3])
    logits = c["logits"]
    logits[2, 0, 0] = logits[4, 1, 2] = -np.inf
    logits[:, 2, c["targets"][2, 1]] = -np.inf  # a label that never occurs: impossible
    lp = torch.tensor(logits).log_softmax(-1)
    x = lp.clone().requires_grad_(True)
    out_t = torch_ctc(c, c["targets"], x, reduction="none")
    out_t.sum().backward()
    args = (mx.array(c["targets"]), mx.array(c["il"]), mx.array(c["tl"]))
    value, grad = mx.value_and_grad(lambda a: mx.sum(F.ctc_loss(a, *args, reduction="none")))(mx.array(lp.numpy()))
    close(F.ctc_loss(mx.array(lp.numpy()), *args, reduction="none"), out_t)
    grad, expected = np.asarray(grad), (x.grad - lp.exp()).numpy()
    possible, zero_prob = np.isfinite(out_t.detach().numpy()), np.isneginf(lp.numpy())
    assert (grad[zero_prob & possible[None, :, None]] == 0).all()
    keep = ~zero_prob & possible[None, :, None]
    close(grad[keep], expected[keep], GRAD_RTOL, GRAD_ATOL)
    assert np.isnan(grad[:, ~possible]).all()


def test_float16_computes_in_float32() -> None:
    c = case()
    args = (mx.array(c["targets"]), mx.array(c["il"]), mx.array(c["tl"]))
    half = F.ctc_loss(mx.array(c["log_probs"]).astype(mx.float16), *args, reduction="none")
    assert half.dtype == mx.float16
    close(half.astype(mx.float32), F.ctc_loss(mx.array(c["log_probs"]).astype(mx.float16).astype(mx.float32), *args, reduction="none"), 1e-3)


# --- bad input ------------------------------------------------------------------------------


def _bad(**change: Any) -> dict[str, Any]:
    c = case(N=2, S=3, target_lengths=[3, 2])
    args = {"log_probs": c["log_probs"], "targets": c["targets"], "input_lengths": c["il"], "target_lengths": c["tl"]}
    args.update(change)
    return {k: mx.array(v) if isinstance(v, np.ndarray) else v for k, v in args.items()}


BAD = [
    (dict(input_lengths=[13, 12]), ValueError, "input_lengths must be in"),
    (dict(input_lengths=[-1, 12]), ValueError, "input_lengths must be in"),
    (dict(input_lengths=[12.0, 12.0]), TypeError, "input_lengths must be integral"),
    (dict(target_lengths=[-1, 2]), ValueError, "target_lengths must not be negative"),
    (dict(target_lengths=[4, 2]), ValueError, "target_lengths must be at most"),
    (dict(targets=np.array([1, 2, 3, 4])), ValueError, "concatenated targets must hold"),
    (dict(targets=np.array([[1, 0, 2], [1, 2, 3]])), ValueError, "must not contain the blank"),
    (dict(targets=np.array([[1, 5, 2], [1, 2, 3]])), IndexError, r"targets holds label 5, outside \[0, 5\)"),
    (dict(targets=np.array([[1, -1, 2], [1, 2, 3]])), IndexError, "targets holds label -1"),
    (dict(targets=np.ones((3, 3), np.int64)), ValueError, "one row per example"),
    (dict(targets=np.ones((2, 3, 1), np.int64)), ValueError, "padded .N, S. or concatenated"),
    (dict(input_lengths=[12, 12, 12]), ValueError, "input_lengths must have one entry per example"),
    (dict(target_lengths=[3]), ValueError, "target_lengths must have one entry per example"),
    (dict(log_probs=np.zeros(12, np.float32)), ValueError, r"log_probs must have shape \(T, N, C\) or \(T, C\)"),
    (dict(log_probs=np.zeros((12, 2, 5, 1), np.float32)), ValueError, "log_probs must have shape"),
    (dict(log_probs=np.zeros((12, 2, 5), np.int32)), TypeError, "log_probs must be a floating-point array"),
    (dict(log_probs=np.zeros((0, 2, 5), np.float32), input_lengths=[0, 0], target_lengths=[0, 0]), ValueError, "must not be empty"),
    (dict(blank=5), ValueError, r"blank must be in \[0, C\)"),
    (dict(blank=-1), ValueError, r"blank must be in \[0, C\)"),
    (dict(reduction="batchmean"), ValueError, "reduction must be one of"),
]


@pytest.mark.parametrize("change, error, match", BAD)
def test_bad_input(change: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        F.ctc_loss(**_bad(**change))


def test_labels_past_the_target_length_are_ignored() -> None:
    c = case(N=2, S=3, target_lengths=[1, 3])
    padded = c["targets"].copy()
    padded[0, 1:] = [-7, 99]  # torch ignores them as well
    args = (mx.array(c["il"]), mx.array(c["tl"]))
    close(
        F.ctc_loss(mx.array(c["log_probs"]), mx.array(padded), *args, reduction="none"),
        F.ctc_loss(mx.array(c["log_probs"]), mx.array(c["targets"]), *args, reduction="none"),
        0,
        0,
    )


# --- the per-example loss and the transforms ----------------------------------------------


def per_example(blank: int = 0) -> tuple[mx.array, ...]:
    """The mixed batch, batch-major: log_probs (N, T, C), targets (N, S), lengths (N,)."""
    c = mixed_case(blank)
    return mx.array(np.moveaxis(c["log_probs"], 1, 0)), mx.array(c["targets"]), mx.array(c["il"]), mx.array(c["tl"])


def loop(fn: Any, *args: mx.array) -> mx.array:
    return mx.stack([fn(*(a[i] for a in args)) for i in range(args[0].shape[0])])


def test_reduce_equals_loop_and_functional() -> None:
    args = per_example(blank=3)
    expected = loop(lambda *a: lossfn.ctc_loss(*a, blank=3), *args)
    close(T.reduce(lossfn.ctc_loss, "none")(*args, blank=3), expected, 0, 0)
    functional = F.ctc_loss(mx.moveaxis(args[0], 0, 1), *args[1:], blank=3, reduction="none")
    close(functional, expected, 0, 0)
    assert np.isinf(np.asarray(expected)[4]) and np.asarray(expected)[2] > 0


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_per_example_gradients_equal_loop(zero_infinity: bool) -> None:
    args = per_example()
    grad = mx.grad(lambda *a: lossfn.ctc_loss(*a, zero_infinity=zero_infinity))
    expected = loop(grad, *args)
    close(mx.vmap(grad)(*args), expected, 0, 1e-6)
    summed = mx.grad(lambda lp: T.reduce(lossfn.ctc_loss, "sum")(lp, *args[1:], zero_infinity=zero_infinity))
    close(summed(args[0]), expected, 0, 1e-6)
    dead = np.asarray(expected)[4]
    assert (dead == 0).all() if zero_infinity else np.isnan(dead[:4]).all() and (dead[4:] == 0).all()


def test_vmap_over_a_further_axis() -> None:
    args = per_example()
    stacked = mx.stack([args[0], args[0][::-1]])  # two batches: the examples reversed in the second
    by_batch = mx.vmap(lambda lp: T.reduce(lossfn.ctc_loss, "none")(lp, *args[1:]), in_axes=0)(stacked)
    close(by_batch[0], T.reduce(lossfn.ctc_loss, "none")(args[0], *args[1:]), 0, 0)
    close(by_batch[1], T.reduce(lossfn.ctc_loss, "none")(args[0][::-1], *args[1:]), 0, 0)
    grads = mx.vmap(mx.grad(lambda lp: T.reduce(lossfn.ctc_loss, "sum")(lp, *args[1:])))(stacked)
    close(grads[1], mx.grad(lambda lp: T.reduce(lossfn.ctc_loss, "sum")(lp, *args[1:]))(args[0][::-1]), 0, 1e-6)


def test_compiled_equals_eager() -> None:
    args = per_example()

    def total(lp: mx.array) -> mx.array:
        return T.reduce(lossfn.ctc_loss, "sum")(lp, *args[1:], zero_infinity=True)

    eager = mx.value_and_grad(total)(args[0])
    compiled = mx.compile(mx.value_and_grad(total))(args[0])
    for a, b in zip(compiled, eager):
        close(a, b, 1e-6, 1e-6)


def test_jvp_is_the_gradient_times_the_tangent() -> None:
    lp, tg, il, tl = (a[0] for a in per_example())
    tangent = mx.array(cotangent(tuple(lp.shape)))
    _, (jvp,) = mx.jvp(lambda a: lossfn.ctc_loss(a, tg, il, tl), [lp], [tangent])
    close(jvp, mx.sum(mx.grad(lossfn.ctc_loss)(lp, tg, il, tl) * tangent), 1e-5, 1e-5)


def test_autodiff_uses_the_custom_vjp_and_the_eager_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every order of grad, vmap and compile goes through the custom vjp; under grad (the
    usual training step) the scan runs outside the trace (NumPy's on the CPU, compiled steps
    on a GPU), and only a user's compile traces it inline."""
    calls = {"vjp": 0, "eager": 0, "inline": 0}

    def counted(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            calls[name] += 1
            return fn(*a, **k)

        return wrapper

    def solve(inputs: Any, zero_infinity: bool, engine: Any, gradients: bool) -> Any:
        calls["inline" if engine is K._INLINE else "eager"] += 1
        return original_solve(inputs, zero_infinity, engine, gradients)

    original_solve = K._solve
    monkeypatch.setattr(K, "_vjp", counted("vjp", K._vjp))
    monkeypatch.setattr(K, "_solve", solve)
    monkeypatch.setitem(K._CORE, False, K._make_core(False))
    args = per_example()
    reduced = T.reduce(lossfn.ctc_loss, "sum")
    orders = {
        "grad": lambda: mx.grad(lambda lp: F.ctc_loss(mx.moveaxis(lp, 0, 1), *args[1:], reduction="sum"))(args[0]),
        "grad(vmap)": lambda: mx.grad(lambda lp: reduced(lp, *args[1:]))(args[0]),
        "vmap(grad)": lambda: mx.vmap(mx.grad(lossfn.ctc_loss))(*args),
        "compile(grad)": lambda: mx.compile(mx.grad(lambda lp: reduced(lp, *args[1:])))(args[0]),
    }
    results = {}
    for name, run in orders.items():
        calls.update(vjp=0, eager=0, inline=0)
        results[name] = run()
        mx.eval(results[name])
        assert calls["vjp"] >= 1, name
        if name == "compile(grad)":
            assert calls["inline"] > 0, name
        else:  # vmap traces the scan inline too, and throws it away for its rule
            assert calls["eager"] > 0 and (calls["inline"] == 0 or name == "vmap(grad)"), name
    # Alike to float32 rounding: compile traces the scan with mx.logaddexp, the others run
    # NumPy's exp and log (the two agree with float64 alike: test_lse_is_as_accurate_as_mlx).
    for name, grad in results.items():
        close(grad, results["grad(vmap)"], 1e-5, 1e-6, what=name)


def test_lse_is_as_accurate_as_mlx() -> None:
    """The NumPy scan's log-add-exp is as close to float64 as the compiled MLX step's."""
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=1 << 16).astype(np.float32) * 4 for _ in range(2))
    exact = np.logaddexp(a.astype(np.float64), b.astype(np.float64))
    out = np.empty_like(a)
    K._host_lse((np.empty_like(a), np.empty_like(a)))(a, b, out)
    ours, mlx = np.abs(out - exact), np.abs(np.asarray(mx.compile(K._lse)(mx.array(a), mx.array(b))) - exact)
    assert ours.max() <= 1.5 * mlx.max() and ours.mean() <= 1.5 * mlx.mean(), (ours.max(), mlx.max())
    assert ours.max() < 1e-6
    # The scan clamps log 0 to NEG (never -inf): lse(NEG, NEG) is NEG, lse(NEG, x) is x.
    special, other = np.array([K.NEG, K.NEG, 2.5], np.float32), np.array([K.NEG, 2.5, K.NEG], np.float32)
    out = np.empty(3, np.float32)
    K._host_lse((np.empty(3, np.float32), np.empty(3, np.float32)))(special, other, out)
    np.testing.assert_array_equal(out, np.array([K.NEG, 2.5, 2.5], np.float32))


@pytest.mark.parametrize("N, S, T_", [(6, 5, 14), (3, 1, 4), (4, 8, 30)])
def test_numpy_scan_equals_the_compiled_steps(N: int, S: int, T_: int) -> None:
    """The two engines of the alpha recursion agree on every state: NumPy's (the CPU, outside
    traces) and the compiled MLX steps (a GPU), with repeated labels and NEG emissions."""
    rng = np.random.default_rng(N + S)
    labels = rng.integers(1, 4, size=(N, S)).astype(np.int32)  # few classes: many repeats
    log_probs = np.log(rng.dirichlet(np.ones(5), size=(T_, N))).astype(np.float32)
    log_probs[2, 0, :] = K.NEG  # a frame that no path crosses
    lp, lab = mx.array(log_probs), mx.array(labels)
    blank_emit, label_emit = K._emissions(lp, lab, mx.array(0, dtype=mx.int32))
    for host, steps in zip(K._HOST.alphas(blank_emit, label_emit, lab), K._COMPILED.alphas(blank_emit, label_emit, lab)):
        host, steps = np.asarray(host), np.asarray(steps)
        reachable = steps > K.IMPOSSIBLE
        np.testing.assert_array_equal(host > K.IMPOSSIBLE, reachable)
        np.testing.assert_allclose(host[reachable], steps[reachable], rtol=2e-6, atol=2e-6)


def test_numpy_posteriors_equal_the_compiled_steps() -> None:
    """NumPy's posteriors (beta from the problem flipped whole) equal the compiled steps' (beta
    from each example reversed in place), for shorter inputs, shorter and empty targets, an
    impossible target, and nan in the frames past an input, which neither reads."""
    rng = np.random.default_rng(3)
    T_, N, S = 9, 6, 4
    labels = rng.integers(1, 4, size=(N, S)).astype(np.int32)
    log_probs = np.log(rng.dirichlet(np.ones(5), size=(T_, N))).astype(np.float32)
    il, tl = np.array([9, 6, 9, 3, 1, 0]), np.array([4, 2, 0, 3, 4, 0])  # example 4: impossible
    log_probs[6:, 1] = np.nan
    lp, lab, il, tl = mx.array(log_probs), mx.array(labels), mx.array(il, mx.int32), mx.array(tl, mx.int32)
    blank_emit, label_emit = (mx.maximum(e, K.NEG) for e in K._emissions(lp, lab, mx.array(0, dtype=mx.int32)))
    host = K._HOST.posteriors(blank_emit, label_emit, lab, il, tl)
    steps = K._COMPILED.posteriors(blank_emit, label_emit, lab, il, tl)
    possible = np.asarray(steps[0]) > K.IMPOSSIBLE  # an impossible target's posteriors are never used
    assert possible.tolist() == [True, True, True, False, False, True]
    np.testing.assert_array_equal(np.asarray(host[0]) > K.IMPOSSIBLE, possible)
    close(np.asarray(host[0])[possible], np.asarray(steps[0])[possible], 1e-6, 1e-6, what="log p")
    for name, a, b in zip(("blank", "labels"), host[1:], steps[1:]):
        a, b = np.asarray(a)[:, possible], np.asarray(b)[:, possible]
        assert not np.isnan(a).any()
        close(a, b, 1e-5, 1e-6, what=name)


def loss_and_grad(c: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """F.ctc_loss per example and the gradient of their sum, as NumPy."""
    targets, il, tl = (mx.array(c[k]) for k in ("targets", "il", "tl"))
    value, grad = mx.value_and_grad(lambda x: mx.sum(F.ctc_loss(x, targets, il, tl, reduction="none")))(
        mx.array(c["log_probs"])
    )
    per_example = F.ctc_loss(mx.array(c["log_probs"]), targets, il, tl, reduction="none")
    return np.array(per_example), np.array(grad)


def expected_by_torch(c: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    x = torch.tensor(c["log_probs"], requires_grad=True)
    loss = torch_ctc(c, c["targets"], x, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), x)
    live = (np.arange(c["log_probs"].shape[0])[:, None] < c["il"][None, :])[..., None]
    return loss.detach().numpy(), grad.numpy() - live * np.exp(c["log_probs"])  # torch's exp(lp) removed


def test_kept_scan_arrays_never_reach_the_user() -> None:
    """The scan's arrays are kept for the next call of the same shape: what one call returned
    is unchanged by the next, and a new shape, or one over the limit, is scanned right."""
    first, other, longer = case(seed=1, **MIXED), case(seed=2, **MIXED), case(T_=20, seed=3)
    out = loss_and_grad(first)
    kept = [a.copy() for a in out]
    loss_and_grad(other)  # same shape: the same kept arrays
    for a, b in zip(out, kept):
        np.testing.assert_array_equal(a, b)
    for c in (longer, first):  # a new shape, then the first again
        for ours, theirs in zip(loss_and_grad(c), expected_by_torch(c)):
            close(ours, theirs, GRAD_RTOL, GRAD_ATOL)


def test_scans_over_the_workspace_limit_are_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(K, "WORKSPACE_LIMIT", 0)
    c = case(seed=4, **MIXED)
    for _ in range(2):
        for ours, theirs in zip(loss_and_grad(c), expected_by_torch(c)):
            close(ours, theirs, GRAD_RTOL, GRAD_ATOL)
        assert getattr(K._KEPT, "scan", None) is None


def test_threads_scan_apart() -> None:
    """Each thread keeps its own scan arrays: two threads running the NumPy scan at once (one
    shape, different data) get what each gets alone. (NumPy alone: the kept arrays are its.)"""
    import threading

    def problem(seed: int) -> tuple[np.ndarray, ...]:
        c = case(seed=seed, **MIXED)
        lab = np.ascontiguousarray(c["targets"].T)
        le = np.ascontiguousarray(c["log_probs"][:, np.arange(lab.shape[1])[None, :], lab])
        return c["log_probs"][:, :, 0], le, lab, c["il"], c["tl"]

    problems = [problem(5), problem(6)]
    alone = [K._host_posterior_scan(*p) for p in problems]
    results: list[list[tuple[np.ndarray, ...]]] = [[], []]
    barrier = threading.Barrier(2)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(50):
            results[i].append(K._host_posterior_scan(*problems[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert len(results[i]) == 50
        for out in results[i]:
            for a, b in zip(out, alone[i]):
                np.testing.assert_array_equal(a, b)


def test_checked_preparation_equals_the_full_one() -> None:
    """Where lossfn.functional has raised on every bad length and label (``checked``), the
    preparation skips the clamps and range tests, and gives what the full one gives: padding
    slots past a target hold anything, and a nan frame still makes its example invalid."""
    c = case(seed=7, **MIXED)
    targets = c["targets"].astype(np.int32)
    targets[2, :] = [-7, 99, 3, 0, 5, 1]  # example 2's target is empty: all of it is padding
    log_probs = c["log_probs"].copy()
    log_probs[3, 1, 2] = np.nan  # a live frame of example 1
    inputs = (log_probs, targets, c["il"].astype(np.int32), c["tl"].astype(np.int32), np.array(0, np.int32))
    full, checked = K._prepared(np, *inputs), K._prepared(np, *inputs, checked=True)
    for a, b in zip(full, checked):
        np.testing.assert_array_equal(a, b)
    assert full[-1].tolist() == [True, False, True, True, True]


def test_compiling_through_warns_on_the_cpu() -> None:
    """A user's mx.compile around F.ctc_loss (and nn.CTCLoss) warns, once per trace, with the
    remedy; eager calls and mx.grad do not."""
    c = case()
    targets, il, tl = (mx.array(c[k]) for k in ("targets", "il", "tl"))
    lp = mx.array(c["log_probs"])

    def loss(x: mx.array) -> mx.array:
        return F.ctc_loss(x, targets, il, tl)

    with pytest.warns(lossfn.CompileThroughWarning, match="Compile around ctc_loss, not through it") as record:
        compiled = mx.compile(mx.value_and_grad(loss))
        value, grad = compiled(lp)
        compiled(lp)  # traced once: one warning
    assert len(record) == 1 and "T = 12 frames" in str(record[0].message)
    assert "transforms.value_and_grad_around(model, loss)" in str(record[0].message)  # the remedy, by name
    eager_value, eager_grad = mx.value_and_grad(loss)(lp)
    close(value, eager_value, 1e-6, 1e-6)
    close(grad, eager_grad, 1e-5, 1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mx.eval(loss(lp), mx.grad(loss)(lp), lnn.CTCLoss()(lp, targets, il, tl))


def test_module_matches_functional() -> None:
    c = mixed_case(3)
    loss = lnn.CTCLoss(blank=3, reduction="sum", zero_infinity=True)
    assert repr(loss) == "CTCLoss(blank=3, reduction='sum', zero_infinity=True)"
    args = (mx.array(c["log_probs"]), mx.array(c["targets"]), c["il"].tolist(), c["tl"].tolist())
    close(loss(*args), F.ctc_loss(*args, blank=3, reduction="sum", zero_infinity=True), 0, 0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        lnn.CTCLoss(reduction="batchmean")
