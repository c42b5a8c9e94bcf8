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
from ._embedding import cosine_embedding_loss as cosine_embedding_loss
from ._embedding import hinge_embedding_loss as hinge_embedding_loss
from ._embedding import margin_ranking_loss as margin_ranking_loss
from ._embedding import pairwise_distance as pairwise_distance
from ._embedding import triplet_margin_loss as triplet_margin_loss
from ._embedding import triplet_margin_with_distance_loss as triplet_margin_with_distance_loss
from ._linear import linear_cross_entropy as linear_cross_entropy
from ._margin import multi_margin_loss as multi_margin_loss
from ._margin import soft_margin_loss as soft_margin_loss
from ._multilabel import multilabel_margin_loss as multilabel_margin_loss
from ._multilabel import multilabel_soft_margin_loss as multilabel_soft_margin_loss
from ._probabilistic import gaussian_nll_loss as gaussian_nll_loss
from ._probabilistic import kl_div as kl_div
from ._probabilistic import poisson_nll_loss as poisson_nll_loss
from ._regression import huber_loss as huber_loss
from ._regression import l1_loss as l1_loss
from ._regression import mse_loss as mse_loss
from ._regression import smooth_l1_loss as smooth_l1_loss
from ._sequence import ctc_loss as ctc_loss
