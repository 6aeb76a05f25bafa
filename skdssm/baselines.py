"""Non-neural reference recommenders that answer the same ``predict_topk`` as the estimators."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._sparse import interactions_from_sparse
from ._utils import check_columns, check_dataframe
from .neighbors import exact_topk


class PopularityRecommender(BaseEstimator):
    """Recommend the items with the most (weighted) interactions in fit, the same list for everyone.

    The floor every personalised model has to beat in full-ranking evaluation.

    Parameters
    ----------
    user_col, item_col : str, default="user_id", "item_id"
        Id columns of the interaction frame.

    Attributes
    ----------
    item_ids_ : ndarray of shape (n_items,)
        Items seen in fit, most popular first.
    item_counts_ : ndarray of shape (n_items,)
        Their summed sample weights (interaction counts by default).
    user_ids_ : ndarray of shape (n_users,)
    seen_items_ : scipy.sparse.csr_matrix of shape (n_users, n_items)
        Items each user had in fit (columns in the order of ``item_ids_``).

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": ["a", "b", "a", "c"]})
    >>> PopularityRecommender().fit(X).predict_topk([2, 4], k=2).tolist()
    [['b', 'c'], ['a', 'b']]
    """

    def __init__(self, user_col="user_id", item_col="item_id"):
        self.user_col = user_col
        self.item_col = item_col

    def fit(self, X: pd.DataFrame, y=None, sample_weight=None) -> PopularityRecommender:
        """Count interactions per item (y is ignored; sample_weight weights the rows).

        ``X`` is an interaction frame, or a ``scipy.sparse`` users x items matrix (as implicit
        and LightFM take): ids are then row and column positions and each stored value weights
        its interaction (an item's count is its column sum), as
        :meth:`TwoTowerRetriever.fit <skdssm.estimators.TwoTowerRetriever.fit>` reads it;
        ``y`` and ``sample_weight`` must be None.

        Returns
        -------
        self
        """
        if sp.issparse(X):
            X, sample_weight = interactions_from_sparse(X, self.user_col, self.item_col, y=y,
                                                        sample_weight=sample_weight)
        X = check_dataframe(X)
        check_columns(X, [self.user_col, self.item_col])
        weight = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, float)
        if weight.shape != (len(X),):
            raise ValueError(f"sample_weight must have one value per row of X ({len(X)}); "
                             f"got shape {weight.shape}.")
        counts = pd.Series(weight).groupby(X[self.item_col].to_numpy()).sum()
        # Ties broken by item id so the ranking is deterministic.
        counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
        self.item_ids_ = counts.index.to_numpy()
        self.item_counts_ = counts.to_numpy()
        user_codes, self.user_ids_ = pd.factorize(X[self.user_col], sort=True)
        self.user_ids_ = np.asarray(self.user_ids_)
        item_pos = pd.Index(self.item_ids_).get_indexer(X[self.item_col])
        self.seen_items_ = sp.csr_matrix(
            (np.ones(len(X), dtype=bool), (user_codes, item_pos)),
            shape=(len(self.user_ids_), len(self.item_ids_)))
        self.seen_items_.sum_duplicates()
        return self

    def predict_topk(self, users, k: int = 10, exclude_seen: bool = True) -> np.ndarray:
        """The ``k`` most popular items per user, skipping the user's fit items if asked.

        ``users`` is an array of user ids or a DataFrame with ``user_col``; unknown users get the
        plain popularity ranking. Users with fewer than ``k`` unseen items get None in the tail.
        """
        check_is_fitted(self)
        if not isinstance(k, Integral) or k < 1 or k > len(self.item_ids_):
            raise ValueError(f"k must be an int in [1, {len(self.item_ids_)}] (the catalogue "
                             f"size); got {k!r}.")
        ids = users[self.user_col] if isinstance(users, pd.DataFrame) else users
        positions = pd.Index(self.user_ids_).get_indexer(np.asarray(ids))
        exclude = None
        if exclude_seen:
            known = positions >= 0
            exclude = sp.csr_matrix(self.seen_items_[np.where(known, positions, 0)]
                                    .multiply(known[:, None]))
        # Items are stored most popular first: scoring them by minus their rank ranks exactly,
        # ties included, in fit's order.
        rank_scores = -np.arange(len(self.item_ids_), dtype=np.float32)[:, None]
        scores, index = exact_topk(np.ones((len(positions), 1), dtype=np.float32), rank_scores,
                                   k, exclude)
        out = self.item_ids_[index]
        short = ~np.isfinite(scores)
        if short.any():
            out = out.astype(object)
            out[short] = None
        return out
