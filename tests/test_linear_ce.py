"""Cross-entropy at language-model scale: ``linear_cross_entropy`` (tiled), masks, z-loss, soft-capping.

Against PyTorch 2.13's ``linear_cross_entropy`` (its reference path and its chunked path), the
unfused loss at a 128k vocabulary, explicit formulas, and mlx-lm's masked token mean.
"""

from __future__ import annotations

import warnings

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from oracle import assert_close, check_against_torch, rng

import lossfn
import lossfn.functional as F
import lossfn.nn as LN
from transforms import batched, ignore_index, masked, reduce, smooth_labels, weighted

N, D, V = 23, 8, 300
TILE = 256  # 2 tokens x 128 classes per tile: 12 x 3 tiles


def data(key, n=N, d=D, v=V):
    r = rng("linear-ce", key)
    h = r.normal(size=(n, d)).astype(np.float32)
    W = (r.normal(size=(v, d)) / np.sqrt(d) * 3).astype(np.float32)
    b = r.normal(size=v).astype(np.float32)
    y = r.integers(0, v, size=n).astype(np.int64)
    y[::5] = -100
    p = r.dirichlet(np.ones(v), size=n).astype(np.float32)
    w = r.uniform(0.5, 2, size=v).astype(np.float32)
    return h, W, b, y, p, w


def arrays_of(keywords, array):
    return {k: array(v) if isinstance(v, np.ndarray) else v for k, v in keywords.items()}


def torch_options(label_smoothing, probabilities):
    """PyTorch's chunked path where it has one; elsewhere it warns and takes its reference path."""
    return None if label_smoothing or probabilities else torch.nn.LinearCrossEntropyOptions(batch_chunk_size=4)


@pytest.mark.parametrize("tiled", [False, True], ids=["reference", "tiled"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("class_weight", [False, True], ids=["", "weight"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("target", ["index", "probabilities"])
def test_matches_torch_in_values_and_gradients(tiled, reduction, class_weight, label_smoothing, target):
    h, W, b, y, p, w = data((reduction, class_weight, label_smoothing, target))
    t = p if target == "probabilities" else y
    options = LN.LinearCrossEntropyOptions(tile=TILE) if tiled else None
    keywords = dict(reduction=reduction, label_smoothing=label_smoothing)
    theirs_options = torch_options(label_smoothing, target == "probabilities") if tiled else None
    check_against_torch(
        lambda h, W, t, b, w: F.linear_cross_entropy(h, W, t, linear_bias=b, weight=w, options=options, **keywords),
        lambda h, W, t, b, w: TF.linear_cross_entropy(h, W, t, linear_bias=b, weight=w, options=theirs_options, **keywords),
        [h, W, t, b, w if class_weight else None],
        wrt=(0, 1, 3),
        # gradients of 'sum' and 'none' are O(1) and some elements cancel to 1e-3: both sides
        # round there at 1e-6 absolute (against float64, see the next test)
        grad_atol=1e-6 if reduction == "mean" else 1e-5,
    )


def test_gradient_error_against_float64_is_within_1_5x_of_torchs():
    h, W, b, y, _, _ = data(("none", False, 0.0, "index"))
    r = rng("linear-ce", "cotangent").uniform(0.5, 1.5, size=N)

    def theirs(dtype, options=None):
        th = torch.tensor(h, dtype=dtype, requires_grad=True)
        out = TF.linear_cross_entropy(th, torch.tensor(W, dtype=dtype), torch.tensor(y), linear_bias=torch.tensor(b, dtype=dtype),
                                      reduction="none", options=options)
        (out * torch.tensor(r, dtype=dtype)).sum().backward()
        return th.grad.double().numpy()

    exact = theirs(torch.float64)
    torch_error = max(np.abs(theirs(torch.float32) - exact).max(), np.abs(theirs(torch.float32, torch_options(0, False)) - exact).max())
    for options in [None, LN.LinearCrossEntropyOptions(tile=TILE)]:
        ours = mx.grad(lambda x: mx.sum(F.linear_cross_entropy(x, mx.array(W), mx.array(y), linear_bias=mx.array(b), reduction="none",
                                                                 options=options) * mx.array(r.astype(np.float32))))(mx.array(h))
        # Within 1.5x of torch's float32 error: which is smaller depends on the machine's matmul
        # (AMD EPYC: ours 1.6e-6, torch 2.0e-6; Intel Xeon, 2026-12-03: ours 2.7e-6, torch 2.4e-6).
        assert np.abs(np.asarray(ours) - exact).max() <= 1.5 * torch_error


@pytest.mark.parametrize("tiled", [False, True], ids=["reference", "tiled"])
@pytest.mark.parametrize("case", ["unbatched index", "unbatched probabilities", "no bias", "ignore_index 7"])
def test_matches_torch_unbatched_without_bias_and_with_an_ignore_index(tiled, case):
    h, W, b, y, p, w = data(case)
    y[y == -100] = 7 if case == "ignore_index 7" else -100
    options = LN.LinearCrossEntropyOptions(tile=TILE) if tiled else None
    if case.startswith("unbatched"):
        inputs, keywords = [h[0], W, (p if "prob" in case else y)[0], b], {}
    elif case == "no bias":
        inputs, keywords = [h, W, y, None], {"weight": w}
    else:
        inputs, keywords = [h, W, y, b], {"ignore_index": 7}
    wrt = (0, 1) if inputs[3] is None else (0, 1, 3)
    check_against_torch(
        lambda h, W, t, b: F.linear_cross_entropy(h, W, t, linear_bias=b, options=options, **arrays_of(keywords, mx.array)),
        lambda h, W, t, b: TF.linear_cross_entropy(h, W, t, linear_bias=b, **arrays_of(keywords, torch.tensor)),
        inputs,
        wrt=wrt,
    )


def test_accepts_torchs_options_object_and_maps_its_chunk_size():
    h, W, b, y, _, _ = data("torch options")
    ours = F.linear_cross_entropy(mx.array(h), mx.array(W), mx.array(y), options=torch.nn.LinearCrossEntropyOptions(batch_chunk_size=3))
    theirs = TF.linear_cross_entropy(torch.tensor(h), torch.tensor(W), torch.tensor(y))
    assert_close(ours, theirs)
    tile_of = F._linear.tile_of
    assert tile_of(torch.nn.LinearCrossEntropyOptions(batch_chunk_size=3), N, D, V) == 3 * V
    # PyTorch's aspect ratio: next_pow2(ceil(1024 / ceil(16384 / 128))) = 8 tokens, /2 for ':2'
    assert tile_of(LN.LinearCrossEntropyOptions(chunking_method="aspect_ratio:2"), 1024, 128, 16384) == 4 * 16384
    assert tile_of(LN.LinearCrossEntropyOptions(tile=5000), N, D, V) == 5000
    with pytest.raises(ValueError, match="not both"):
        tile_of(LN.LinearCrossEntropyOptions(tile=5000, batch_chunk_size=2), N, D, V)
    for bad in [dict(acc_policy="fast"), dict(chunking_method="square"), dict(batch_chunk_size=0), dict(tile=-1)]:
        with pytest.raises(ValueError):
            LN.LinearCrossEntropyOptions(**bad)


def test_k_dimensional_out_features_match_torch_and_options_warn_like_torch():
    r = rng("linear-ce", "k-dim")
    h = r.normal(size=(5, D)).astype(np.float32)
    W = r.normal(size=(7, 3, D)).astype(np.float32)
    b = r.normal(size=(7, 3)).astype(np.float32)
    y = r.integers(0, 7, size=(5, 3)).astype(np.int64)
    check_against_torch(
        lambda h, W, y, b: F.linear_cross_entropy(h, W, y, linear_bias=b, reduction="none"),
        lambda h, W, y, b: TF.linear_cross_entropy(h, W, y, linear_bias=b, reduction="none"),
        [h, W, y, b],
        wrt=(0, 1, 3),
    )
    with pytest.warns(UserWarning, match="options ignored"):
        ours = F.linear_cross_entropy(mx.array(h), mx.array(W), mx.array(y), options=LN.LinearCrossEntropyOptions())
    with pytest.warns(UserWarning, match="options"):
        theirs = TF.linear_cross_entropy(torch.tensor(h), torch.tensor(W), torch.tensor(y), options=torch.nn.LinearCrossEntropyOptions())
    assert_close(ours, theirs)


@pytest.mark.parametrize("tiled", [False, True])
def test_module_owns_its_linear_layer_and_matches_torchs(tiled):
    h, _, _, y, _, w = data("module")
    ours = LN.LinearCrossEntropyLoss(D, V, bias=True, weight=mx.array(w), label_smoothing=0.1,
                                     options=LN.LinearCrossEntropyOptions(tile=TILE) if tiled else None)
    theirs = torch.nn.LinearCrossEntropyLoss(D, V, bias=True, weight=torch.tensor(w), label_smoothing=0.1)
    with torch.no_grad():
        theirs.linear.weight.copy_(torch.tensor(np.asarray(ours.linear.weight)))
        theirs.linear.bias.copy_(torch.tensor(np.asarray(ours.linear.bias)))
    assert set(ours.trainable_parameters()) == {"linear"}  # the class weight is a buffer
    value, grads = nn.value_and_grad(ours, ours)(mx.array(h), mx.array(y))
    expected = theirs(torch.tensor(h), torch.tensor(y))
    expected.backward()
    assert_close(value, expected)
    assert_close(grads["linear"]["weight"], theirs.linear.weight.grad, what="dW")
    assert_close(grads["linear"]["bias"], theirs.linear.bias.grad, what="db")


def test_module_constructor_raises_like_torch():
    for keywords, match in [({"weight": np.ones(3, np.float32)}, "one entry per class"), ({"label_smoothing": 2.0}, "label_smoothing")]:
        with pytest.raises(ValueError, match=match):
            LN.LinearCrossEntropyLoss(D, V, **arrays_of(keywords, mx.array))
        with pytest.raises(RuntimeError):
            torch.nn.LinearCrossEntropyLoss(D, V, **arrays_of(keywords, torch.tensor))


def test_module_with_out_features_matches_torch():
    r = rng("linear-ce", "module k-dim")
    ours = LN.LinearCrossEntropyLoss(D, 7, out_features=(3,), reduction="sum")
    theirs = torch.nn.LinearCrossEntropyLoss(D, 7, out_features=(3,), reduction="sum")
    with torch.no_grad():
        theirs.linear.weight.copy_(torch.tensor(np.asarray(ours.linear.weight)))
    h, y = r.normal(size=(4, D)).astype(np.float32), r.integers(0, 7, size=(4, 3))
    assert_close(ours(mx.array(h), mx.array(y)), theirs(torch.tensor(h), torch.tensor(y)))


# --- accuracy ---------------------------------------------------------------------------------


def unfused(h, W, y, **keywords):
    return reduce(lossfn.cross_entropy, "none")(h @ W.T, y, **keywords)


def test_tiled_equals_unfused_to_1e_6_at_a_128k_vocabulary():
    r = rng("linear-ce", "128k")
    n, d, v = 48, 32, 131072
    h = mx.array(r.normal(size=(n, d)).astype(np.float32))
    W = mx.array((r.normal(size=(v, d)) * 0.5).astype(np.float32))
    y = mx.array(r.integers(0, v, size=n).astype(np.int32))
    tiled = batched(lossfn.linear_cross_entropy)(h, W, y)
    assert_close(tiled, unfused(h, W, y), rtol=1e-6, atol=0)
    f64 = np.asarray(h).astype(np.float64) @ np.asarray(W).astype(np.float64).T
    top = f64.max(1)
    exact = top + np.log(np.exp(f64 - top[:, None]).sum(1)) - f64[np.arange(n), np.asarray(y)]
    np.testing.assert_allclose(np.asarray(tiled), exact, rtol=1e-5)


def test_bfloat16_tiled_is_at_least_as_accurate_as_unfused_bfloat16():
    r = rng("linear-ce", "bf16")
    n, d, v = 64, 64, 8192
    h = mx.array(r.normal(size=(n, d)).astype(np.float32)).astype(mx.bfloat16)
    W = mx.array((r.normal(size=(v, d)) * 0.3).astype(np.float32)).astype(mx.bfloat16)
    y = mx.array(r.integers(0, v, size=n).astype(np.int32))
    reference = unfused(h.astype(mx.float32), W.astype(mx.float32), y)
    tiled = reduce(lossfn.linear_cross_entropy, "none")(h, W, y, tile=4096)
    dense = unfused(h, W, y)
    assert tiled.dtype == dense.dtype == mx.bfloat16
    error = {name: float(mx.max(mx.abs(x.astype(mx.float32) - reference) / reference)) for name, x in [("tiled", tiled), ("dense", dense)]}
    assert error["tiled"] <= error["dense"], error
    # gradients of the mean wrt h, against the float32 reference
    g_ref = mx.grad(lambda h: mx.mean(unfused(h, W.astype(mx.float32), y)))(h.astype(mx.float32))
    g_tiled = mx.grad(lambda h: reduce(lossfn.linear_cross_entropy)(h, W, y, tile=4096))(h)
    g_dense = mx.grad(lambda h: mx.mean(unfused(h, W, y)))(h)
    assert g_tiled.dtype == mx.bfloat16
    g_error = {name: float(mx.max(mx.abs(g.astype(mx.float32) - g_ref))) for name, g in [("tiled", g_tiled), ("dense", g_dense)]}
    assert g_error["tiled"] <= g_error["dense"], g_error


def test_peak_memory_of_the_tiled_pass_is_a_few_tiles():
    r = rng("linear-ce", "memory")
    n, d, v = 512, 32, 32768
    h = mx.array(r.normal(size=(n, d)).astype(np.float32))
    W = mx.array((r.normal(size=(v, d)) * 0.3).astype(np.float32))
    y = mx.array(r.integers(0, v, size=n).astype(np.int32))
    mx.eval(h, W, y)
    logits_bytes = n * v * 4
    inputs_and_grads = 2 * (h.nbytes + W.nbytes)

    def peak(loss):
        step = mx.value_and_grad(loss, argnums=(0, 1))
        mx.synchronize()
        mx.clear_cache()
        mx.reset_peak_memory()
        base = mx.get_active_memory()
        mx.eval(step(h, W))
        return mx.get_peak_memory() - base - inputs_and_grads

    tiled = peak(lambda h, W: reduce(lossfn.linear_cross_entropy)(h, W, y, tile=2**18))
    capped = peak(lambda h, W: reduce(lossfn.linear_cross_entropy)(h, W, y, tile=2**18, z_loss=1e-4, softcap=30.0))
    dense = peak(lambda h, W: reduce(lossfn.cross_entropy)(h @ W.T, y))
    assert dense >= 2 * logits_bytes  # the logits and their gradient
    assert max(tiled, capped) <= dense / 8, (tiled, capped, dense)


# --- token losses as mlx-lm holds them -----------------------------------------------------


def tokens(key, b=3, t=7, c=11):
    r = rng("tokens", key)
    logits = mx.array(r.normal(size=(b, t, c)).astype(np.float32) * 2)
    targets = mx.array(r.integers(0, c, size=(b, t)).astype(np.int32))
    mask = mx.array(r.uniform(size=(b, t)) < 0.6)
    return logits, targets, mask


def test_masked_mean_equals_ignore_index_and_mlx_lms_formula_on_b_t_v():
    logits, targets, mask = tokens("mask")
    ce = nn.losses.cross_entropy(logits, targets)
    mlx_lm = mx.sum(ce * mask) / mx.sum(mask)
    ours = reduce(masked(lossfn.cross_entropy))(logits, targets, mask)
    ignored = reduce(ignore_index(lossfn.cross_entropy))(logits, mx.where(mask, targets, -100))
    assert_close(ours, mlx_lm)
    assert_close(ignored, ours)
    g_masked = mx.grad(lambda x: reduce(masked(lossfn.cross_entropy))(x, targets, mask))(logits)
    g_ignored = mx.grad(lambda x: reduce(ignore_index(lossfn.cross_entropy))(x, mx.where(mask, targets, -100)))(logits)
    g_mlx_lm = mx.grad(lambda x: mx.sum(nn.losses.cross_entropy(x, targets) * mask) / mx.sum(mask))(logits)
    assert_close(g_masked, g_mlx_lm)
    assert_close(g_ignored, g_masked)
    # a float mask weighs tokens: sum(m l) / sum(m)
    soft = mask * 0.5 + 0.25
    assert_close(reduce(masked(lossfn.cross_entropy))(logits, targets, soft), mx.sum(ce * soft) / mx.sum(soft))


def test_masked_zeroes_garbage_and_composes_with_weighted_and_linear_cross_entropy():
    logits, targets, mask = tokens("garbage")
    padding = mx.where(mask[..., None], logits, 1e30)
    padded_targets = mx.where(mask, targets, mx.array([[-1], [10**6], [-100]]))
    loss = lambda x: reduce(masked(lossfn.cross_entropy))(x, padded_targets, mask)  # noqa: E731
    value, grad = mx.value_and_grad(loss)(padding)
    assert_close(value, reduce(masked(lossfn.cross_entropy))(logits, targets, mask))
    assert np.isfinite(np.asarray(grad)).all() and not np.asarray(grad)[~np.asarray(mask)].any()
    w = mx.linspace(0.5, 2, 11)
    ours = reduce(masked(weighted(lossfn.cross_entropy)))(logits, targets, w, mask)
    w_y = w[targets]
    ce = reduce(lossfn.cross_entropy, "none")(logits, targets)
    assert_close(ours, mx.sum(ce * w_y * mask) / mx.sum(w_y * mask))
    r = rng("tokens", "hidden")
    h = mx.array(r.normal(size=(3, 7, 5)).astype(np.float32))
    W = mx.array(r.normal(size=(11, 5)).astype(np.float32))
    assert_close(reduce(masked(lossfn.linear_cross_entropy))(h, W, targets, mask), reduce(masked(lossfn.cross_entropy))(h @ W.T, targets, mask))


def test_functional_cross_entropy_says_where_the_class_axis_is():
    logits, targets, _ = tokens("error")
    with pytest.raises(ValueError, match=r"class axis is dimension 1.*mx.moveaxis\(input, -1, 1\)"):
        F.cross_entropy(logits, targets)
    assert_close(F.cross_entropy(mx.moveaxis(logits, -1, 1), targets), reduce(lossfn.cross_entropy)(logits, targets))


# --- z-loss, soft-capping, the log-partition ---------------------------------------------------


def explicit(z, y, z_loss=0.0, cap=None):
    z = z if cap is None else cap * np.tanh(z / cap)
    top = z.max(-1, keepdims=True)
    lse = (top + np.log(np.exp(z - top).sum(-1, keepdims=True)))[..., 0]
    return lse - np.take_along_axis(z, y[..., None], -1)[..., 0] + z_loss * lse**2, lse


@pytest.mark.parametrize("z_loss, cap", [(1e-2, None), (0.0, 3.0), (1e-2, 3.0)])
def test_z_loss_and_softcap_match_their_formulas_in_both_losses(z_loss, cap):
    r = rng("z-loss", z_loss, cap)
    h = r.normal(size=(N, D)).astype(np.float64)
    W = (r.normal(size=(V, D)) * 2).astype(np.float64)
    y = r.integers(0, V, size=N)
    expected, expected_lse = explicit(h @ W.T, y, z_loss, cap)
    H, Wm, Y = mx.array(h.astype(np.float32)), mx.array(W.astype(np.float32)), mx.array(y.astype(np.int32))
    keywords = dict(z_loss=z_loss, softcap=cap, return_lse=True)
    for name, (loss, lse) in {
        "cross_entropy": batched(lossfn.cross_entropy)(H @ Wm.T, Y, **keywords),
        "linear_cross_entropy": batched(lossfn.linear_cross_entropy)(H, Wm, Y, tile=TILE, **keywords),
    }.items():
        np.testing.assert_allclose(np.asarray(loss), expected, rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(np.asarray(lse), expected_lse, rtol=1e-5, err_msg=name)

    # gradients: the tiled vjp against autodiff of the unfused loss
    def mean_of(loss):
        return lambda h, W: reduce(loss)(h, W, Y, z_loss=z_loss, softcap=cap, tile=TILE)

    dense = lambda h, W, y, **k: lossfn.cross_entropy(W @ h, y, z_loss=k["z_loss"], softcap=k["softcap"])  # noqa: E731
    g_tiled = mx.grad(mean_of(lossfn.linear_cross_entropy), argnums=(0, 1))(H, Wm)
    g_dense = mx.grad(lambda h, W: mx.mean(mx.vmap(lambda x, t: dense(x, W, t, z_loss=z_loss, softcap=cap))(h, Y)), argnums=(0, 1))(H, Wm)
    for a, b in zip(g_tiled, g_dense):
        assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_weighted_and_smoothed_in_either_order_and_under_compile_and_vmap_of_grad():
    h, W, b, y, _, w = data("orders")
    H, Wm, B_, Y, Wt = (mx.array(x) for x in (h, W, b, y.astype(np.int32), w))
    keep = mx.where(Y == -100, 0, Y)
    one = reduce(ignore_index(smooth_labels(weighted(lossfn.linear_cross_entropy), 0.1)))
    other = reduce(ignore_index(weighted(smooth_labels(lossfn.linear_cross_entropy, 0.1))))
    expected = TF.linear_cross_entropy(*map(torch.tensor, (h, W, y)), linear_bias=torch.tensor(b), weight=torch.tensor(w), label_smoothing=0.1)
    assert_close(one(H, Wm, Y, B_, Wt, tile=TILE), expected)
    assert_close(other(H, Wm, Y, B_, Wt, tile=TILE), expected)
    assert_close(mx.compile(lambda *a: one(*a, tile=TILE))(H, Wm, Y, B_, Wt), expected)
    per_token = mx.grad(lambda h, t: lossfn.linear_cross_entropy(h, Wm, t, B_, tile=TILE))
    vmapped = mx.vmap(per_token)(H, keep)
    looped = mx.stack([per_token(H[i], keep[i]) for i in range(N)])
    assert_close(vmapped, looped)


# --- bad input ------------------------------------------------------------------------------


BAD = {
    "3-d input": ((2, 3, D), (V, D), (2, 3), {}, "dimensionality 1 or 2"),
    "1-d weight": ((N, D), (D,), (N,), {}, "at least 2"),
    "in_features": ((N, D), (V, D + 1), (N,), {}, "in_features"),
    "bias shape": ((N, D), (V, D), (N,), {"linear_bias": (V + 1,)}, "linear_bias shape"),
    "k-dim unbatched": ((D,), (V, 2, D), (2,), {}, "requires batched input"),
    "ignore with probabilities": ((N, D), (V, D), (N, V), {"ignore_index": 3}, "ignore_index cannot be specified"),
}


@pytest.mark.parametrize("name", sorted(BAD))
@pytest.mark.parametrize("tiled", [False, True])
def test_bad_shapes_raise_like_torch(name, tiled):
    input, weight, target, extra, match = BAD[name]
    r = rng("bad", name)
    arrays = [r.normal(size=s).astype(np.float32) for s in (input, weight)]
    t = r.normal(size=target).astype(np.float32) if "probabilities" in name else np.zeros(target, np.int64)
    keywords = {k: r.normal(size=v).astype(np.float32) if isinstance(v, tuple) else v for k, v in extra.items()}
    options = LN.LinearCrossEntropyOptions() if tiled else None
    with pytest.raises(ValueError, match=match):  # PyTorch's RuntimeErrors are ValueErrors here
        F.linear_cross_entropy(*map(mx.array, arrays), mx.array(t), options=options, **arrays_of(keywords, mx.array))
    with pytest.raises(RuntimeError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        TF.linear_cross_entropy(*map(torch.tensor, arrays), torch.tensor(t), **arrays_of(keywords, torch.tensor))


@pytest.mark.parametrize("tiled", [False, True])
def test_bad_values_raise_like_torch_and_give_nan_when_traced(tiled):
    h, W, _, y, _, w = data("bad values")
    options = LN.LinearCrossEntropyOptions(tile=TILE) if tiled else None
    y[2] = V
    with pytest.raises(IndexError, match=f"class index {V}, outside"):
        F.linear_cross_entropy(mx.array(h), mx.array(W), mx.array(y), options=options)
    with pytest.raises(IndexError):
        TF.linear_cross_entropy(torch.tensor(h), torch.tensor(W), torch.tensor(y))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.linear_cross_entropy(mx.array(h), mx.array(W), mx.array(y), label_smoothing=1.5, options=options)
    with pytest.raises(ValueError, match=r"weight must have one entry per class"):
        F.linear_cross_entropy(mx.array(h), mx.array(W), mx.array(y), weight=mx.array(w[:5]), options=options)
    traced = mx.compile(lambda h, y: F.linear_cross_entropy(h, mx.array(W), y, options=options, reduction="none"))(mx.array(h), mx.array(y))
    assert np.isnan(np.asarray(traced)[2]) and np.isfinite(np.delete(np.asarray(traced), 2)).all()
    with pytest.raises(ValueError, match="softcap"):
        lossfn.linear_cross_entropy(mx.array(h[0]), mx.array(W), mx.array(1), softcap=-1.0)


@pytest.mark.parametrize("tiled", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_batch_gives_torchs_result(tiled, reduction):
    W = rng("linear-ce", "empty").normal(size=(V, D)).astype(np.float32)
    options = LN.LinearCrossEntropyOptions(tile=TILE) if tiled else None
    ours = F.linear_cross_entropy(mx.zeros((0, D)), mx.array(W), mx.zeros((0,), mx.int64), reduction=reduction, options=options)
    theirs = TF.linear_cross_entropy(torch.zeros(0, D), torch.tensor(W), torch.zeros(0, dtype=torch.int64), reduction=reduction)
    assert_close(ours, theirs)
    dW = mx.grad(lambda W: mx.sum(F.linear_cross_entropy(mx.zeros((0, D)), W, mx.zeros((0,), mx.int64), reduction="sum", options=options)))(mx.array(W))
    assert dW.shape == W.shape and not np.asarray(dW).any()
