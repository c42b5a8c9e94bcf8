"""Contrastive losses of one query against shared keys: NT-Xent (InfoNCE)."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from transforms._batching import Layout
from transforms._classes import nan_unless, take_class

from ._classification import cross_entropy
from ._embedding import unit
from ._example import per_example

Scalar = float | mx.array


def _keys_of(args: Any) -> int:
    return args[1].shape[-2]


# The keys are shared by a batch of queries; the positive's index is the target.
@per_example(query="(D,)", keys="(N, D)", positive="()", own="()", layout=Layout(target=2, shared=(1,), classes=_keys_of))
def ntxent(query: mx.array, keys: mx.array, positive: mx.array | int, own: mx.array | int = -1, *, temperature: Scalar = 0.07) -> mx.array:
    r"""NT-Xent (InfoNCE, SimCLR's) loss of one query ``(D,)`` against keys ``(N, D)``, a scalar:

    .. math:: \ell = -\log \frac{e^{\cos(q, k_p) / \tau}}{\sum_{j \ne o} e^{\cos(q, k_j) / \tau}}

    with ``positive`` :math:`p` the index of its positive key and ``own`` :math:`o` the query's
    own row among the keys (left out; -1: none). Why this shape: the loss of one example depends
    on the whole batch of embeddings, so the batch enters as shared *keys* (``in_axes`` None,
    declared by its layout: ``reduce(ntxent)(embeddings, embeddings, positives, arange(N))``),
    and what belongs to the example, its query, positive and own index, stays per example: every
    transform, per-example gradients and masks apply to the queries. With one positive per
    query, the mean of ``reduce`` is optax's ``ntxent`` (tested). The cosine bounds the squared
    norms below at float32's epsilon, as optax does.
    """
    eps = mx.finfo(mx.float32).eps
    # cosine_similarity of the query with every key, as one product of unit vectors
    logits = (unit(query, eps) @ mx.swapaxes(unit(keys, eps), -1, -2)) / temperature
    own = mx.array(own)
    logits = mx.where(mx.arange(keys.shape[-2]) == own[..., None], -mx.inf, logits)
    _, valid = take_class(logits, positive)
    return nan_unless(valid & (positive != own), cross_entropy.__wrapped__(logits, positive))


info_nce = ntxent  # the same loss under its other name (van den Oord et al. 2018)
