"""The public estimators.

- :class:`DSSMRecommender` learns from labelled (user, item) pairs.
- :class:`TwoTowerRetriever` learns from positive interactions only and samples its own
  negatives.
"""

from ._dssm import DSSMRecommender
from ._retriever import TwoTowerRetriever

__all__ = ["DSSMRecommender", "TwoTowerRetriever"]
