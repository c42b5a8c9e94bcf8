"""Bad input gets a clear error before any computation, naming the argument and what was seen;
where PyTorch raises we raise, where it warns we warn."""

from __future__ import annotations

import mlx.core as mx
import pytest
import torch
import torch.nn.functional as TF

import lossfn.functional as F
import lossfn.nn as L

LOGITS = mx.zeros((4, 3))
LABELS = mx.array([0, 1, 2, 1])


def raises_like_torch(ours, theirs, error, match):
    """Our call raises ``error`` matching ``match``; torch's call raises too."""
    with pytest.raises(error, match=match):
        ours()
    with pytest.raises((RuntimeError, ValueError, IndexError, TypeError)):
        theirs()


def t(x):
    return torch.tensor(x.tolist()) if isinstance(x, mx.array) else x


CASES = {
    "unknown reduction": (
        lambda: F.mse_loss(mx.zeros(3), mx.zeros(3), reduction="avg"),
        lambda: TF.mse_loss(torch.zeros(3), torch.zeros(3), reduction="avg"),
        ValueError, r"reduction must be one of \('none', 'mean', 'sum'\), got 'avg'",
    ),
    "batchmean outside kl_div": (
        lambda: F.cross_entropy(LOGITS, LABELS, reduction="batchmean"),
        lambda: TF.cross_entropy(torch.zeros(4, 3), t(LABELS), reduction="batchmean"),
        ValueError, "got 'batchmean'",
    ),
    "float target where an index is needed": (
        lambda: F.nll_loss(LOGITS, mx.zeros(4)),
        lambda: TF.nll_loss(torch.zeros(4, 3), torch.zeros(4)),
        TypeError, r"target must be an integer array of class indices, got dtype mlx.core.float32 with shape \(4,\)",
    ),
    "integer target where probabilities are needed": (
        lambda: F.cross_entropy(LOGITS, mx.zeros((4, 3), dtype=mx.int32)),
        lambda: TF.cross_entropy(torch.zeros(4, 3), torch.zeros(4, 3, dtype=torch.long)),
        TypeError, r"target \(class probabilities\) must be a floating-point array",
    ),
    "class index out of range": (
        lambda: F.cross_entropy(LOGITS, mx.array([0, 1, 3, 1])),
        lambda: TF.cross_entropy(torch.zeros(4, 3), torch.tensor([0, 1, 3, 1])),
        IndexError, r"target holds class index 3, outside \[0, 3\) and not the ignore_index -100",
    ),
    "negative class index": (
        lambda: F.nll_loss(LOGITS, mx.array([0, -1, 2, 1])),
        lambda: TF.nll_loss(torch.zeros(4, 3), torch.tensor([0, -1, 2, 1])),
        IndexError, "class index -1",
    ),
    "target batch size mismatch": (
        lambda: F.cross_entropy(LOGITS, mx.array([0, 1, 2])),
        lambda: TF.cross_entropy(torch.zeros(4, 3), torch.tensor([0, 1, 2])),
        ValueError, r"target must have shape \(4,\) \(class indices\) or \(4, 3\) \(class probabilities\) for input of shape \(4, 3\); got \(3,\)",
    ),
    "K-dim target shape mismatch": (
        lambda: F.cross_entropy(mx.zeros((2, 3, 4)), mx.zeros((2, 5), dtype=mx.int32)),
        lambda: TF.cross_entropy(torch.zeros(2, 3, 4), torch.zeros(2, 5, dtype=torch.long)),
        ValueError, r"target must have shape \(2, 4\)",
    ),
    "class weight of the wrong length": (
        lambda: F.cross_entropy(LOGITS, LABELS, weight=mx.ones(4)),
        lambda: TF.cross_entropy(torch.zeros(4, 3), t(LABELS), weight=torch.ones(4)),
        ValueError, r"weight must have one entry per class, shape \(3,\); got shape \(4,\)",
    ),
    "label smoothing out of range": (
        lambda: F.cross_entropy(LOGITS, LABELS, label_smoothing=1.5),
        lambda: TF.cross_entropy(torch.zeros(4, 3), t(LABELS), label_smoothing=1.5),
        ValueError, "label_smoothing must be between 0.0 and 1.0, got 1.5",
    ),
    "0-d input to cross_entropy": (
        lambda: F.cross_entropy(mx.array(1.0), mx.array(0)),
        lambda: TF.cross_entropy(torch.tensor(1.0), torch.tensor(0)),
        ValueError, "input must have a class axis",
    ),
    "bce shape mismatch": (
        lambda: F.binary_cross_entropy(mx.full((3, 2), 0.5), mx.zeros((3, 1))),
        lambda: TF.binary_cross_entropy(torch.full((3, 2), 0.5), torch.zeros(3, 1)),
        ValueError, r"target must have the shape of input: input has shape \(3, 2\), target has shape \(3, 1\)",
    ),
    "bce input outside [0, 1]": (
        lambda: F.binary_cross_entropy(mx.array([0.5, 1.5]), mx.zeros(2)),
        lambda: TF.binary_cross_entropy(torch.tensor([0.5, 1.5]), torch.zeros(2)),
        ValueError, "all elements of input should be between 0 and 1",
    ),
    "bce target outside [0, 1]": (
        lambda: F.binary_cross_entropy(mx.array([0.5, 0.5]), mx.array([0.0, -1.0])),
        lambda: TF.binary_cross_entropy(torch.tensor([0.5, 0.5]), torch.tensor([0.0, -1.0])),
        ValueError, "all elements of target should be between 0 and 1",
    ),
    "bce with logits shape mismatch": (
        lambda: F.binary_cross_entropy_with_logits(mx.zeros((3, 2)), mx.zeros((3,))),
        lambda: TF.binary_cross_entropy_with_logits(torch.zeros(3, 2), torch.zeros(3)),
        ValueError, r"target must have the shape of input",
    ),
    "pos_weight not broadcastable": (
        lambda: F.binary_cross_entropy_with_logits(mx.zeros((3, 2)), mx.zeros((3, 2)), pos_weight=mx.ones(3)),
        lambda: TF.binary_cross_entropy_with_logits(torch.zeros(3, 2), torch.zeros(3, 2), pos_weight=torch.ones(3)),
        ValueError, r"pos_weight of shape \(3,\) cannot be broadcast to the shape of input, \(3, 2\)",
    ),
    "regression weight of the wrong shape": (
        lambda: F.mse_loss(mx.zeros((3, 2)), mx.zeros((3, 2)), weight=mx.ones(2)),
        lambda: TF.mse_loss(torch.zeros(3, 2), torch.zeros(3, 2), weight=torch.ones(2)),
        ValueError, r"weight must have the shape of input: input has shape \(3, 2\), weight has shape \(2,\)",
    ),
    "non-broadcastable regression target": (
        lambda: F.l1_loss(mx.zeros((3, 2)), mx.zeros((4,))),
        lambda: TF.l1_loss(torch.zeros(3, 2), torch.zeros(4)),
        ValueError, r"input of shape \(3, 2\) and target of shape \(4,\) cannot be broadcast together",
    ),
    "negative beta": (
        lambda: F.smooth_l1_loss(mx.zeros(3), mx.zeros(3), beta=-1.0),
        lambda: TF.smooth_l1_loss(torch.zeros(3), torch.zeros(3), beta=-1.0),
        ValueError, "smooth_l1_loss does not support negative values for beta",
    ),
    "non-positive delta": (
        lambda: F.huber_loss(mx.zeros(3), mx.zeros(3), delta=0.0),
        lambda: TF.huber_loss(torch.zeros(3), torch.zeros(3), delta=0.0),
        ValueError, "huber_loss does not support non-positive values for delta",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_raises_like_torch(name):
    ours, theirs, error, match = CASES[name]
    if name == "non-broadcastable regression target":
        with pytest.warns(UserWarning):
            raises_like_torch(ours, lambda: _quiet(theirs), error, match)
    else:
        raises_like_torch(ours, theirs, error, match)


def _quiet(fn):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def test_ignore_index_is_not_an_out_of_range_index():
    out = F.cross_entropy(LOGITS, mx.array([0, 7, 7, 1]), ignore_index=7)
    assert out.item() == pytest.approx(float(torch.log(torch.tensor(3.0))), rel=1e-6)


def test_deprecated_size_average_and_reduce_warn_and_map_like_torch():
    x, y = mx.array([1.0, 2.0]), mx.array([0.0, 0.0])
    for kwargs, expected in [({"size_average": False}, 5.0), ({"reduce": False}, [1.0, 4.0]), ({"size_average": True}, 2.5)]:
        with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
            out = F.mse_loss(x, y, **kwargs)
        assert out.tolist() == expected


def test_unknown_reduction_in_a_module_raises_at_construction():
    with pytest.raises(ValueError, match="reduction must be one of"):
        L.MSELoss(reduction="elementwise")


def test_non_array_input_names_the_argument():
    with pytest.raises(TypeError, match="input must be an mx.array, got object"):
        F.l1_loss(object(), mx.zeros(2))


# Value checks of a large input under mx.grad: there the check is evaluated apart from the loss
# (or, for BCE, whose gradient is a custom vjp, after the loss turned out nan).
_N = 1 << 16  # rows: at least SHAPE_DEPENDENT_ABOVE elements of input, where the probe runs


def _large(kind, bad):
    """(loss of the input, input, error, message) with one bad value in a large batch, or none."""
    x = mx.random.uniform(0.1, 0.9, (_N, 2), key=mx.random.key(0))
    index = mx.zeros((_N,), dtype=mx.int32)
    if kind == "cross_entropy":
        y = index.at[7].add(5) if bad else index
        return (lambda a, r: F.cross_entropy(a, y, reduction=r)), x, IndexError, "class index 5"
    if kind == "nll_loss":
        y = index.at[7].add(-3) if bad else index
        return (lambda a, r: F.nll_loss(a, y, reduction=r)), x, IndexError, "class index -3"
    if kind == "bce input":
        p = x.at[3, 1].add(1.0) if bad else x
        return (lambda a, r: F.binary_cross_entropy(a, mx.zeros_like(a), reduction=r)), p, ValueError, "elements of input"
    if kind == "bce target":
        y = mx.zeros_like(x).at[3, 1].add(-1.0) if bad else mx.zeros_like(x)
        return (lambda a, r: F.binary_cross_entropy(a, y, reduction=r)), x, ValueError, "elements of target"
    if kind == "gaussian var":
        var = mx.ones_like(x).at[5, 0].add(-2.0) if bad else mx.ones_like(x)
        return (lambda a, r: F.gaussian_nll_loss(a, mx.zeros_like(a), var, reduction=r)), x, ValueError, "var has negative"
    y = index.at[9].add(2) if bad else index  # multi_margin_loss
    return (lambda a, r: F.multi_margin_loss(a, y, reduction=r)), x, IndexError, "class index 2"


LARGE_CHECKS = ("cross_entropy", "nll_loss", "bce input", "bce target", "gaussian var", "multi_margin_loss")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", LARGE_CHECKS)
def test_value_checks_of_a_large_input_raise_under_grad(kind, reduction):
    loss, x, error, match = _large(kind, bad=True)
    with pytest.raises(error, match=match):
        loss(x, reduction)
    with pytest.raises(error, match=match):
        mx.value_and_grad(lambda a: loss(a, reduction).sum())(x)
    loss, x, _, _ = _large(kind, bad=False)
    value, grad = mx.value_and_grad(lambda a: loss(a, reduction).sum())(x)
    assert value.item() == loss(x, reduction).sum().item()
    assert grad.shape == x.shape and bool(mx.all(mx.isfinite(grad)))
