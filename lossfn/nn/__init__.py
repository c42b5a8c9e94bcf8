"""``torch.nn``-style loss classes as ``mlx.nn.Module``s, each calling :mod:`lossfn.functional`.

A class stores its hyper-parameters; calling it is one call into ``lossfn.functional``.
Class weights are buffers: saved with the module, never trainable.
"""

from ._base import _Loss as _Loss
from ._base import _WeightedLoss as _WeightedLoss
from ._classification import BCELoss as BCELoss
from ._classification import BCEWithLogitsLoss as BCEWithLogitsLoss
from ._classification import CrossEntropyLoss as CrossEntropyLoss
from ._classification import NLLLoss as NLLLoss
from ._embedding import CosineEmbeddingLoss as CosineEmbeddingLoss
from ._embedding import HingeEmbeddingLoss as HingeEmbeddingLoss
from ._embedding import MarginRankingLoss as MarginRankingLoss
from ._embedding import TripletMarginLoss as TripletMarginLoss
from ._embedding import TripletMarginWithDistanceLoss as TripletMarginWithDistanceLoss
from ._focal import SigmoidFocalLoss as SigmoidFocalLoss
from ._linear import LinearCrossEntropyLoss as LinearCrossEntropyLoss
from ._linear import LinearCrossEntropyOptions as LinearCrossEntropyOptions
from ._margin import MultiMarginLoss as MultiMarginLoss
from ._margin import SoftMarginLoss as SoftMarginLoss
from ._multilabel import MultiLabelMarginLoss as MultiLabelMarginLoss
from ._multilabel import MultiLabelSoftMarginLoss as MultiLabelSoftMarginLoss
from ._probabilistic import GaussianNLLLoss as GaussianNLLLoss
from ._probabilistic import KLDivLoss as KLDivLoss
from ._probabilistic import PoissonNLLLoss as PoissonNLLLoss
from ._regression import HuberLoss as HuberLoss
from ._regression import L1Loss as L1Loss
from ._regression import MSELoss as MSELoss
from ._regression import SmoothL1Loss as SmoothL1Loss
from ._sequence import CTCLoss as CTCLoss

# Modules beyond torch.nn (a PyTorch-ecosystem counterpart: torchvision.ops.sigmoid_focal_loss).
BEYOND_TORCH = ("SigmoidFocalLoss",)
