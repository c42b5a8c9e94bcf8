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
from ._classification import linear_cross_entropy as linear_cross_entropy
from ._classification import nll_loss as nll_loss
from ._classification import poly1_cross_entropy as poly1_cross_entropy
from ._classification import sigmoid_focal_loss as sigmoid_focal_loss
from ._contrastive import info_nce as info_nce
from ._contrastive import ntxent as ntxent
from ._ctc_scan import CompileThroughWarning as CompileThroughWarning
from ._embedding import cosine_distance as cosine_distance
from ._embedding import cosine_embedding_loss as cosine_embedding_loss
from ._embedding import cosine_similarity as cosine_similarity
from ._embedding import hinge_embedding_loss as hinge_embedding_loss
from ._embedding import margin_ranking_loss as margin_ranking_loss
from ._embedding import pairwise_distance as pairwise_distance
from ._embedding import triplet_margin_loss as triplet_margin_loss
from ._embedding import triplet_margin_with_distance_loss as triplet_margin_with_distance_loss
from ._margin import multi_margin_loss as multi_margin_loss
from ._margin import multiclass_hinge_loss as multiclass_hinge_loss
from ._margin import multiclass_perceptron_loss as multiclass_perceptron_loss
from ._margin import perceptron_loss as perceptron_loss
from ._margin import soft_margin_loss as soft_margin_loss
from ._multilabel import multilabel_margin_loss as multilabel_margin_loss
from ._multilabel import multilabel_soft_margin_loss as multilabel_soft_margin_loss
from ._probabilistic import convex_kl_divergence as convex_kl_divergence
from ._probabilistic import gaussian_nll_loss as gaussian_nll_loss
from ._probabilistic import generalized_kl_divergence as generalized_kl_divergence
from ._probabilistic import kl_div as kl_div
from ._probabilistic import poisson_nll_loss as poisson_nll_loss
from ._ranking import ranking_softmax_loss as ranking_softmax_loss
from ._regression import huber_loss as huber_loss
from ._regression import l1_loss as l1_loss
from ._regression import log_cosh as log_cosh
from ._regression import mse_loss as mse_loss
from ._regression import smooth_l1_loss as smooth_l1_loss
from ._segmentation import binary_dice_loss as binary_dice_loss
from ._segmentation import dice_loss as dice_loss
from ._segmentation import generalized_dice_loss as generalized_dice_loss
from ._sequence import ctc_forced_alignment as ctc_forced_alignment
from ._sequence import ctc_forward_probabilities as ctc_forward_probabilities
from ._sequence import ctc_loss as ctc_loss
from ._sparsemax import multiclass_sparsemax_loss as multiclass_sparsemax_loss
from ._sparsemax import sparsemax as sparsemax
from ._sparsemax import sparsemax_loss as sparsemax_loss

__version__ = "0.1.0"

# Losses beyond PyTorch's catalogue: no lossfn.functional or lossfn.nn counterpart (those stay PyTorch's API).
BEYOND_TORCH = (
    "binary_dice_loss",
    "convex_kl_divergence",
    "cosine_distance",
    "cosine_similarity",
    "ctc_forced_alignment",
    "ctc_forward_probabilities",
    "dice_loss",
    "generalized_dice_loss",
    "generalized_kl_divergence",
    "info_nce",
    "log_cosh",
    "multiclass_hinge_loss",
    "multiclass_perceptron_loss",
    "multiclass_sparsemax_loss",
    "ntxent",
    "perceptron_loss",
    "poly1_cross_entropy",
    "ranking_softmax_loss",
    "sigmoid_focal_loss",
    "sparsemax",
    "sparsemax_loss",
)

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "binary_dice_loss",
    "convex_kl_divergence",
    "cosine_distance",
    "cosine_embedding_loss",
    "cosine_similarity",
    "cross_entropy",
    "ctc_forced_alignment",
    "ctc_forward_probabilities",
    "ctc_loss",
    "dice_loss",
    "gaussian_nll_loss",
    "generalized_dice_loss",
    "generalized_kl_divergence",
    "hinge_embedding_loss",
    "huber_loss",
    "info_nce",
    "kl_div",
    "l1_loss",
    "linear_cross_entropy",
    "log_cosh",
    "margin_ranking_loss",
    "mse_loss",
    "multi_margin_loss",
    "multiclass_hinge_loss",
    "multiclass_perceptron_loss",
    "multiclass_sparsemax_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
    "nll_loss",
    "ntxent",
    "pairwise_distance",
    "perceptron_loss",
    "poisson_nll_loss",
    "poly1_cross_entropy",
    "ranking_softmax_loss",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "sparsemax",
    "sparsemax_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
]
