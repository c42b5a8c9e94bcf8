"""lossfn: PyTorch's losses as pure per-example functions on MLX.

Each loss takes the arrays of ONE example and returns that example's loss; batching,
reduction, class weights, ignored targets and label smoothing are transforms (see the
``transforms`` package). ``lossfn.functional`` and ``lossfn.nn`` are PyTorch-compatible
layers built from these two.
"""

from ._classification import binary_cross_entropy as binary_cross_entropy
from ._classification import (
    binary_cross_entropy_with_logits as binary_cross_entropy_with_logits,
)
from ._classification import cross_entropy as cross_entropy
from ._classification import nll_loss as nll_loss
from ._regression import huber_loss as huber_loss
from ._regression import l1_loss as l1_loss
from ._regression import mse_loss as mse_loss
from ._regression import smooth_l1_loss as smooth_l1_loss

__version__ = "0.1.0"

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "huber_loss",
    "l1_loss",
    "mse_loss",
    "nll_loss",
    "smooth_l1_loss",
]
