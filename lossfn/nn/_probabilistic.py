"""Probabilistic loss modules: KL divergence, Poisson NLL, Gaussian NLL."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .. import functional as F
from ._base import _Loss


class KLDivLoss(_Loss):
    r"""Kullback-Leibler divergence of log-probabilities ``input`` from ``target``, pointwise:

    .. math:: \ell_n = y_n (\log y_n - x_n) \quad\text{or, with log\_target:}\quad e^{y_n} (y_n - x_n)

    A target of exactly 0 contributes 0. 'batchmean' (the true KL divergence) divides the sum
    by the batch size ``input.shape[0]``; 'mean' divides by every element, and warns as
    PyTorch does. Shape: ``input`` ``(*)``, ``target`` the same (broadcastable); output a
    scalar, or the input's shape for 'none'.
    """

    reductions = ("none", "mean", "sum", "batchmean")

    def __init__(
        self,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
        log_target: bool = False,
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def _hyper(self) -> dict[str, Any]:
        return {**super()._hyper(), "log_target": self.log_target}

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class PoissonNLLLoss(_Loss):
    r"""Negative log-likelihood of counts under a Poisson distribution:

    .. math:: \ell_n = e^{x_n} - y_n x_n \ \text{(log\_input)} \quad\text{or}\quad x_n - y_n \log(x_n + \epsilon)

    ``full`` adds Stirling's term :math:`y \log y - y + \frac12 \log(2\pi y)` where
    :math:`y > 1`. Shape: ``input`` ``(*)``, ``target`` the same; output a scalar, or ``(*)``.
    """

    def __init__(
        self,
        log_input: bool = True,
        full: bool = False,
        size_average: bool | None = None,
        eps: float = 1e-8,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.log_input = log_input
        self.full = full
        self.eps = eps

    def _hyper(self) -> dict[str, Any]:
        return {"log_input": self.log_input, "full": self.full, "eps": self.eps, **super()._hyper()}

    def __call__(self, log_input: mx.array, target: mx.array) -> mx.array:
        return F.poisson_nll_loss(
            log_input, target, log_input=self.log_input, full=self.full, eps=self.eps, reduction=self.reduction
        )


class GaussianNLLLoss(_Loss):
    r"""Negative log-likelihood of targets under Gaussians of predicted mean and variance:

    .. math:: \ell_n = \tfrac12 \left(\log \max(v_n, \epsilon) + \frac{(x_n - y_n)^2}{\max(v_n, \epsilon)}\right)
              \; [+ \tfrac12 \log 2\pi \text{ if full}]

    The clamp at ``eps`` does not stop the gradient (PyTorch clamps under ``no_grad``);
    a negative variance raises. Shape: ``input`` ``(N, *)`` or ``(*)``, ``target`` the same
    (broadcastable); ``var`` the input's shape, that shape without its last axis, that shape
    with one axis of size 1, or a Python number; output a scalar, or the input's shape.
    """

    def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean") -> None:
        super().__init__(None, None, reduction)
        self.full = full
        self.eps = eps

    def _hyper(self) -> dict[str, Any]:
        return {"full": self.full, "eps": self.eps, **super()._hyper()}

    def __call__(self, input: mx.array, target: mx.array, var: mx.array | float) -> mx.array:
        return F.gaussian_nll_loss(input, target, var, full=self.full, eps=self.eps, reduction=self.reduction)
