"""Dataset loaders (MovieLens) and synthetic generators with a planted structure."""

from ._base import get_data_home
from ._movielens import fetch_movielens
from ._synthetic import make_geo_interactions, make_implicit_interactions, make_interactions

__all__ = [
    "fetch_movielens",
    "get_data_home",
    "make_geo_interactions",
    "make_implicit_interactions",
    "make_interactions",
]
