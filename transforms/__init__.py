"""Combinators that take a per-example loss and return a loss.

Every combinator returns a pure function of arrays, so they nest and compose with
``mx.grad``, ``mx.vmap`` and ``mx.compile``.
"""

from ._around import value_and_grad_around as value_and_grad_around
from ._classes import is_index as is_index
from ._compile import compiled as compiled
from ._masking import ignore_index as ignore_index
from ._masking import masked as masked
from ._per_example import clip_and_sum as clip_and_sum
from ._per_example import clipped_grad as clipped_grad
from ._per_example import grad_norms as grad_norms
from ._per_example import module_loss as module_loss
from ._per_example import per_example_grad_norms as per_example_grad_norms
from ._per_example import per_example_value_and_grad as per_example_value_and_grad
from ._per_example import reduce_example as reduce_example
from ._reduce import REDUCTIONS as REDUCTIONS
from ._reduce import Reduction as Reduction
from ._reduce import Weighted as Weighted
from ._reduce import batched as batched
from ._reduce import reduce as reduce
from ._reduce import reduce_batch as reduce_batch
from ._reduce import reduce_values as reduce_values
from ._scale_out import accumulate as accumulate
from ._scale_out import across as across
from ._scale_out import sum_gradients as sum_gradients
from ._smoothing import smooth_labels as smooth_labels
from ._streams import cpu_streams as cpu_streams
from ._sums import accurate_sum as accurate_sum
from ._tracing import fixed_shapes as fixed_shapes
from ._tree import reduce_tree as reduce_tree
from ._tree import tree_loss as tree_loss
from ._weighting import rescaled as rescaled
from ._weighting import weighted as weighted

__all__ = [
    "REDUCTIONS",
    "Reduction",
    "Weighted",
    "accumulate",
    "accurate_sum",
    "across",
    "batched",
    "clip_and_sum",
    "clipped_grad",
    "compiled",
    "cpu_streams",
    "fixed_shapes",
    "grad_norms",
    "ignore_index",
    "is_index",
    "masked",
    "module_loss",
    "per_example_grad_norms",
    "per_example_value_and_grad",
    "reduce",
    "reduce_batch",
    "reduce_example",
    "reduce_tree",
    "reduce_values",
    "rescaled",
    "smooth_labels",
    "sum_gradients",
    "tree_loss",
    "value_and_grad_around",
    "weighted",
]
