"""Drop-in counterparts of ``torch.nn.functional``'s losses, taking ``mx.array``.

Same names, positional order, keywords and defaults as PyTorch 2.13, and the same output
shapes for batched, unbatched and K-dimensional inputs. Each function checks its
arguments, lays the batch out as one example per row and calls a compiled composition of
a per-example loss from :mod:`lossfn` with :mod:`transforms`: no loss maths lives here.
The full specification of each loss is on its class in :mod:`lossfn.nn`.
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
