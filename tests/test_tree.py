"""Pytree losses as laws: the total equals the hand-written weighted sum of the heads (value and
gradient, eager, vmapped, compiled); the parts reduce to each head's own reduction (PyTorch's,
for the PyTorch heads); per-example gradients of a two-head model equal a loop; structure
errors name the paths that differ."""

from __future__ import annotations

import functools

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import optree
import pytest
import torch.nn.functional as TF
from oracle import assert_close, rng, to_torch

import lossfn
import transforms as T

B, C = 4, 5
RTOL, ATOL = 1e-5, 1e-6
R = rng("tree")


@pytest.fixture(autouse=True)
def _seeded_models(request: pytest.FixtureRequest) -> None:
    mx.random.seed(int(rng(request.node.name).integers(2**31)))


def f32(*shape: int, low: float = -1.0, high: float = 1.0) -> mx.array:
    return mx.array(R.uniform(low, high, size=shape).astype(np.float32))


CLASS_WEIGHTS = f32(C, low=0.5, high=2.0)
HEADS = {
    "cls": T.ignore_index(lossfn.cross_entropy, -100),
    "box": functools.partial(lossfn.smooth_l1_loss, beta=0.5),
    "aux": [lossfn.mse_loss, lambda p, y: T.weighted(lossfn.cross_entropy)(p, y, CLASS_WEIGHTS)],
    "var": lambda p, y: lossfn.gaussian_nll_loss(p[0], y, p[1]),  # a head that outputs (mean, var)
}
WEIGHTS = {"cls": 1.0, "box": mx.array(2.0), "aux": [0.5, 0.25], "var": 1.5}
OUTPUTS = {
    "cls": f32(B, C, low=-3, high=3),
    "box": f32(B, 4),
    "aux": [f32(B, 3), f32(B, C)],
    "var": (f32(B, 2), f32(B, 2, low=0.5, high=2.0)),
}
TARGETS = {
    "cls": mx.array(np.array([1, -100, 4, 0], np.int32)),
    "box": f32(B, 4),
    "aux": [f32(B, 3), mx.array(np.array([0, 2, 2, 3], np.int32))],
    "var": f32(B, 2),
}


def by_hand(outputs: dict, targets: dict) -> mx.array:
    """The total of one example, written out."""

    def total(f, p, y):
        out = f(p, y)
        return mx.sum(out.value if isinstance(out, T.Weighted) else out)

    return (
        1.0 * total(HEADS["cls"], outputs["cls"], targets["cls"])
        + 2.0 * total(HEADS["box"], outputs["box"], targets["box"])
        + 0.5 * total(HEADS["aux"][0], outputs["aux"][0], targets["aux"][0])
        + 0.25 * total(HEADS["aux"][1], outputs["aux"][1], targets["aux"][1])
        + 1.5 * total(HEADS["var"], outputs["var"], targets["var"])
    )


def close(a, b, rtol=RTOL, atol=ATOL):
    for x, y in zip(optree.tree_leaves(a), optree.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


LOSS = T.tree_loss(HEADS, WEIGHTS)


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_total_equals_the_hand_written_sum(compile):
    per_example = mx.vmap(LOSS)
    per_example = mx.compile(per_example) if compile else per_example
    expected = mx.stack([by_hand(*optree.tree_map(lambda a: a[i], (OUTPUTS, TARGETS))) for i in range(B)])
    close(per_example(OUTPUTS, TARGETS), expected)
    for reduction in ("sum", "mean"):
        reduced = T.reduce(LOSS, reduction)
        reduced = mx.compile(reduced) if compile else reduced
        close(reduced(OUTPUTS, TARGETS), mx.sum(expected) if reduction == "sum" else mx.mean(expected))


def test_gradient_of_the_total_equals_the_hand_written_gradient():
    def hand(outputs):
        return mx.sum(mx.stack([by_hand(*optree.tree_map(lambda a: a[i], (outputs, TARGETS))) for i in range(B)]))

    ours = mx.grad(lambda o: T.reduce(LOSS, "sum")(o, TARGETS))(OUTPUTS)
    close(ours, mx.grad(hand)(OUTPUTS))


def test_sum_law_over_heads():
    """reduce(tree_loss(fs, ws), 'sum') == sum_h ws[h] * reduce(fs[h], 'sum')."""
    heads = optree.tree_leaves(HEADS, is_leaf=callable)
    weights = optree.tree_leaves(WEIGHTS)
    outs = optree.tree_structure(HEADS, is_leaf=callable).flatten_up_to(OUTPUTS)
    targets = optree.tree_structure(HEADS, is_leaf=callable).flatten_up_to(TARGETS)
    expected = sum(w * T.reduce(f, "sum")(p, y) for f, w, p, y in zip(heads, weights, outs, targets))
    close(T.reduce(LOSS, "sum")(OUTPUTS, TARGETS), expected)


def test_example_reduction_mean():
    loss = T.tree_loss({"box": lossfn.mse_loss, "cls": lossfn.cross_entropy}, example_reduction="mean")
    outputs, targets = {"box": OUTPUTS["box"], "cls": OUTPUTS["cls"]}, {"box": TARGETS["box"], "cls": TARGETS["aux"][1]}
    expected = mx.mean(mx.square(outputs["box"] - targets["box"]), axis=1) + T.batched(lossfn.cross_entropy)(
        outputs["cls"], targets["cls"]
    )
    close(mx.vmap(loss)(outputs, targets), expected)


def test_parts_reduce_to_each_heads_torch_loss():
    means = mx.compile(T.reduce_tree(LOSS.parts, "mean"))(OUTPUTS, TARGETS)
    assert optree.tree_structure(means) == optree.tree_structure({"cls": 0, "box": 0, "aux": [0, 0], "var": 0})
    cls = TF.cross_entropy(to_torch(OUTPUTS["cls"]), to_torch(TARGETS["cls"]).long(), ignore_index=-100)
    assert_close(means["cls"], cls)
    assert_close(means["box"], TF.smooth_l1_loss(to_torch(OUTPUTS["box"]), to_torch(TARGETS["box"]), beta=0.5))
    assert_close(means["aux"][0], TF.mse_loss(to_torch(OUTPUTS["aux"][0]), to_torch(TARGETS["aux"][0])))
    aux = TF.cross_entropy(to_torch(OUTPUTS["aux"][1]), to_torch(TARGETS["aux"][1]).long(), weight=to_torch(CLASS_WEIGHTS))
    assert_close(means["aux"][1], aux)
    mean, var = (to_torch(a) for a in OUTPUTS["var"])
    assert_close(means["var"], TF.gaussian_nll_loss(mean, to_torch(TARGETS["var"]), var))
    sums = T.reduce_tree(LOSS.parts, "sum")(OUTPUTS, TARGETS)
    weighted_sum = sum(w * s for w, s in zip(optree.tree_leaves(WEIGHTS), optree.tree_leaves(sums)))
    close(weighted_sum, T.reduce(LOSS, "sum")(OUTPUTS, TARGETS))


def test_array_weights_are_traced_and_differentiable():
    """Learned head weights (uncertainty weighting): build the loss inside the step."""

    def step(log_w, outputs, targets):
        w = {"cls": mx.exp(log_w[0]), "box": mx.exp(log_w[1])}
        return T.reduce(T.tree_loss({"cls": HEADS["cls"], "box": HEADS["box"]}, w), "sum")(outputs, targets)

    outputs = {"cls": OUTPUTS["cls"], "box": OUTPUTS["box"]}
    targets = {"cls": TARGETS["cls"], "box": TARGETS["box"]}
    log_w = mx.array([0.3, -0.2])
    grad = mx.compile(mx.grad(step))(log_w, outputs, targets)
    heads = T.reduce_tree(T.tree_loss({"cls": HEADS["cls"], "box": HEADS["box"]}).parts, "sum")(outputs, targets)
    close(grad, mx.exp(log_w) * mx.stack([heads["cls"], heads["box"]]))


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(6, 8)
        self.cls = nn.Linear(8, C)
        self.box = nn.Linear(8, 4)

    def __call__(self, x: mx.array) -> dict:
        h = mx.tanh(self.trunk(x))
        return {"cls": self.cls(h), "box": self.box(h)}


@pytest.mark.parametrize("method", ["linear", "vmap"])
def test_per_example_grads_of_a_two_head_model_equal_loop(method):
    model = TwoHeads()
    heads = T.tree_loss({"cls": HEADS["cls"], "box": HEADS["box"]}, {"cls": 1.0, "box": 3.0})
    x, targets = f32(B, 6), {"cls": TARGETS["cls"], "box": TARGETS["box"]}
    values, grads = mx.compile(T.per_example_value_and_grad(T.module_loss(model, heads), method=method))(
        model.trainable_parameters(), x, targets
    )
    for i in range(B):
        target = optree.tree_map(lambda a: a[i], targets)
        value, expected = nn.value_and_grad(model, lambda: heads(optree.tree_map(lambda o: o[0], model(x[i : i + 1])), target))()
        close(values[i], value)
        close(optree.tree_map(lambda g: g[i], grads), expected)


# --- structure errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "outputs,message",
    [
        ({"cls": 0, "box": 0, "aux": [0, 0]}, r"outputs\['var'\] is missing"),
        ({**OUTPUTS, "extra": 0}, r"outputs\['extra'\] has no loss"),
        ({**OUTPUTS, "aux": [0]}, r"outputs\['aux'\]\[1\] is missing"),
        ({**OUTPUTS, "aux": {"a": 0, "b": 0}}, r"outputs\['aux'\] has type dict, expected a sequence with entries \[0, 1\]"),
        ({**OUTPUTS, "aux": 0}, r"outputs\['aux'\] has type int, expected a sequence"),
        ([0, 1], r"outputs \(top level\) has type list, expected a dict with entries \['aux', 'box', 'cls', 'var'\]"),
    ],
)
def test_structure_errors_name_the_paths(outputs, message):
    with pytest.raises(ValueError, match=message):
        LOSS.parts(outputs, TARGETS)
    with pytest.raises(ValueError, match=message.replace("outputs", "targets")):
        LOSS(OUTPUTS, outputs)


def test_every_difference_is_named():
    with pytest.raises(ValueError, match=r"outputs\['box'\] is missing; outputs\['boxes'\] has no loss; outputs\['aux'\]\[1\] is missing"):
        LOSS({"cls": 0, "boxes": 0, "aux": [0], "var": 0}, TARGETS)


def test_weight_errors():
    with pytest.raises(ValueError, match=r"weights\['aux'\]\[1\] is missing"):
        T.tree_loss(HEADS, {**WEIGHTS, "aux": [1.0]})
    with pytest.raises(TypeError, match=r"weights\['aux'\]\[0\] has type str"):
        T.tree_loss(HEADS, {**WEIGHTS, "aux": ["1", 1.0]})
    with pytest.raises(TypeError, match="losses must be a pytree of callables"):
        T.tree_loss({"cls": 1.0})
    with pytest.raises(ValueError, match="example_reduction must be one of"):
        T.tree_loss(HEADS, example_reduction="batchmean")
