"""Per-example gradients as laws: they equal a Python loop of single-example ``mx.grad``
calls (every loss family x an MLP, a token MLP, a convolution and a recurrent model, and CTC
x a per-frame MLP and a recurrent model; both methods, eager and compiled); their batch sum
is the gradient of the 'sum' reduction; clipping bounds every contribution and is the plain
sum under a loose bound; noise comes from the key; the 'linear' method equals 'vmap'."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import optree
import pytest
from oracle import rng

import lossfn
import transforms as T

B, C, D = 3, 5, 6  # examples, model outputs, input features
T_STEPS, S = 6, 3  # frames and target length of a sequence example
RTOL, ATOL = 1e-5, 1e-6
R = rng("per-example")


@pytest.fixture(autouse=True)
def _seeded_per_test(request: pytest.FixtureRequest) -> None:
    """Each test draws its data (and its models' initial weights) from its own seed."""
    global R
    R = rng(request.node.name)
    mx.random.seed(int(R.integers(2**31)))


def f32(*shape: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return R.uniform(low, high, size=shape).astype(np.float32)


# --- models: one example in, C outputs (or T x C for a sequence loss) -----------------------


class TokenMLP(nn.Module):
    """A Linear over a token axis (T = 3 uses per example, the (T, T) Gram-norm case), mean-pooled."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.head = nn.Linear(16, C, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        return self.head(mx.tanh(self.embed(x)).mean(axis=-2))


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 3, kernel_size=3)
        self.head = nn.Linear(12, C)

    def __call__(self, x: mx.array) -> mx.array:
        h = nn.relu(self.conv(x))
        return self.head(h.reshape(h.shape[0], -1))


class RecurrentNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(3, 4)
        self.head = nn.Linear(4, C)

    def __call__(self, x: mx.array) -> mx.array:
        return self.head(self.rnn(x)[:, -1])


class SequenceRNN(nn.Module):
    """Scores (T, C) for every step: the input of a sequence loss (CTC)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(4, 8)
        self.head = nn.Linear(8, C)

    def __call__(self, x: mx.array) -> mx.array:
        return self.head(self.rnn(x))


class Model(NamedTuple):
    make: Callable[[], nn.Module]
    example_shape: tuple[int, ...]
    methods: tuple[str, ...]
    output: str = "vector"  # one example's output: (C,) or, for "sequence", (T, C)


MODELS = {
    "mlp": Model(lambda: nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, C)), (D,), ("linear", "vmap")),
    "token_mlp": Model(TokenMLP, (3, 8), ("linear", "vmap")),
    "conv": Model(ConvNet, (6, 2), ("vmap",)),
    "rnn": Model(RecurrentNet, (5, 3), ("vmap",)),
    "seq_mlp": Model(lambda: nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, C)), (T_STEPS, 4), ("linear", "vmap"), "sequence"),
    "seq_rnn": Model(SequenceRNN, (T_STEPS, 4), ("vmap",), "sequence"),
}


# --- losses: one row per family; rest arguments batched (axis 0) or shared (None) -----------


class Row(NamedTuple):
    loss: Callable[..., Any]  # loss(model_output, *rest)
    rest: Callable[[], list[np.ndarray]]  # the batch's rest arguments
    in_axes: tuple[int | None, ...] | None = None  # None: the loss's own batch axes
    output: str = "vector"  # the models it takes (Model.output)


def labels(ignored: bool = False) -> np.ndarray:
    y = R.integers(0, C, size=B).astype(np.int32)
    return np.where(np.arange(B) == 1, -100, y).astype(np.int32) if ignored else y


def label_lists() -> np.ndarray:
    y = np.full((B, C), -1, np.int32)
    for i in range(B):
        y[i, : i + 1] = R.permutation(C)[: i + 1]
    return y


def ctc_targets() -> list[np.ndarray]:
    targets = R.integers(1, C, size=(B, S)).astype(np.int32)  # class 0 is the blank
    return [targets, np.array([6, 5, 6][:B], np.int32), np.array([3, 2, 1][:B], np.int32)]


def kl_target() -> np.ndarray:
    p = f32(B, C, low=0.1, high=1.0)
    return p / p.sum(1, keepdims=True)


LOSSES = {
    "mse": Row(lossfn.mse_loss, lambda: [f32(B, C)]),
    "huber": Row(functools.partial(lossfn.huber_loss, delta=0.5), lambda: [f32(B, C)]),
    "cross_entropy weighted ignore_index": Row(
        T.ignore_index(T.weighted(lossfn.cross_entropy), -100), lambda: [labels(ignored=True), f32(C, low=0.2, high=2)]
    ),
    "cross_entropy smoothed": Row(T.smooth_labels(lossfn.cross_entropy, 0.2), lambda: [labels()]),
    "bce_with_logits": Row(lossfn.binary_cross_entropy_with_logits, lambda: [f32(B, C, low=0, high=1)]),
    "bce of sigmoid": Row(lambda x, y: lossfn.binary_cross_entropy(mx.sigmoid(x), y), lambda: [f32(B, C, low=0, high=1)]),
    "nll of log_softmax": Row(lambda x, y: lossfn.nll_loss(nn.log_softmax(x), y), lambda: [labels()]),
    "soft_margin": Row(lossfn.soft_margin_loss, lambda: [np.sign(f32(B, C)).astype(np.float32)]),
    "kl_div": Row(lambda x, y: lossfn.kl_div(nn.log_softmax(x), y), lambda: [kl_target()]),
    "gaussian_nll": Row(lossfn.gaussian_nll_loss, lambda: [f32(B, C), f32(B, C, low=0.5, high=2)]),
    "poisson_nll": Row(lossfn.poisson_nll_loss, lambda: [R.poisson(2.0, size=(B, C)).astype(np.float32)]),
    "triplet_margin": Row(
        functools.partial(lossfn.triplet_margin_loss, margin=2.0), lambda: [f32(B, C), f32(B, C)]
    ),
    "margin_ranking": Row(
        functools.partial(lossfn.margin_ranking_loss, margin=0.1), lambda: [f32(B, C), np.sign(f32(B, C)).astype(np.float32)]
    ),
    "cosine_embedding": Row(
        lossfn.cosine_embedding_loss, lambda: [f32(B, C), np.array([1, -1, 1][:B], np.float32)]
    ),
    "multilabel_soft_margin": Row(
        lossfn.multilabel_soft_margin_loss, lambda: [R.integers(0, 2, size=(B, C)).astype(np.float32)]
    ),
    "multilabel_margin": Row(lossfn.multilabel_margin_loss, lambda: [label_lists()]),
    "multi_margin weighted": Row(
        T.weighted(lossfn.multi_margin_loss, normalize=False), lambda: [labels(), f32(C, low=0.2, high=2)]
    ),
    "ctc": Row(lambda x, *rest: lossfn.ctc_loss(nn.log_softmax(x), *rest), ctc_targets, output="sequence"),
}


# --- the reference: a Python loop of single-example gradients ---------------------------------


def example_scalar(out: Any, how: str = "sum") -> mx.array:
    value = out.value if isinstance(out, T.Weighted) else out
    if how == "sum":
        return mx.sum(value)
    weight = mx.broadcast_to(out.weight, value.shape) if isinstance(out, T.Weighted) else mx.ones_like(value)
    return mx.sum(value) / mx.sum(weight)


def loop_reference(model: nn.Module, loss: Callable, x: mx.array, rest: list, axes: tuple, how: str = "sum"):
    """Values and gradients, one example at a time, with ``mlx.nn.value_and_grad`` on a batch of one."""
    values, grads = [], []
    for i in range(x.shape[0]):
        ex = [r[i] if ax == 0 else r for r, ax in zip(rest, axes)]

        def scalar() -> mx.array:
            return example_scalar(loss(model(x[i : i + 1])[0], *ex), how)

        v, g = nn.value_and_grad(model, scalar)()
        values.append(v)
        grads.append(g)
    return mx.stack(values), optree.tree_map(lambda *gs: mx.stack(gs), *grads)


def assert_trees_close(ours: Any, expected: Any, rtol: float = RTOL, atol: float = ATOL) -> None:
    paths, leaves, spec = optree.tree_flatten_with_path(expected)
    assert optree.tree_structure(ours) == spec, f"structure {optree.tree_structure(ours)} != {spec}"
    for path, a, b in zip(paths, optree.tree_leaves(ours), leaves):
        assert a.shape == b.shape, f"{path}: shape {a.shape} != {b.shape}"
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol, err_msg=str(path))


def setup(model_name: str, loss_name: str):
    model = MODELS[model_name].make()
    mx.eval(model.parameters())
    row = LOSSES[loss_name]
    x = mx.array(f32(B, *MODELS[model_name].example_shape))
    rest = [mx.array(r) for r in row.rest()]
    f = T.module_loss(model, row.loss)
    axes = row.in_axes or T._batching.batch_axes(f, 1 + len(rest))
    return model, row, f, x, rest, axes


# Every model, method and row eagerly. Compiled: through the convolution by the 'vmap' method,
# one row per family and transform; by the 'linear' method, the MLP for the output kinds that
# change its graph (element-wise, Weighted, smoothed, several batched arguments) and CTC's
# per-frame MLP. On a cold kernel cache each compiled case builds C++ kernels for seconds.
EXTRA_ROWS = {"huber", "bce of sigmoid", "nll of log_softmax", "soft_margin", "margin_ranking"}
LINEAR_COMPILED = {"mse", "cross_entropy weighted ignore_index", "cross_entropy smoothed", "gaussian_nll"}


def compiled_too(model: str, loss: str, method: str) -> bool:
    if (model, method) == ("conv", "vmap"):
        return loss not in EXTRA_ROWS
    return (model, method) == ("seq_mlp", "linear") or ((model, method) == ("mlp", "linear") and loss in LINEAR_COMPILED)


CASES = [
    pytest.param(m, loss, method, compile, id=f"{m}-{loss}-{method}-{'compiled' if compile else 'eager'}")
    for m in MODELS
    for loss in LOSSES
    if MODELS[m].output == LOSSES[loss].output
    for method in MODELS[m].methods
    for compile in ((False, True) if compiled_too(m, loss, method) else (False,))
]


@pytest.mark.parametrize("model_name,loss_name,method,compile", CASES)
def test_per_example_grads_equal_loop(model_name, loss_name, method, compile):
    model, row, f, x, rest, axes = setup(model_name, loss_name)
    expected_values, expected_grads = loop_reference(model, row.loss, x, rest, axes[1:])
    step = T.per_example_value_and_grad(f, in_axes=row.in_axes, method=method)
    step = mx.compile(step) if compile else step
    values, grads = step(model.trainable_parameters(), x, *rest)
    assert_trees_close(values.value if isinstance(values, T.Weighted) else values, expected_values)
    assert_trees_close(grads, expected_grads)


@pytest.mark.parametrize(
    "model_name,loss_name",
    [(m, loss) for m in ("mlp", "conv", "rnn") for loss in ("mse", "cross_entropy weighted ignore_index")] + [("seq_rnn", "ctc")],
)
def test_batch_sum_of_per_example_grads_is_the_sum_reduction_gradient(model_name, loss_name):
    model, row, f, x, rest, _ = setup(model_name, loss_name)
    _, expected = nn.value_and_grad(model, lambda: T.reduce(row.loss, "sum")(model(x), *rest))()
    _, grads = T.per_example_value_and_grad(f)(model.trainable_parameters(), x, *rest)
    assert_trees_close(optree.tree_map(lambda g: g.sum(axis=0), grads), expected, atol=1e-5)


@pytest.mark.parametrize("method", ["linear", "vmap"])
def test_example_reduction_mean(method):
    model, row, f, x, rest, axes = setup("mlp", "mse")
    _, expected = loop_reference(model, row.loss, x, rest, axes[1:], how="mean")
    _, grads = T.per_example_value_and_grad(f, example_reduction="mean", method=method)(
        model.trainable_parameters(), x, *rest
    )
    assert_trees_close(grads, expected)


def test_weighted_values_carry_the_weights_of_a_mean():
    """The batch 'mean' loss is sum(values) / sum(weights), and its gradient sum(grads) / sum(weights)."""
    model, row, f, x, rest, _ = setup("mlp", "cross_entropy weighted ignore_index")
    values, grads = T.per_example_value_and_grad(f)(model.trainable_parameters(), x, *rest)
    mean, expected = nn.value_and_grad(model, lambda: T.reduce(row.loss, "mean")(model(x), *rest))()
    total_weight = values.weight.sum()
    np.testing.assert_allclose(values.value.sum() / total_weight, mean, rtol=RTOL)
    assert_trees_close(optree.tree_map(lambda g: g.sum(axis=0) / total_weight, grads), expected)


def test_pure_parameter_loss_with_shared_arguments():
    """A loss of a parameter pytree (not a module): in_axes marks the shared class weights."""
    params = {"w": mx.array(f32(C, D)), "b": [mx.array(f32(C))]}
    x, y, w = mx.array(f32(B, D)), mx.array(labels()), mx.array(f32(C, low=0.5, high=2))

    def loss(p: dict, xi: mx.array, yi: mx.array, weight: mx.array) -> Any:
        return T.weighted(lossfn.cross_entropy)(mx.tanh(p["w"] @ xi + p["b"][0]), yi, weight)

    values, grads = T.per_example_value_and_grad(loss, in_axes=(0, 0, None))(params, x, y, w)
    for i in range(B):
        expected = mx.grad(lambda p: loss(p, x[i], y[i], w).value)(params)
        assert_trees_close(optree.tree_map(lambda g: g[i], grads), expected)
        np.testing.assert_allclose(values.value[i], loss(params, x[i], y[i], w).value, rtol=RTOL)


# --- norms and clipping ----------------------------------------------------------------------


@pytest.mark.parametrize("model_name,method", [("mlp", "linear"), ("mlp", "vmap"), ("token_mlp", "linear"), ("conv", "vmap")])
def test_norms_and_clipping(model_name, method):
    model, _, f, x, rest, _ = setup(model_name, "cross_entropy smoothed")
    params = model.trainable_parameters()
    _, grads = T.per_example_value_and_grad(f, method="vmap")(params, x, *rest)
    expected_norms = np.sqrt(sum((np.asarray(g).reshape(B, -1).astype(np.float64) ** 2).sum(1) for g in optree.tree_leaves(grads)))
    _, norms = T.per_example_grad_norms(f, method=method)(params, x, *rest)
    np.testing.assert_allclose(norms, expected_norms, rtol=RTOL)
    np.testing.assert_allclose(T.grad_norms(grads), expected_norms, rtol=RTOL)

    bound = float(np.median(expected_norms))  # clips some examples, not all
    _, clipped, _ = T.clipped_grad(f, bound, method=method)(params, x, *rest)
    scale = np.minimum(1.0, bound / expected_norms)
    contributions = optree.tree_map(lambda g: np.asarray(g) * scale.reshape(-1, *[1] * (g.ndim - 1)), grads)
    contribution_norms = np.sqrt(sum((c.reshape(B, -1) ** 2).sum(1) for c in optree.tree_leaves(contributions)))
    assert np.all(contribution_norms <= bound * (1 + 1e-6)), (contribution_norms, bound)
    assert_trees_close(clipped, optree.tree_map(lambda c: c.sum(0), contributions))
    assert_trees_close(T.clip_and_sum(grads, bound), clipped)

    loose = float(expected_norms.max()) * 1.01
    assert_trees_close(T.clipped_grad(f, loose, method=method)(params, x, *rest)[1], optree.tree_map(lambda g: g.sum(0), grads))
    assert_trees_close(T.clip_and_sum(grads, loose), optree.tree_map(lambda g: g.sum(0), grads))


@pytest.mark.parametrize("method", ["linear", "vmap"])
def test_noise_is_reproducible_from_the_key(method):
    model, _, f, x, rest, _ = setup("mlp", "mse")
    params = model.trainable_parameters()
    step = mx.compile(T.clipped_grad(f, 0.5, noise_multiplier=2.0, method=method))
    clean = T.clipped_grad(f, 0.5, method=method)(params, x, *rest)[1]
    a = step(params, x, *rest, key=mx.random.key(1))[1]
    b = step(params, x, *rest, key=mx.random.key(1))[1]
    c = step(params, x, *rest, key=mx.random.key(2))[1]
    assert_trees_close(a, b, rtol=0, atol=0)
    noise = np.concatenate([np.asarray(u - v).ravel() for u, v in zip(optree.tree_leaves(a), optree.tree_leaves(clean))])
    other = np.concatenate([np.asarray(u - v).ravel() for u, v in zip(optree.tree_leaves(c), optree.tree_leaves(clean))])
    assert not np.allclose(noise, other)
    assert abs(noise.std() / (2.0 * 0.5) - 1) < 0.15 and abs(noise.mean()) < 0.2, (noise.std(), noise.mean())
    grads = T.per_example_value_and_grad(f, method=method)(params, x, *rest)[1]
    assert_trees_close(T.clip_and_sum(grads, 0.5, noise_multiplier=2.0, key=mx.random.key(1)), a, atol=1e-5)


# --- the two methods, the model, and the errors ---------------------------------------------


def test_linear_method_equals_vmap_method_on_a_custom_module():
    """A user's MLP class (layers in a list, a bias-less layer, one layer used four times)."""

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = [nn.Linear(D, 8), nn.Linear(8, 8, bias=False), nn.Linear(8, C)]

        def __call__(self, x: mx.array) -> mx.array:
            h = nn.relu(self.layers[0](x))
            for _ in range(4):  # shared weights: T = 4 uses, where the norm is cheapest materialised
                h = mx.tanh(self.layers[1](h))
            return self.layers[2](h)

    model = MLP()
    f = T.module_loss(model, lossfn.cross_entropy)
    args = (model.trainable_parameters(), mx.array(f32(B, D)), mx.array(labels()))
    for transform in (T.per_example_value_and_grad, T.per_example_grad_norms):
        assert_trees_close(transform(f, method="linear")(*args), transform(f, method="vmap")(*args))
    assert_trees_close(T.clipped_grad(f, 0.3, method="linear")(*args), T.clipped_grad(f, 0.3, method="vmap")(*args))


def test_model_keeps_its_parameters_and_frozen_layers_are_constants():
    model, row, f, x, rest, _ = setup("mlp", "mse")
    model.layers[0].freeze()
    params = model.trainable_parameters()
    assert "weight" not in params["layers"][0]
    _, expected = loop_reference(model, row.loss, x, rest, (0,))
    for method in ("linear", "vmap"):
        before = model.parameters()
        _, grads = mx.compile(T.per_example_value_and_grad(f, method=method))(params, x, *rest)
        after = model.parameters()
        assert all(a is b for a, b in zip(optree.tree_leaves(before), optree.tree_leaves(after)))
        assert type(model.layers[2]) is nn.Linear
        assert_trees_close(grads, expected)


def test_auto_falls_back_and_linear_says_why():
    model, _, f, x, rest, _ = setup("conv", "mse")
    params = model.trainable_parameters()
    assert_trees_close(T.per_example_grad_norms(f)(params, x, *rest), T.per_example_grad_norms(f, method="vmap")(params, x, *rest))
    with pytest.raises(ValueError, match=r"method='linear' does not apply: parameters conv\.bias, conv\.weight are not weights or biases of nn\.Linear"):
        T.per_example_grad_norms(f, method="linear")(params, x, *rest)
    pure = lambda p, xi: mx.sum(p["w"] * xi)  # noqa: E731
    with pytest.raises(ValueError, match="not a module_loss"):
        T.per_example_grad_norms(pure, method="linear")({"w": mx.ones(3)}, mx.ones((2, 3)))


def test_linear_method_checks_the_batch_axis():
    class Flatten(nn.Module):
        """Folds the token axis into the batch axis: per-example attribution would be wrong."""

        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, C)

        def __call__(self, x: mx.array) -> mx.array:
            return self.lin(x.reshape(-1, 4)).reshape(x.shape[0], -1, C).sum(axis=1)

    model = Flatten()
    f = T.module_loss(model, lossfn.mse_loss)
    args = (model.trainable_parameters(), mx.array(f32(B, 2, 4)), mx.array(f32(B, C)))
    with pytest.raises(ValueError, match=r"saw an input of shape \(6, 4\), not batched on axis 0"):
        T.per_example_grad_norms(f, method="linear")(*args)
    assert_trees_close(T.per_example_grad_norms(f)(*args), T.per_example_grad_norms(f, method="vmap")(*args))


def test_bad_arguments_raise_before_computing():
    f = T.module_loss(nn.Linear(D, C), lossfn.mse_loss)
    with pytest.raises(ValueError, match="method must be one of"):
        T.per_example_value_and_grad(f, method="fast")
    with pytest.raises(ValueError, match="example_reduction must be one of"):
        T.per_example_value_and_grad(f, example_reduction="batchmean")
    with pytest.raises(ValueError, match="max_norm must be > 0, got 0"):
        T.clipped_grad(f, 0.0)
    with pytest.raises(ValueError, match="noise_multiplier=1.0 needs an explicit key"):
        T.clip_and_sum({"w": mx.ones((B, 2))}, 1.0, noise_multiplier=1.0)
    with pytest.raises(ValueError, match=r"share one batch size, saw \[2, 3\]"):
        T.per_example_value_and_grad(f)({}, mx.ones((3, D)), mx.ones((2, C)))
    with pytest.raises(ValueError, match="in_axes has 1 entries for 2 batched arguments"):
        T.per_example_value_and_grad(f, in_axes=(0,))({}, mx.ones((3, D)), mx.ones((3, C)))
