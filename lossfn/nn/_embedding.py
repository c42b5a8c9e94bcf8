"""Embedding and ranking loss modules: cosine embedding, triplet margin (with any distance),
margin ranking, hinge embedding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx

from .. import functional as F
from ._base import _Loss


class CosineEmbeddingLoss(_Loss):
    r"""Pulls pairs labelled 1 together and pushes pairs labelled -1 below a cosine ``margin``:

    .. math:: \ell_n = 1 - \cos(x_{1n}, x_{2n}) \text{ if } y_n = 1, \quad
              \max(0, \cos(x_{1n}, x_{2n}) - m) \text{ if } y_n = -1

    (0 for any other label). The cosine adds :math:`10^{-12}` to each squared norm, as
    PyTorch. Shape: inputs ``(N, D)`` or ``(D,)``, ``target`` ``(N,)`` or ``()``; output a
    scalar, or ``(N,)`` for 'none'.
    """

    def __init__(self, margin: float = 0.0, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def _hyper(self) -> dict[str, Any]:
        return {"margin": self.margin, **super()._hyper()}

    def __call__(self, input1: mx.array, input2: mx.array, target: mx.array) -> mx.array:
        return F.cosine_embedding_loss(input1, input2, target, margin=self.margin, reduction=self.reduction)


class TripletMarginLoss(_Loss):
    r"""Triplet loss under the :math:`p`-norm distance :math:`d(a, b) = \lVert a - b + \epsilon \rVert_p`:

    .. math:: \ell_n = \max(0, m + d(a_n, p_n) - d(a_n, n_n))

    With ``swap``, :math:`d(a_n, n_n)` becomes :math:`\min(d(a_n, n_n), d(p_n, n_n))`.
    ``margin > 0``; ``p`` in :math:`[0, \infty]`. Shape: ``(N, D)`` or ``(D,)`` each; output
    a scalar, or ``(N,)`` for 'none'.
    """

    def __init__(
        self,
        margin: float = 1.0,
        p: float = 2.0,
        eps: float = 1e-6,
        swap: bool = False,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        if margin <= 0:
            raise ValueError(f"TripletMarginLoss: expected margin to be greater than 0, got {margin} instead")
        self.margin = margin
        self.p = p
        self.eps = eps
        self.swap = swap

    def _hyper(self) -> dict[str, Any]:
        return {"margin": self.margin, "p": self.p, "eps": self.eps, "swap": self.swap, **super()._hyper()}

    def __call__(self, anchor: mx.array, positive: mx.array, negative: mx.array) -> mx.array:
        return F.triplet_margin_loss(
            anchor, positive, negative, margin=self.margin, p=self.p, eps=self.eps, swap=self.swap, reduction=self.reduction
        )


class TripletMarginWithDistanceLoss(_Loss):
    r"""Triplet loss under any distance :math:`d`: :math:`\ell_n = \max(0, m + d(a_n, p_n) - d(a_n, n_n))`.

    ``distance_function`` is batched, as in PyTorch: it takes the inputs as given (``(N, D)``
    pairs, or ``(D,)``) and returns one distance per example; ``None`` is the pairwise
    distance (:math:`p = 2`, :math:`\epsilon = 10^{-6}`). ``margin > 0``; ``swap`` as
    :class:`TripletMarginLoss`. Output a scalar, or ``(N,)`` for 'none'.
    """

    def __init__(
        self,
        *,
        distance_function: Callable[[mx.array, mx.array], mx.array] | None = None,
        margin: float = 1.0,
        swap: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(None, None, reduction)
        if margin <= 0:
            raise ValueError(
                f"TripletMarginWithDistanceLoss: expected margin to be greater than 0, got {margin} instead"
            )
        self.distance_function = distance_function
        self.margin = margin
        self.swap = swap

    def _hyper(self) -> dict[str, Any]:
        return {"distance_function": self.distance_function, "margin": self.margin, "swap": self.swap, **super()._hyper()}

    def __call__(self, anchor: mx.array, positive: mx.array, negative: mx.array) -> mx.array:
        return F.triplet_margin_with_distance_loss(
            anchor,
            positive,
            negative,
            distance_function=self.distance_function,
            margin=self.margin,
            swap=self.swap,
            reduction=self.reduction,
        )


class MarginRankingLoss(_Loss):
    r"""Ranking hinge: :math:`\ell_n = \max(0, -y_n (x_{1n} - x_{2n}) + m)` for labels :math:`y_n = \pm 1`.

    Shape: ``input1``, ``input2`` and ``target`` with the same number of axes, broadcastable,
    ``(N,)`` or ``()``; output a scalar, or the broadcast shape for 'none'.
    """

    def __init__(self, margin: float = 0.0, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def _hyper(self) -> dict[str, Any]:
        return {"margin": self.margin, **super()._hyper()}

    def __call__(self, input1: mx.array, input2: mx.array, target: mx.array) -> mx.array:
        return F.margin_ranking_loss(input1, input2, target, margin=self.margin, reduction=self.reduction)


class HingeEmbeddingLoss(_Loss):
    r"""Hinge embedding loss of distances ``input`` and labels :math:`y = \pm 1`:

    .. math:: \ell_n = x_n \text{ if } y_n = 1, \quad \max(0, m - x_n) \text{ if } y_n = -1

    Shape: ``input`` ``(*)``, ``target`` broadcastable to it; output a scalar, or ``(*)``.
    """

    def __init__(self, margin: float = 1.0, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def _hyper(self) -> dict[str, Any]:
        return {"margin": self.margin, **super()._hyper()}

    def __call__(self, input: mx.array, target: mx.array) -> mx.array:
        return F.hinge_embedding_loss(input, target, margin=self.margin, reduction=self.reduction)
