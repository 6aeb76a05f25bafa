"""skdssm: scikit-learn compatible two-tower (DSSM) recommenders."""

from . import (baselines, datasets, exceptions, metrics, model_selection, neighbors, pipeline,
               preprocessing)
from .estimators import DSSMRecommender, TwoTowerRetriever
from .pipeline import RecommenderPipeline, make_pipeline

__version__ = "0.1.0.dev0"

__all__ = ["DSSMRecommender", "TwoTowerRetriever", "RecommenderPipeline", "make_pipeline",
           "baselines", "datasets", "exceptions", "metrics", "model_selection", "neighbors",
           "pipeline", "preprocessing", "__version__"]
