"""The transforms as laws: flagship compositions equal PyTorch; nesting orders agree where the
maths says they must; reductions obey their law; masking equals slicing; compiled equals
eager; vmap over a further axis equals a loop; per-example gradients equal a loop; the
functional layer never retraces for new data."""

from __future__ import annotations

import itertools

import mlx.core as mx
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from oracle import assert_close, to_torch

import lossfn
import lossfn.functional as F
from transforms import (
    Weighted,
    batched,
    compiled,
    ignore_index,
    reduce,
    rescaled,
    smooth_labels,
    weighted,
)

N, C = 8, 5
R = np.random.default_rng(7)
LOGITS = (R.normal(size=(N, C)) * 2).astype(np.float32)
LABELS = R.integers(0, C, size=N).astype(np.int32)
LABELS_IGNORED = np.where(np.arange(N) % 3 == 0, -100, LABELS).astype(np.int32)
CLASS_WEIGHTS = R.uniform(0.2, 2.0, size=C).astype(np.float32)
X = R.normal(size=(N, 3)).astype(np.float32)
Y = R.normal(size=(N, 3)).astype(np.float32)


def mxa(*xs: np.ndarray) -> list[mx.array]:
    return [mx.array(x) for x in xs]


# --- flagship compositions -----------------------------------------------------------------


def test_flagship_weighted_cross_entropy_equals_torch():
    ours = reduce(weighted(lossfn.cross_entropy), "mean")(*mxa(LOGITS, LABELS, CLASS_WEIGHTS))
    theirs = TF.cross_entropy(*(to_torch(a) for a in (LOGITS, LABELS.astype(np.int64), CLASS_WEIGHTS)))
    assert_close(ours, theirs)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_flagship_full_composition_equals_torch(reduction):
    """ignore_index(smooth_labels(weighted(cross_entropy))) is torch's CE with every option on."""
    loss = reduce(ignore_index(smooth_labels(weighted(lossfn.cross_entropy), 0.2), -100), reduction)
    ours = loss(*mxa(LOGITS, LABELS_IGNORED, CLASS_WEIGHTS))
    theirs = TF.cross_entropy(
        to_torch(LOGITS), to_torch(LABELS_IGNORED.astype(np.int64)), to_torch(CLASS_WEIGHTS),
        reduction=reduction, label_smoothing=0.2,
    )
    assert_close(ours, theirs)


def test_flagship_nll_of_log_softmax_equals_cross_entropy():
    log_probs = mx.array(LOGITS) - mx.logsumexp(mx.array(LOGITS), axis=1, keepdims=True)
    via_nll = reduce(weighted(lossfn.nll_loss), "mean")(log_probs, *mxa(LABELS, CLASS_WEIGHTS))
    via_ce = reduce(weighted(lossfn.cross_entropy), "mean")(*mxa(LOGITS, LABELS, CLASS_WEIGHTS))
    assert_close(via_nll, via_ce)


# --- nesting orders --------------------------------------------------------------------------

def test_ignore_and_weighted_commute():
    a = reduce(ignore_index(weighted(lossfn.cross_entropy)), "mean")(*mxa(LOGITS, LABELS_IGNORED, CLASS_WEIGHTS))
    b = reduce(weighted(ignore_index(lossfn.cross_entropy)), "mean")(*mxa(LOGITS, LABELS_IGNORED, CLASS_WEIGHTS))
    assert_close(a, b)
    assert np.isfinite(np.asarray(a))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_rescaled_and_weighted_commute(reduction):
    scale = R.uniform(0.5, 1.5, size=N).astype(np.float32)
    a = reduce(rescaled(weighted(lossfn.cross_entropy)), reduction)(*mxa(LOGITS, LABELS, CLASS_WEIGHTS, scale))
    b = reduce(weighted(rescaled(lossfn.cross_entropy)), reduction)(*mxa(LOGITS, LABELS, scale, CLASS_WEIGHTS))
    assert_close(a, b)


def test_smoothing_of_an_index_equals_smoothing_of_its_one_hot():
    """For a loss linear in its target, the expectation over the smoothed label equals the
    loss at the smoothed distribution."""
    one_hot = np.eye(C, dtype=np.float32)[LABELS]
    a = reduce(smooth_labels(lossfn.cross_entropy, 0.25), "none")(*mxa(LOGITS, LABELS))
    b = reduce(smooth_labels(lossfn.cross_entropy, 0.25), "none")(*mxa(LOGITS, one_hot))
    assert_close(a, b)


def test_weighted_probability_target_equals_weighted_one_hot_sum():
    """A one-hot probability target with class weights gives w[y] * loss, counted once per example."""
    one_hot = np.eye(C, dtype=np.float32)[LABELS]
    by_prob = reduce(weighted(lossfn.cross_entropy), "sum")(*mxa(LOGITS, one_hot, CLASS_WEIGHTS))
    by_index = reduce(weighted(lossfn.cross_entropy), "sum")(*mxa(LOGITS, LABELS, CLASS_WEIGHTS))
    assert_close(by_prob, by_index)


# --- reduction law, masking == slicing --------------------------------------------------------

LAW_LOSSES = {
    "mse": (lossfn.mse_loss, lambda: mxa(X, Y)),
    "ce": (lossfn.cross_entropy, lambda: mxa(LOGITS, LABELS)),
    "weighted ce": (weighted(lossfn.cross_entropy), lambda: mxa(LOGITS, LABELS, CLASS_WEIGHTS)),
    "ignored ce": (ignore_index(lossfn.cross_entropy), lambda: mxa(LOGITS, LABELS_IGNORED)),
}


@pytest.mark.parametrize("name", sorted(LAW_LOSSES))
def test_reduction_law(name):
    loss, inputs = LAW_LOSSES[name]
    args = inputs()
    per_example = batched(loss)(*args)
    values = per_example.value if isinstance(per_example, Weighted) else per_example
    weights = per_example.weight if isinstance(per_example, Weighted) else mx.ones_like(values)
    assert_close(reduce(loss, "none")(*args), values)
    assert_close(reduce(loss, "sum")(*args), mx.sum(values), rtol=1e-6)
    assert_close(reduce(loss, "mean")(*args), mx.sum(values) / mx.sum(weights), rtol=1e-6)
    assert_close(reduce(loss, "batchmean")(*args), mx.sum(values) / N, rtol=1e-6)


@pytest.mark.parametrize("use_weight,smoothing", list(itertools.product((False, True), (0.0, 0.2))))
def test_masking_equals_slicing(use_weight, smoothing):
    base = weighted(lossfn.cross_entropy) if use_weight else lossfn.cross_entropy
    base = smooth_labels(base, smoothing) if smoothing else base
    extra = mxa(CLASS_WEIGHTS) if use_weight else []
    kept = LABELS_IGNORED != -100
    masked = reduce(ignore_index(base), "mean")(*mxa(LOGITS, LABELS_IGNORED), *extra)
    sliced = reduce(base, "mean")(*mxa(LOGITS[kept], LABELS[kept]), *extra)
    assert_close(masked, sliced, rtol=1e-6)


# --- compile, vmap, grad invariances ---------------------------------------------------------

COMPOSITIONS = {
    "weighted ce": (lambda: weighted(lossfn.cross_entropy), lambda: mxa(LOGITS, LABELS, CLASS_WEIGHTS)),
    "ignore smooth weighted ce": (
        lambda: ignore_index(smooth_labels(weighted(lossfn.cross_entropy), 0.1)),
        lambda: mxa(LOGITS, LABELS_IGNORED, CLASS_WEIGHTS),
    ),
    "smooth_l1": (lambda: lossfn.smooth_l1_loss, lambda: mxa(X, Y)),
    "rescaled bce logits": (lambda: rescaled(lossfn.binary_cross_entropy_with_logits), lambda: mxa(X, (Y > 0).astype(np.float32), np.abs(Y))),
    "bce": (lambda: lossfn.binary_cross_entropy, lambda: mxa(1 / (1 + np.exp(-X)), (Y > 0).astype(np.float32))),
}


@pytest.mark.parametrize("name,reduction", list(itertools.product(sorted(COMPOSITIONS), ["none", "mean", "sum"])))
def test_compiled_equals_eager(name, reduction):
    make, inputs = COMPOSITIONS[name]
    loss = reduce(make(), reduction)
    args = inputs()
    assert_close(mx.compile(loss)(*args), loss(*args))
    assert_close(compiled(loss)(*args), loss(*args))
    scalar = lambda x, *rest: mx.sum(loss(x, *rest))  # noqa: E731
    assert_close(mx.compile(mx.grad(scalar))(*args), mx.grad(scalar)(*args))


@pytest.mark.parametrize("name", sorted(COMPOSITIONS))
def test_vmap_over_a_further_axis_equals_a_loop(name):
    make, inputs = COMPOSITIONS[name]
    loss = reduce(make(), "mean")
    args = inputs()
    axes = tuple(getattr(make(), "trailing_axes", ()))
    in_axes = (0,) * (len(args) - len(axes)) + axes
    # a further leading axis of 3 groups: stack shifted copies of the batched arguments
    stacked = [a if ax is None else mx.stack([mx.roll(a, k, axis=0) for k in range(3)]) for a, ax in zip(args, in_axes)]
    grouped = mx.vmap(loss, in_axes=in_axes)(*stacked)
    looped = mx.stack([loss(*[a if ax is None else a[k] for a, ax in zip(stacked, in_axes)]) for k in range(3)])
    assert_close(grouped, looped)


@pytest.mark.parametrize("name", sorted(COMPOSITIONS))
def test_per_example_gradients_equal_a_loop(name):
    """mx.vmap(mx.grad(f)) over a batch equals single-example mx.grad calls."""
    make, inputs = COMPOSITIONS[name]
    loss = make()
    args = inputs()
    axes = tuple(getattr(loss, "trailing_axes", ()))
    in_axes = (0,) * (len(args) - len(axes)) + axes

    def scalar(x, *rest):
        out = loss(x, *rest)
        return mx.sum(out.value if isinstance(out, Weighted) else out)

    vmapped = mx.vmap(mx.grad(scalar), in_axes=in_axes)(*args)
    looped = mx.stack([mx.grad(scalar)(*[a if ax is None else a[i] for a, ax in zip(args, in_axes)]) for i in range(N)])
    assert_close(vmapped, looped)


def test_grad_through_reduce_equals_torch():
    loss = reduce(ignore_index(smooth_labels(weighted(lossfn.cross_entropy), 0.1)), "mean")
    grad = mx.grad(loss)(*mxa(LOGITS, LABELS_IGNORED, CLASS_WEIGHTS))
    x = to_torch(LOGITS, requires_grad=True)
    TF.cross_entropy(x, to_torch(LABELS_IGNORED.astype(np.int64)), to_torch(CLASS_WEIGHTS), label_smoothing=0.1).backward()
    assert_close(grad, x.grad)


# --- no retracing ---------------------------------------------------------------------------


@pytest.fixture
def count_traces(monkeypatch):
    """Count traces of every compiled graph the functional layer builds from now on."""
    import transforms._compile as compile_module

    counter = {"traces": 0}
    original = compile_module._trace

    def counting_trace(loss, fixed, dynamic, owner, shard):
        body = original(loss, fixed, dynamic, owner, shard)

        def counted(*args):
            counter["traces"] += 1
            return body(*args)

        return counted

    monkeypatch.setattr(compile_module, "_trace", counting_trace)
    from lossfn.functional import _graphs

    _graphs.reduce_graph.cache_clear()
    _graphs.class_graph.cache_clear()
    yield counter
    _graphs.reduce_graph.cache_clear()
    _graphs.class_graph.cache_clear()


def fresh(*shape: int, integer: int | None = None) -> mx.array:
    if integer is not None:
        return mx.random.randint(0, integer, shape)
    return mx.random.normal(shape)


CALLS = {
    "cross_entropy": lambda w, s: F.cross_entropy(fresh(N, C), fresh(N, integer=C), weight=w, label_smoothing=s),
    "nll_loss": lambda w, s: F.nll_loss(fresh(N, C), fresh(N, integer=C), weight=w, ignore_index=int(10 * s)),
    "smooth_l1_loss": lambda w, s: F.smooth_l1_loss(fresh(N, 3), fresh(N, 3), beta=0.5 + s),
    "huber_loss": lambda w, s: F.huber_loss(fresh(N, 3), fresh(N, 3), delta=0.5 + s, weight=mx.abs(fresh(N, 3))),
    "bce_with_logits": lambda w, s: F.binary_cross_entropy_with_logits(fresh(N, C), mx.sigmoid(fresh(N, C)), weight=w, pos_weight=w + s),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_functional_does_not_retrace_for_new_data_weights_or_hyperparameters(name, count_traces):
    call = CALLS[name]
    mx.eval(call(mx.abs(fresh(C)), 0.1))
    first = count_traces["traces"]
    assert first >= 1
    for k in range(3):
        mx.eval(call(mx.abs(fresh(C)), 0.2 + 0.1 * k))  # new data, new weights, new float hyper-parameters
    assert count_traces["traces"] == first


def test_retrace_is_counted_for_a_new_shape(count_traces):
    """The counter can fail: a new batch size is a new graph."""
    mx.eval(F.cross_entropy(fresh(N, C), fresh(N, integer=C)))
    before = count_traces["traces"]
    mx.eval(F.cross_entropy(fresh(N + 1, C), fresh(N + 1, integer=C)))
    assert count_traces["traces"] == before + 1


def test_compiled_counts_its_traces():
    loss = compiled(reduce(lossfn.smooth_l1_loss, "mean"))
    for beta in (0.5, 1.0, 2.0):
        mx.eval(loss(*mxa(X, Y), beta=beta))
    assert loss.traces == 1
    expected = TF.smooth_l1_loss(to_torch(X), to_torch(Y), beta=2.0)
    assert_close(loss(*mxa(X, Y), beta=2.0), expected)


def test_torch_is_the_oracle_version():
    assert torch.__version__.split("+")[0] == "2.13.0"


def test_large_class_scores_are_gathered_flat_exactly_and_shapelessly():
    # From _FLAT_GATHER_FROM scores on, a class index is read from the flat scores at
    # row * C + index (MLX's 2-D take_along_axis is slower there): the same values and
    # gradients as the plain gather, nan for a bad index, and right under a shapeless compile
    # for batches of other sizes.
    from transforms._classes import _FLAT_GATHER_FROM, take_class

    rng = np.random.default_rng(3)
    c = 300
    n = _FLAT_GATHER_FROM // c + 5
    x = mx.array(rng.standard_normal((n, c)).astype(np.float32))
    y = mx.array(rng.integers(0, c, n).astype(np.int32))
    picked, valid = take_class(x, y)
    expected = np.take_along_axis(np.asarray(x), np.asarray(y)[:, None], axis=-1)[:, 0]
    np.testing.assert_array_equal(np.asarray(picked), expected)
    assert bool(mx.all(valid))
    grad = mx.grad(lambda a: mx.sum(take_class(a, y)[0] * mx.arange(n)))(x)
    want = np.zeros((n, c), np.float32)
    want[np.arange(n), np.asarray(y)] = np.arange(n)
    np.testing.assert_array_equal(np.asarray(grad), want)
    loss = reduce(lossfn.nll_loss, "sum")
    shapeless = mx.compile(loss, shapeless=True)
    for rows in (n, n + 17, n - 40):
        np.testing.assert_allclose(float(shapeless(x[:rows], y[:rows])), -expected[:rows].astype(np.float64).sum(), rtol=1e-6)
    bad = mx.array(np.where(np.arange(n) == 7, c + 2, np.asarray(y)).astype(np.int32))
    per_example = np.asarray(reduce(lossfn.nll_loss, "none")(x, bad))
    assert np.isnan(per_example[7]) and not np.isnan(np.delete(per_example, 7)).any()
