"""skdssm: scikit-learn compatible two-tower (DSSM) recommenders."""

from .estimators import DSSMRecommender, TwoTowerRetriever

__version__ = "0.1.0.dev0"

__all__ = ["DSSMRecommender", "TwoTowerRetriever", "__version__"]
