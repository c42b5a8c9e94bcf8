"""Sequence loss modules: connectionist temporal classification (CTC)."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .. import functional as F
from ._base import _Loss


class CTCLoss(_Loss):
    r"""Connectionist temporal classification loss: the negative log-likelihood of a target
    sequence summed over all its alignments with the input frames.

    .. math:: \ell_n = -\log \sum_{\pi \in \mathcal{B}^{-1}(y_n)} \prod_{t=0}^{L_n-1} p_{t,n}(\pi_t)

    where :math:`\mathcal{B}` merges repeated labels and then removes blanks (repeated labels
    need a blank between them), :math:`L_n` is the input length and :math:`y_n` the first
    ``target_lengths[n]`` labels. A target no alignment fits costs ``inf``; with
    ``zero_infinity`` it costs 0 and its gradient is 0. 'mean' divides each :math:`\ell_n` by
    its target length (at least 1) and averages over the batch; 'sum' adds them up.

    The gradient is the true derivative with respect to ``log_probs``. PyTorch's CTC backward
    returns that plus ``exp(log_probs)`` (the gradient with respect to logits whose log-softmax
    is ``log_probs``); both agree once taken through ``log_softmax``.

    Compile around it, not through it: ``transforms.value_and_grad_around(model, ctc)``
    compiles the model's forward and backward and runs this loss between them (see
    :func:`lossfn.functional.ctc_loss`).

    Shape: ``log_probs`` ``(T, N, C)`` or ``(T, C)`` log-probabilities (e.g. a log-softmax);
    ``targets`` padded ``(N, S)`` or concatenated ``(sum(target_lengths),)`` labels in
    ``[0, C)`` other than ``blank``; ``input_lengths`` and ``target_lengths`` ``(N,)`` (arrays,
    lists or tuples; a single length when unbatched); output a scalar, or ``(N,)`` for 'none'.
    """

    def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False) -> None:
        super().__init__(reduction=reduction)
        self.blank = blank
        self.zero_infinity = zero_infinity

    def _hyper(self) -> dict[str, Any]:
        return {"blank": self.blank, **super()._hyper(), "zero_infinity": self.zero_infinity}

    def __call__(self, log_probs: mx.array, targets: mx.array, input_lengths: Any, target_lengths: Any) -> mx.array:
        return F.ctc_loss(
            log_probs,
            targets,
            input_lengths,
            target_lengths,
            blank=self.blank,
            reduction=self.reduction,
            zero_infinity=self.zero_infinity,
        )
