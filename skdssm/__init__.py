"""skdssm: scikit-learn compatible two-tower (DSSM) recommenders."""

from . import metrics, model_selection, neighbors
from .estimators import DSSMRecommender, TwoTowerRetriever

__version__ = "0.1.0.dev0"

__all__ = ["DSSMRecommender", "TwoTowerRetriever", "metrics", "model_selection", "neighbors",
           "__version__"]
