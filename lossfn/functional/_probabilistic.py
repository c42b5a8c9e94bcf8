"""PyTorch's probabilistic losses: KL divergence, Poisson NLL, Gaussian NLL."""

from __future__ import annotations

import warnings

import mlx.core as mx

from transforms import REDUCTIONS

from .. import _checks as C
from .._probabilistic import gaussian_nll_loss as _gaussian_nll
from .._probabilistic import kl_div as _kl_div
from .._probabilistic import poisson_nll_loss as _poisson_nll
from ._graphs import reduce_graph, run_elementwise

Array = mx.array

# PyTorch 2.13's text, word for word (the sentences are joined without spaces there too).
KL_MEAN_WARNING = (
    "reduction: 'mean' divides the total loss by both the batch size and the support size."
    "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
    "'mean' will be changed to behave the same as 'batchmean' in the next major release."
)


def kl_div(
    input: Array,
    target: Array,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    log_target: bool = False,
) -> Array:
    """KL divergence of log-probabilities ``input`` from ``target``; see :class:`lossfn.nn.KLDivLoss`.

    'mean' warns, as PyTorch, that it divides by every element; 'batchmean' divides by ``input.shape[0]``.
    """
    if size_average is None and reduce is None and reduction == "mean":
        warnings.warn(KL_MEAN_WARNING, UserWarning, stacklevel=2)
    reduction = C.reduction_of(size_average, reduce, reduction, REDUCTIONS)
    input, target = C.input_and_target(input, target)
    C.check_floating(target, "target")
    batch_size = input.shape[0] if input.ndim else 1
    input, target = C.broadcast_first(input=input, target=target)
    if reduction == "batchmean" and input.ndim and input.shape[0] != batch_size:
        # PyTorch divides by input.size(0) even where target broadcasts input over a larger batch.
        total = run_elementwise(reduce_graph(_kl_div, "sum", elementwise=True), input, target, log_target=log_target)
        return total / batch_size
    return run_elementwise(reduce_graph(_kl_div, reduction, elementwise=True), input, target, log_target=log_target)


def poisson_nll_loss(
    input: Array,
    target: Array,
    log_input: bool = True,
    full: bool = False,
    size_average: bool | None = None,
    eps: float = 1e-8,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    """Poisson negative log-likelihood; see :class:`lossfn.nn.PoissonNLLLoss`."""
    reduction = C.reduction_of(size_average, reduce, reduction)
    input, target = C.input_and_target(input, target)
    input, target = C.broadcast_first(input=input, target=target)
    graph = reduce_graph(_poisson_nll, reduction, elementwise=True)
    return run_elementwise(graph, input, target, log_input=bool(log_input), full=bool(full), eps=float(eps))


def _homoscedastic_var(input: Array, var: Array) -> Array:
    """``var`` shaped to broadcast against ``input``, by PyTorch's rules, or a ValueError."""
    if var.shape == input.shape:
        return var
    if input.shape[:-1] == var.shape:  # one variance per row: (N, D) input, (N,) var
        return var[..., None]
    mismatched = [v for i, v in zip(input.shape, var.shape) if i != v]
    if var.ndim == input.ndim and sum(mismatched) == 1:  # one axis of size 1: (N, D) input, (N, 1) var
        return var
    raise ValueError(
        f"var is of incorrect size: input has shape {C.shape_str(input)}, var has shape "
        f"{C.shape_str(var)}; expected the input's shape, the input's shape without its last "
        "axis, or the input's shape with one axis of size 1"
    )


def gaussian_nll_loss(
    input: Array,
    target: Array,
    var: Array | float,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> Array:
    """Gaussian negative log-likelihood; see :class:`lossfn.nn.GaussianNLLLoss`.

    ``var`` may be a Python number, shared by every element (it then has no gradient).
    """
    input, target = C.input_and_target(input, target)
    if isinstance(var, (int, float)) and not isinstance(var, bool):
        if var < 0:
            raise ValueError(f"var has negative entry/entries: var={var}")
        var = mx.zeros_like(input) + var
    else:
        var = C.as_array(var, "var")
        C.check_floating(var, "var")
    var = _homoscedastic_var(input, var)
    reduction = C.reduction_of(None, None, reduction)
    input, target, var = C.broadcast_first(input=input, target=target, var=var)
    graph = reduce_graph(_gaussian_nll, reduction, check=_variances_valid, elementwise=True)
    out, ok = run_elementwise(graph, input, target, var, full=bool(full), eps=float(eps))
    C.raise_unless(ok, out, lambda: ValueError("var has negative entry/entries: every variance must be >= 0"), input)
    return out


def _variances_valid(input: Array, target: Array, var: Array, **hyper: Array) -> Array:
    return C.none_hold(var < 0)  # a nan variance is no error: its loss is nan
