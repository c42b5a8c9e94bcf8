"""PyTorch's regression losses: L1, MSE, smooth L1, Huber."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx

from .. import _checks as C
from .._regression import huber_loss as _huber
from .._regression import l1_loss as _l1
from .._regression import mse_loss as _mse
from .._regression import smooth_l1_loss as _smooth_l1
from ._graphs import reduce_graph, run_elementwise

Array = mx.array


def _regression(
    loss: Callable[..., Any],
    input: Any,
    target: Any,
    reduction: str,
    weight: Any,
    scaling: str,
    **hyper: Any,
) -> Array:
    input, target = C.input_and_target(input, target)
    input, target = C.broadcast_pair(input, target)
    if weight is None:
        return run_elementwise(reduce_graph(loss, reduction, elementwise=True), input, target, **hyper)
    weight = C.as_array(weight, "weight")
    if weight.shape != input.shape:
        raise ValueError(
            f"weight must have the shape of input: input has shape {C.shape_str(input)}, "
            f"weight has shape {C.shape_str(weight)}"
        )
    return run_elementwise(reduce_graph(loss, reduction, scaling, elementwise=True), input, target, weight, **hyper)


def l1_loss(
    input: Array,
    target: Array,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: Array | None = None,
) -> Array:
    """Mean absolute error; see :class:`lossfn.nn.L1Loss`. With ``weight``, 'mean' is ``sum(w l) / sum(w)``."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    return _regression(_l1, input, target, reduction, weight, "normalize")


def mse_loss(
    input: Array,
    target: Array,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: Array | None = None,
) -> Array:
    """Mean squared error; see :class:`lossfn.nn.MSELoss`. With ``weight``, 'mean' is ``sum(w l) / sum(w)``."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    return _regression(_mse, input, target, reduction, weight, "normalize")


def smooth_l1_loss(
    input: Array,
    target: Array,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    beta: float = 1.0,
) -> Array:
    """Smooth L1 loss; see :class:`lossfn.nn.SmoothL1Loss`."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    if not beta >= 0:  # nan too
        raise ValueError(f"smooth_l1_loss does not support negative values for beta, got beta={beta}")
    return _regression(_smooth_l1, input, target, reduction, None, "rescale", beta=float(beta))


def huber_loss(
    input: Array,
    target: Array,
    reduction: str = "mean",
    delta: float = 1.0,
    weight: Array | None = None,
) -> Array:
    """Huber loss; see :class:`lossfn.nn.HuberLoss`. With ``weight``, 'mean' is ``mean(w l)``."""
    reduction = C.reduction_of(None, None, reduction)
    if not delta > 0:  # nan too
        raise ValueError(f"huber_loss does not support non-positive values for delta, got delta={delta}")
    return _regression(_huber, input, target, reduction, weight, "rescale", delta=float(delta))
