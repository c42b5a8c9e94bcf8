"""Combinators that take a per-example loss and return a loss.

Every combinator returns a pure function of arrays, so they nest and compose with
``mx.grad``, ``mx.vmap`` and ``mx.compile``.
"""

from ._compile import compiled as compiled
from ._masking import ignore_index as ignore_index
from ._reduce import REDUCTIONS as REDUCTIONS
from ._reduce import Reduction as Reduction
from ._reduce import Weighted as Weighted
from ._reduce import accurate_sum as accurate_sum
from ._reduce import batched as batched
from ._reduce import reduce as reduce
from ._reduce import reduce_values as reduce_values
from ._smoothing import smooth_labels as smooth_labels
from ._weighting import is_index as is_index
from ._weighting import rescaled as rescaled
from ._weighting import weighted as weighted

__all__ = [
    "REDUCTIONS",
    "Reduction",
    "Weighted",
    "accurate_sum",
    "batched",
    "compiled",
    "ignore_index",
    "is_index",
    "reduce",
    "reduce_values",
    "rescaled",
    "smooth_labels",
    "weighted",
]
