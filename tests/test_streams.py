"""Sharding a large batch over CPU streams (``transforms.cpu_streams``): bitwise the numbers of
one stream, in values and gradients, under ``mx.grad``, ``mx.vmap`` and ``mx.compile``."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import lossfn
import lossfn.functional as F
import transforms as T
from transforms import _streams

rng = np.random.default_rng(7)
# Just above the threshold: (1100, 1000) scores are sharded, (100, 1000) are not.
N, C = _streams.SHARD_ABOVE // 1000 + 52, 1000


def _batch(n: int = N) -> tuple[mx.array, mx.array, mx.array]:
    x = mx.array(rng.standard_normal((n, C)).astype(np.float32))
    y = mx.array(np.where(rng.uniform(size=n) < 0.1, -100, rng.integers(0, C, n)).astype(np.int32))
    return x, y, mx.array(rng.uniform(0.5, 1.5, C).astype(np.float32))


def _on(streams: int, fn, *args):
    with T.cpu_streams(streams):
        out = fn(*args)
        mx.eval(out)
    return out


def _bitwise_equal(a, b) -> None:
    for u, v in zip(a if isinstance(a, (tuple, list)) else [a], b if isinstance(b, (tuple, list)) else [b]):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_the_batch_is_really_cut(monkeypatch):
    calls = []
    original = _streams._stream
    monkeypatch.setattr(_streams, "_stream", lambda i: calls.append(i) or original(i))
    x, y, _ = _batch()
    _on(2, T.reduce(lossfn.cross_entropy, "none"), x, y)
    assert set(calls) == {1}
    calls.clear()
    _on(2, T.reduce(lossfn.cross_entropy, "none"), x[:100], y[:100])  # below SHARD_ABOVE
    _on(1, T.reduce(lossfn.cross_entropy, "none"), x, y)
    assert calls == []


def test_nll_loss_of_class_indices_is_not_cut(monkeypatch):
    # Its example is one gather: the shards' concatenation would cost more than it saves.
    calls = []
    original = _streams._stream
    monkeypatch.setattr(_streams, "_stream", lambda i: calls.append(i) or original(i))
    x, y, w = _batch()
    _on(2, lambda a: F.nll_loss(a, y, weight=w), x)
    _on(2, mx.grad(lambda a: F.nll_loss(a, y)), x)
    assert calls == []
    _on(2, T.reduce(lossfn.nll_loss, "none"), x, mx.softmax(x, axis=-1))  # a distribution reads every class
    assert set(calls) == {1}


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_functional_cross_entropy_is_bitwise_that_of_one_stream(reduction):
    x, y, w = _batch()
    loss = lambda a: F.cross_entropy(a, y, weight=w, label_smoothing=0.1, reduction=reduction)  # noqa: E731
    _bitwise_equal(_on(2, loss, x), _on(1, loss, x))
    vg = mx.value_and_grad(lambda a: loss(a).sum())
    _bitwise_equal(_on(2, vg, x), _on(1, vg, x))


def test_elementwise_and_vmapped_losses():
    x = mx.array(rng.standard_normal((N, C)).astype(np.float32))
    t = mx.array(rng.uniform(size=(N, C)).astype(np.float32))
    bce = mx.value_and_grad(lambda a: F.binary_cross_entropy_with_logits(a, t))
    _bitwise_equal(_on(2, bce, x), _on(1, bce, x))

    def user_loss(a: mx.array, b: mx.array) -> mx.array:  # no batch rule: the vmap path
        return mx.sum(mx.square(a - b)) / a.shape[-1]

    reduced = mx.value_and_grad(T.reduce(user_loss, "mean"))
    _bitwise_equal(_on(2, reduced, x, t), _on(1, reduced, x, t))


def test_composes_with_compile_and_vmap():
    x, y, w = _batch()
    loss = T.reduce(T.ignore_index(T.weighted(lossfn.cross_entropy)), "mean")
    compiled = mx.compile(mx.value_and_grad(loss))
    _bitwise_equal(_on(2, compiled, x, y, w), _on(1, mx.value_and_grad(loss), x, y, w))
    twice = mx.vmap(loss, in_axes=(0, 0, None))
    xs, ys = mx.stack([x, x[::-1]]), mx.stack([y, y[::-1]])
    _bitwise_equal(_on(2, twice, xs, ys, w), _on(1, twice, xs, ys, w))


def test_not_inside_a_users_shapeless_compile():
    # A shard's size would be kept by the graph (and MLX refuses a Split under shapeless).
    losses = {
        "functional": lambda a, b: F.cross_entropy(a, b, reduction="none"),
        "reduce": lambda a, b: T.reduce(lossfn.cross_entropy, "mean")(a, b),
    }
    for name, loss in losses.items():
        compiled = mx.compile(loss, shapeless=True)
        for n in (N, N + 200, N - 300):
            x, y, _ = _batch(n)
            with T.cpu_streams(2):
                np.testing.assert_allclose(np.asarray(compiled(x, y)), np.asarray(loss(x, y)), rtol=1e-6, err_msg=f"{name} {n}")


def test_deterministic_run_to_run():
    x, y, _ = _batch()
    f = mx.value_and_grad(lambda a: F.cross_entropy(a, y))
    first = _on(2, f, x)
    for _ in range(3):
        _bitwise_equal(_on(2, f, x), first)


def test_cpu_streams_setting():
    before = T.cpu_streams()
    with T.cpu_streams(3):
        assert T.cpu_streams() == 3
    assert T.cpu_streams() == before
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="count must be a positive int"):
            T.cpu_streams(bad)


def test_inside_a_users_compile_only_when_shapes_are_promised_fixed(monkeypatch):
    calls = []
    original = _streams._stream
    monkeypatch.setattr(_streams, "_stream", lambda i: calls.append(i) or original(i))
    x, y, w = _batch()
    loss = lambda a, b, c: F.cross_entropy(a, b, weight=c, label_smoothing=0.1)  # noqa: E731
    eager = _on(2, mx.value_and_grad(loss), x, y, w)
    calls.clear()
    _bitwise_equal(_on(2, mx.compile(mx.value_and_grad(loss)), x, y, w), eager)
    assert calls == []  # no promise: nothing cut
    with T.fixed_shapes(True):
        assert T.fixed_shapes()
        promised = _on(2, mx.compile(mx.value_and_grad(loss)), x, y, w)
        assert set(calls) == {1}
        xs, ys = mx.stack([x, x[::-1]]), mx.stack([y, y[::-1]])
        twice = mx.vmap(mx.value_and_grad(loss), in_axes=(0, 0, None))
        vmapped = _on(2, twice, xs, ys, w)
    assert not T.fixed_shapes()
    _bitwise_equal(promised, eager)
    _bitwise_equal(vmapped, _on(1, twice, xs, ys, w))


def test_a_broken_promise_raises_and_never_gives_a_wrong_number():
    # Under a shapeless compile the staged sum (a custom function) and the shards cannot be
    # given new shapes: MLX refuses the graph at its first call.
    x, y = (mx.array(rng.standard_normal(1 << 18).astype(np.float32)) for _ in range(2))
    scores, labels, _ = _batch()
    losses = {"mse_loss": (F.mse_loss, x, y), "cross_entropy": (F.cross_entropy, scores, labels)}
    with T.fixed_shapes(True):
        for loss, a, b in losses.values():
            with pytest.raises(ValueError, match="infer output shapes"):
                mx.eval(mx.compile(loss, shapeless=True)(a, b))
    with pytest.raises(TypeError, match="promise must be a bool"):
        T.fixed_shapes(1)


def _cuts_recorded(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = _streams._stream
    monkeypatch.setattr(_streams, "_stream", lambda i: calls.append(i) or original(i))
    monkeypatch.setattr(_streams, "SMALL_EXAMPLES_ABOVE", _streams.SHARD_ABOVE)  # small arrays, quick tests
    return calls


# Small examples (a 1-D element-wise loss) are cut only for a reduction: each shard's runs are
# summed on its stream, unconcatenated. 2**19 + 77 elements: cut at a multiple of 256, the
# last run padded.
M = (1 << 19) + 77


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_elementwise_losses_of_scalar_examples_are_cut_for_a_reduction_and_bitwise(monkeypatch, reduction):
    calls = _cuts_recorded(monkeypatch)
    p = mx.array(rng.uniform(0.01, 0.99, M).astype(np.float32))
    t = mx.array(rng.uniform(size=M).astype(np.float32))
    var = mx.array(rng.uniform(0.5, 2, M).astype(np.float32))
    losses = {
        "binary_cross_entropy": lambda a: F.binary_cross_entropy(a, t, reduction=reduction),
        "mse_loss": lambda a: F.mse_loss(a, t, reduction=reduction),
        "gaussian_nll_loss": lambda a: F.gaussian_nll_loss(a, t, var, reduction=reduction),
        "huber_loss": lambda a: F.huber_loss(a, t, reduction=reduction, delta=0.3),
    }
    for name, loss in losses.items():
        calls.clear()
        two = _on(2, mx.value_and_grad(loss), p)
        assert set(calls) == {1}, name
        _bitwise_equal(two, _on(1, mx.value_and_grad(loss), p))
        _bitwise_equal(_on(2, loss, p), two[0])
    calls.clear()
    _on(2, lambda a: F.mse_loss(a, t, reduction="none"), p)
    assert calls == []  # 'none' would concatenate the shards: not worth it
    monkeypatch.undo()
    calls = _cuts_recorded(monkeypatch)
    monkeypatch.setattr(_streams, "SMALL_EXAMPLES_ABOVE", 2 * M + 1)
    _on(2, mx.value_and_grad(losses["mse_loss"]), p)
    assert calls == []  # below the threshold of small examples


def test_small_weighted_examples_are_cut_for_a_mean_and_bitwise(monkeypatch):
    # Ten classes: an example of 10 scores and an index, a Weighted (loss, class weight) out.
    calls = _cuts_recorded(monkeypatch)
    n, c = (1 << 15) + 3, 10
    x = mx.array(rng.standard_normal((n, c)).astype(np.float32))
    y = mx.array(np.where(rng.uniform(size=n) < 0.2, -100, rng.integers(0, c, n)).astype(np.int32))
    w = mx.array(rng.uniform(0.5, 1.5, c).astype(np.float32))
    loss = mx.value_and_grad(lambda a: F.cross_entropy(a, y, weight=w, label_smoothing=0.05))
    two = _on(2, loss, x)
    assert set(calls) == {1}
    _bitwise_equal(two, _on(1, loss, x))
    per_example = T.reduce(T.ignore_index(T.weighted(lossfn.cross_entropy)), "mean")
    _bitwise_equal(_on(2, mx.value_and_grad(per_example), x, y, w), _on(1, mx.value_and_grad(per_example), x, y, w))


def test_cut_scalar_examples_compose_with_a_promised_compile_and_stay_exact(monkeypatch):
    calls = _cuts_recorded(monkeypatch)
    x = mx.array(rng.standard_normal(M).astype(np.float32))
    t = mx.array(rng.standard_normal(M).astype(np.float32))
    loss = mx.value_and_grad(lambda a: F.smooth_l1_loss(a, t, beta=0.5))
    with T.fixed_shapes(True):
        compiled = _on(2, mx.compile(loss), x)
    assert set(calls) == {1}
    _bitwise_equal(compiled, _on(1, loss, x))
    d = np.asarray(x, np.float64) - np.asarray(t, np.float64)
    expected = np.where(np.abs(d) < 0.5, 0.5 * d**2 / 0.5, np.abs(d) - 0.25).mean()
    np.testing.assert_allclose(float(compiled[0]), expected, rtol=1e-6)


def test_reduced_large_examples_are_summed_unconcatenated_and_bitwise(monkeypatch):
    # Rows of 1024 (staged by their own axes) and of 1009, a prime (staged flat: a cut inside
    # a run of 256 is summed as one array), element-wise and per row.
    calls = _cuts_recorded(monkeypatch)
    for width in (1024, 1009):
        n = _streams.SHARD_ABOVE // width + 3
        x = mx.array(rng.standard_normal((n, width)).astype(np.float32))
        p = mx.array(rng.dirichlet(np.ones(width), n).astype(np.float32))
        losses = {
            "kl_div": lambda a: F.kl_div(a, p, reduction="batchmean"),
            "bce_with_logits": lambda a: F.binary_cross_entropy_with_logits(a, p, reduction="sum"),
            "cross_entropy": lambda a: F.cross_entropy(a, p),
        }
        for name, loss in losses.items():
            calls.clear()
            two = _on(2, mx.value_and_grad(loss), x)
            assert set(calls) == {1}, (name, width)
            _bitwise_equal(two, _on(1, mx.value_and_grad(loss), x))


def test_the_probe_tells_eager_autodiff_and_traces_apart_from_a_first_call():
    """``_tracing.transformation``: its compiled probe runs its body on a first call for a
    signature too, which must not read as a tracer; every transformation reads as its own."""
    from transforms._tracing import transformation

    seen = {}

    def record(name, *arrays):
        seen[name] = transformation(list(arrays))
        return mx.sum(arrays[0].astype(mx.float32))

    x = mx.ones((3, 4), mx.float16)
    odd = mx.zeros((2, 2, 2), mx.uint8)  # a signature (count, dtypes) the probe has not seen
    record("eager, first signature", x, odd, mx.zeros((5,), mx.int16))
    record("eager, again", x, odd, mx.zeros((5,), mx.int16))
    mx.grad(lambda a: record("grad", a, odd))(x)
    mx.compile(lambda a: record("compile", a, odd))(x)
    mx.compile(lambda a: record("shapeless compile", a), shapeless=True)(x)
    mx.vmap(lambda a: record("vmap", a))(x)
    mx.compile(mx.grad(lambda a: record("compile(grad)", a)))(x)
    mx.vmap(mx.grad(lambda a: record("vmap(grad)", a)))(x)
    assert transformation([]) == "eager"  # no array: nothing is traced
    assert seen == {
        "eager, first signature": "eager",
        "eager, again": "eager",
        "grad": "grad",
        "compile": "trace",
        "shapeless compile": "trace",
        "vmap": "trace",
        "compile(grad)": "trace",
        "vmap(grad)": "trace",
    }
