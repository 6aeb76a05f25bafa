"""The public estimators.

- :class:`DSSMRecommender` learns from labelled (user, item) pairs (designs 1 and 2).
- :class:`TwoTowerRetriever` learns from positive interactions only and samples its own
  negatives (designs 3, 4 and 5).
"""

from ._dssm import DSSMRecommender
from ._retriever import TwoTowerRetriever

__all__ = ["DSSMRecommender", "TwoTowerRetriever"]
