"""The torch.nn-style classes: same constructor signatures as torch, same values as torch's
modules, weights as buffers that are never trainable, a readable repr."""

from __future__ import annotations

import inspect

import mlx.core as mx
import mlx.nn
import numpy as np
import pytest
import torch
from mlx.utils import tree_flatten
from oracle import assert_close, to_torch

import lossfn.nn as L

R = np.random.default_rng(3)
LOGITS = R.normal(size=(6, 4)).astype(np.float32)
LABELS = R.integers(0, 4, size=6)
W = R.uniform(0.5, 2, size=4).astype(np.float32)
PROBS = (1 / (1 + np.exp(-LOGITS))).astype(np.float32)
BINARY = (R.uniform(size=(6, 4)) > 0.5).astype(np.float32)

MODULES = {
    "L1Loss": ({}, (LOGITS, PROBS)),
    "MSELoss": ({"reduction": "sum"}, (LOGITS, PROBS)),
    "SmoothL1Loss": ({"beta": 0.5}, (LOGITS, PROBS)),
    "HuberLoss": ({"delta": 0.7, "reduction": "none"}, (LOGITS, PROBS)),
    "CrossEntropyLoss": ({"weight": W, "ignore_index": 1, "label_smoothing": 0.1}, (LOGITS, LABELS)),
    "NLLLoss": ({"weight": W, "reduction": "sum"}, (LOGITS, LABELS)),
    "BCELoss": ({"weight": W}, (PROBS, BINARY)),
    "BCEWithLogitsLoss": ({"weight": W, "pos_weight": W[::-1].copy()}, (LOGITS, BINARY)),
}


def to_kwargs(kwargs, convert):
    return {k: convert(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_equals_torch_module(name):
    kwargs, inputs = MODULES[name]
    ours = getattr(L, name)(**to_kwargs(kwargs, mx.array))
    theirs = getattr(torch.nn, name)(**to_kwargs(kwargs, torch.tensor))
    assert_close(ours(*(mx.array(x) for x in inputs)), theirs(*(to_torch(x) for x in inputs)))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_constructor_signature_equals_torch(name):
    ours = inspect.signature(getattr(L, name).__init__).parameters
    theirs = inspect.signature(getattr(torch.nn, name).__init__).parameters
    assert list(ours) == list(theirs)
    assert [p.default for p in ours.values()] == [p.default for p in theirs.values()]


@pytest.mark.parametrize("name", ["CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss"])
def test_weights_are_buffers_never_trainable(name):
    kwargs, _ = MODULES[name]
    loss = getattr(L, name)(**to_kwargs(kwargs, mx.array))
    buffers = {k for k, v in kwargs.items() if isinstance(v, np.ndarray)}
    assert set(loss.parameters()) == buffers  # saved with the module
    assert loss.trainable_parameters() == {}
    loss.unfreeze()
    assert loss.trainable_parameters() == {}

    class Model(mlx.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = mlx.nn.Linear(4, 4)
            self.loss = loss

    model = Model()
    model.unfreeze()
    trainable = {path for path, _ in tree_flatten(model.trainable_parameters())}
    assert trainable == {"linear.weight", "linear.bias"}
    assert {path for path, _ in tree_flatten(model.parameters())} == trainable | {f"loss.{b}" for b in buffers}


def test_loss_module_inside_value_and_grad_trains_only_the_model():
    loss_fn = L.CrossEntropyLoss(weight=mx.array(W))
    model = mlx.nn.Linear(4, 4)

    def objective(model, x, y):
        return loss_fn(model(x), y)

    value, grads = mlx.nn.value_and_grad(model, objective)(model, mx.array(LOGITS), mx.array(LABELS))
    assert set(grads) == {"weight", "bias"}
    assert np.isfinite(value.item())


def test_repr_is_readable():
    loss = L.CrossEntropyLoss(weight=mx.ones(3), label_smoothing=0.1)
    assert repr(loss) == "CrossEntropyLoss(weight=array(3,), reduction='mean', ignore_index=-100, label_smoothing=0.1)"
    assert repr(L.HuberLoss(delta=2.0)) == "HuberLoss(reduction='mean', delta=2.0)"
