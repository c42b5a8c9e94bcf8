"""Sequence losses of one example: CTC, the log-likelihood of a target over all its alignments."""

from __future__ import annotations

import mlx.core as mx

from ._ctc_scan import ctc_batch
from ._example import per_example


def _ctc_batch(
    log_probs: mx.array,
    target: mx.array,
    input_length: mx.array,
    target_length: mx.array,
    blank: int | mx.array = 0,
    zero_infinity: bool = False,
) -> mx.array:
    """The batch rule: log-probabilities ``(N, T, C)``, targets ``(N, S)``, lengths ``(N,)`` -> ``(N,)``."""
    return ctc_batch(mx.moveaxis(log_probs, 0, 1), target, input_length, target_length, blank, zero_infinity)


@per_example(log_probs="(T, C)", target="(S,)", input_length="()", target_length="()", batch_rule=_ctc_batch)
def ctc_loss(
    log_probs: mx.array,
    target: mx.array,
    input_length: int | mx.array,
    target_length: int | mx.array,
    blank: int | mx.array = 0,
    zero_infinity: bool = False,
) -> mx.array:
    r"""Connectionist Temporal Classification loss of one example, a scalar.

    .. math:: \ell = -\log \sum_{\pi \in \mathcal{B}^{-1}(y)} \prod_{t=0}^{L-1} p_t(\pi_t)

    over the alignments :math:`\pi` of length :math:`L` (``input_length``) that collapse to the
    target :math:`y` = ``target[:target_length]`` once repeats are merged and blanks removed
    (so repeated labels need a blank between them). ``log_probs`` ``(T, C)`` holds
    log-probabilities (e.g. a log-softmax) with ``L <= T`` frames used; ``target`` ``(S,)``
    holds class indices other than ``blank``, with ``target_length <= S`` of them used.
    A target that no alignment fits (too long for its input) costs ``inf``, or 0 with
    ``zero_infinity`` (and then its gradient is 0, not nan).

    The gradient is the true derivative of :math:`\ell` with respect to ``log_probs``: minus the
    posterior probability of each label at each frame. PyTorch's ``ctc_loss`` returns that plus
    ``exp(log_probs)`` (the gradient with respect to logits whose log-softmax is ``log_probs``);
    the two agree once taken through ``log_softmax``.

    PyTorch's 'mean' divides each loss by its target length before averaging:
    ``reduce(rescaled(ctc_loss), 'mean')(log_probs, target, il, tl, 1 / maximum(tl, 1))``.

    The recursion is a compiled scan over time with its own backward pass, batched over
    examples: under ``mx.vmap`` (``transforms.reduce``) the whole batch runs as one scan.
    Not twice differentiable. Under ``mx.compile`` the scan is unrolled, which compiles slowly
    for long inputs: compile around it, not through it.
    """
    return _ctc_batch(log_probs[None], target[None], input_length[None], target_length[None], blank, zero_infinity)[0]
