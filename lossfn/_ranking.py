"""Listwise ranking losses of one list of scores and relevance labels."""

from __future__ import annotations

import mlx.core as mx

from transforms._reduce import Weighted
from transforms._sums import accurate_sum

from . import _fastmath as fm
from ._example import per_example


@per_example(scores="(L,)", relevance="(L,)", valid="(L,)")
def ranking_softmax_loss(scores: mx.array, relevance: mx.array, valid: mx.array | None = None) -> Weighted:
    r"""Softmax cross-entropy of one list (optax's ``ranking_softmax_loss``; Bruch et al. 2019, ListNet's form):

    .. math:: \ell = -\sum_i y_i \log \mathrm{softmax}(s)_i \quad\text{over the items with } v_i

    ``scores`` and ``relevance`` ``(L,)``; ``valid`` ``(L,)`` marks the items of a padded list
    (default: all). Returns ``Weighted(loss, any(valid))``: a 'mean' skips lists with no valid
    item, as optax's does.
    """
    if valid is None:
        valid = mx.ones(scores.shape, mx.bool_)
    valid = valid.astype(mx.bool_)
    counts = mx.any(valid, axis=-1)
    # Padding takes the list's top score and is masked out: every exponent is <= 0 and no
    # inf or nan reaches a gradient, also for a list with no valid item.
    top = mx.stop_gradient(mx.max(mx.where(valid, scores, mx.finfo(scores.dtype).min), axis=-1, keepdims=True))
    top = mx.where(counts[..., None], top, 0)
    shifted = mx.where(valid, scores, top) - top
    total = accurate_sum(mx.where(valid, fm.exp_nonpositive(shifted), 0), axis=-1)
    log_softmax = shifted - mx.log(mx.where(counts, total, 1))[..., None]
    loss = -accurate_sum(mx.where(valid, relevance * mx.where(valid, log_softmax, 0), 0), axis=-1)
    return Weighted(loss, counts.astype(loss.dtype))
