"""Full-ranking top-k metrics and scikit-learn scorers for recommenders.

Every metric takes the recommended ids, an ``(n_users, k)`` array (best first, as returned by
``predict_topk``), and the held-out relevant items of the same users, either as a long-format
frame (one row per (user, item)) with ``users`` naming the user of each recommended row, or as a
sparse ``(n_users, n_items)`` matrix whose rows align with the recommended rows (``items``
naming the id of each column; without it the recommendations are column positions). Relevance is
binary; the value is the mean over the users that have at least one relevant item (users without
any are skipped, not counted as zeros). Slots holding a fill value (``None``, ``NaN``, an id that
is not relevant) are misses.
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.exceptions import UndefinedMetricWarning


def _hits(y_true, y_pred, users, items, k, user_col, item_col):
    """Boolean (n_users, k) hit matrix and the number of relevant items per recommended row."""
    y_pred = np.asarray(y_pred)
    if y_pred.ndim != 2:
        raise ValueError(f"y_pred must be a 2-D array (n_users, k) of recommended ids; got shape "
                         f"{y_pred.shape}.")
    if k is not None:
        if not isinstance(k, Integral) or k < 1:
            raise ValueError(f"k must be a positive int; got {k!r}.")
        y_pred = y_pred[:, :k]
    n_users, width = y_pred.shape
    if sp.issparse(y_true):
        relevant = sp.csr_matrix(y_true, dtype=bool)
        relevant.eliminate_zeros()
        if relevant.shape[0] != n_users:
            raise ValueError(f"y_true has {relevant.shape[0]} rows but y_pred has {n_users}; the "
                             "rows of a sparse y_true must align with the recommended rows.")
        if items is None:
            codes = np.asarray(y_pred)
            codes = np.where((codes >= 0) & (codes < relevant.shape[1]), codes, -1).astype(np.int64)
        else:
            codes = pd.Index(items).get_indexer(pd.Index(y_pred.ravel().astype(object)))
            codes = codes.reshape(y_pred.shape)
    elif isinstance(y_true, pd.DataFrame):
        missing = [c for c in (user_col, item_col) if c not in y_true.columns]
        if missing:
            raise ValueError(f"Column {missing[0]!r} is missing from y_true; it has columns "
                             f"{list(y_true.columns)}. Set user_col / item_col.")
        if users is None or len(users) != n_users:
            raise ValueError(f"users must give the user id of each of the {n_users} rows of y_pred "
                             f"when y_true is a frame; got {None if users is None else len(users)}.")
        rows = pd.Index(np.asarray(users).astype(object)).get_indexer(
            pd.Index(y_true[user_col].to_numpy(dtype=object)))
        # One code space for the relevant and the recommended ids; factorize maps None/NaN to -1.
        all_ids = np.concatenate([y_true[item_col].to_numpy(dtype=object),
                                  y_pred.ravel().astype(object)])
        all_codes = pd.factorize(all_ids)[0]
        truth_codes, codes = all_codes[:len(y_true)], all_codes[len(y_true):].reshape(y_pred.shape)
        keep = (rows >= 0) & (truth_codes >= 0)
        relevant = sp.csr_matrix(
            (np.ones(int(keep.sum()), dtype=bool), (rows[keep], truth_codes[keep])),
            shape=(n_users, max(int(all_codes.max(initial=-1)) + 1, 1)))
        relevant.sum_duplicates()
    else:
        raise TypeError(f"y_true must be a DataFrame of (user, item) rows or a scipy sparse matrix; "
                        f"got {type(y_true).__name__}.")
    valid = codes >= 0
    hits = np.asarray(relevant[np.arange(n_users)[:, None], np.where(valid, codes, 0)].todense(),
                      dtype=bool) & valid
    return hits, np.diff(relevant.indptr), width


def _mean_over_relevant(values: np.ndarray, n_relevant: np.ndarray, name: str) -> float:
    has = n_relevant > 0
    if not has.any():
        warnings.warn(f"{name} is undefined: no user has a relevant item; returning nan.",
                      UndefinedMetricWarning, stacklevel=3)
        return float("nan")
    return float(values[has].mean())


_PARAMS = """
    Parameters
    ----------
    y_true : DataFrame or scipy sparse matrix
        Held-out relevant items: rows (user, item) in ``user_col`` / ``item_col``, or a
        binary (n_users, n_items) matrix aligned with the rows of ``y_pred``.
    y_pred : array-like of shape (n_users, k)
        Recommended item ids per user, best first.
    users : array-like of shape (n_users,), default=None
        User id of each row of ``y_pred``; needed when ``y_true`` is a frame.
    items : array-like of shape (n_items,), default=None
        Item id of each column of a sparse ``y_true``; None means ``y_pred`` holds column positions.
    k : int, default=None
        Use the first ``k`` recommendations (default: all columns of ``y_pred``).
    user_col, item_col : str, default="user_id", "item_id"
        Columns of a frame ``y_true``.

    Returns
    -------
    score : float
        In [0, 1]; nan (with a warning) when no user has a relevant item.
"""


def _documented(function):
    function.__doc__ = function.__doc__.rstrip() + "\n" + _PARAMS
    return function


@_documented
def recall_at_k(y_true, y_pred, *, users=None, items=None, k=None, user_col="user_id",
                item_col="item_id") -> float:
    """Recall@k: mean over users of ``hits@k / min(k, n_relevant)``.

    Dividing by ``min(k, n_relevant)`` rather than ``n_relevant`` lets a perfect ranking score 1
    for users with more than ``k`` relevant items.
    """
    hits, n_relevant, width = _hits(y_true, y_pred, users, items, k, user_col, item_col)
    per_user = hits.sum(1) / np.maximum(np.minimum(width, n_relevant), 1)
    return _mean_over_relevant(per_user, n_relevant, "recall_at_k")


@_documented
def precision_at_k(y_true, y_pred, *, users=None, items=None, k=None, user_col="user_id",
                   item_col="item_id") -> float:
    """Precision@k: mean over users of ``hits@k / k``."""
    hits, n_relevant, width = _hits(y_true, y_pred, users, items, k, user_col, item_col)
    return _mean_over_relevant(hits.sum(1) / width, n_relevant, "precision_at_k")


@_documented
def hit_rate_at_k(y_true, y_pred, *, users=None, items=None, k=None, user_col="user_id",
                  item_col="item_id") -> float:
    """Hit rate@k: fraction of users with at least one relevant item among their top k."""
    hits, n_relevant, _ = _hits(y_true, y_pred, users, items, k, user_col, item_col)
    return _mean_over_relevant(hits.any(1).astype(float), n_relevant, "hit_rate_at_k")


@_documented
def ndcg_at_k(y_true, y_pred, *, users=None, items=None, k=None, user_col="user_id",
              item_col="item_id") -> float:
    """NDCG@k with binary relevance: mean over users of ``DCG@k / IDCG@k``.

    ``DCG@k = sum_{r=1..k} rel_r / log2(r + 1)`` and ``IDCG@k`` is the DCG of an ideal ranking,
    ``sum_{r=1..min(k, n_relevant)} 1 / log2(r + 1)``.
    """
    hits, n_relevant, width = _hits(y_true, y_pred, users, items, k, user_col, item_col)
    discounts = 1.0 / np.log2(np.arange(2, width + 2))
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[np.minimum(width, n_relevant)]
    per_user = (hits * discounts).sum(1) / np.where(ideal > 0, ideal, 1.0)
    return _mean_over_relevant(per_user, n_relevant, "ndcg_at_k")


@_documented
def mrr_at_k(y_true, y_pred, *, users=None, items=None, k=None, user_col="user_id",
             item_col="item_id") -> float:
    """MRR@k: mean over users of ``1 / rank`` of the first relevant item in the top k (0 if none)."""
    hits, n_relevant, _ = _hits(y_true, y_pred, users, items, k, user_col, item_col)
    first = hits.argmax(1)
    per_user = np.where(hits.any(1), 1.0 / (first + 1), 0.0)
    return _mean_over_relevant(per_user, n_relevant, "mrr_at_k")


def catalog_coverage(y_pred, catalog) -> float:
    """Catalogue coverage: ``|distinct recommended ids that are in the catalogue| / |catalogue|``.

    Parameters
    ----------
    y_pred : array-like of shape (n_users, k)
        Recommended item ids (fill values outside the catalogue are ignored).
    catalog : array-like of item ids, or int
        The catalogue (e.g. ``model.item_ids_``), or its size when ``y_pred`` holds positions
        ``0 .. catalog - 1``.

    Returns
    -------
    coverage : float in [0, 1]
    """
    recommended = pd.unique(np.asarray(y_pred, dtype=object).ravel())
    if isinstance(catalog, Integral):
        if catalog < 1:
            raise ValueError(f"catalog must be a positive size or an array of ids; got {catalog}.")
        catalog = np.arange(catalog)
    catalog = pd.Index(np.asarray(catalog).astype(object)).unique()
    if len(catalog) == 0:
        raise ValueError("catalog is empty; pass the item ids that could be recommended.")
    return float(catalog.isin(recommended).sum() / len(catalog))


METRICS = {
    "recall": recall_at_k,
    "precision": precision_at_k,
    "hit_rate": hit_rate_at_k,
    "ndcg": ndcg_at_k,
    "mrr": mrr_at_k,
}


class TopKScorer:
    """A scikit-learn scorer ``(estimator, X, y=None) -> float`` for estimators with
    ``predict_topk`` (built by :func:`make_topk_scorer`)."""

    def __init__(self, metric, k, user_col, item_col, threshold):
        self.metric = metric
        self.k = k
        self.user_col = user_col
        self.item_col = item_col
        self.threshold = threshold

    def __call__(self, estimator, X, y=None) -> float:
        missing = [c for c in (self.user_col, self.item_col) if c not in X.columns]
        if missing:
            raise ValueError(f"Column {missing[0]!r} is missing from X; X has columns "
                             f"{list(X.columns)}. Set user_col / item_col of make_topk_scorer.")
        truth = X if y is None else X[self._relevant(estimator, y, len(X))]
        users = pd.unique(truth[self.user_col])
        catalogue = getattr(estimator, "item_ids_", None)
        k = self.k if catalogue is None else min(self.k, len(catalogue))
        # predict_topk leaves out what the estimator saw in fit: the training fold, never the
        # held-out rows scored here.
        recommended = estimator.predict_topk(users, k=k, exclude_seen=True)
        return METRICS[self.metric](truth, recommended, users=users, user_col=self.user_col,
                                    item_col=self.item_col)

    def _relevant(self, estimator, y, n_rows: int) -> np.ndarray:
        """Boolean mask of the relevant rows: numeric ``y > threshold``, else the positive class."""
        y = np.asarray(y)
        if y.shape != (n_rows,):
            raise ValueError(f"y must be 1-D with one label per row of X; got shape {y.shape} for "
                             f"{n_rows} rows.")
        if y.dtype.kind in "biuf":
            return y > self.threshold
        # Labels such as "liked"/"disliked" cannot be compared with a threshold: a binary
        # classifier (DSSMRecommender) names its positive class in classes_[1].
        classes = getattr(estimator, "classes_", None)
        if classes is None or len(classes) != 2:
            raise ValueError(
                f"y holds non-numeric labels (dtype {y.dtype}, e.g. {y[:3].tolist()}), so "
                f"relevance cannot be y > threshold, and {type(estimator).__name__} has no two "
                "classes_ to take the positive class classes_[1] from. Pass numeric y (e.g. 1 "
                "for relevant, 0 otherwise)."
            )
        return y == classes[1]

    def __repr__(self) -> str:
        return f"make_topk_scorer({self.metric!r}, k={self.k})"


def make_topk_scorer(metric: str, k: int = 10, user_col="user_id", item_col="item_id",
                     threshold: float = 0) -> TopKScorer:
    """A scorer for ``GridSearchCV(scoring=...)`` / ``cross_validate`` from a top-k metric.

    The scorer treats the rows of the fold it is given as the held-out ground truth (only rows
    with ``y > threshold`` when ``y`` is passed, e.g. the positive labels of
    :class:`~skdssm.DSSMRecommender`; non-numeric labels such as ``"liked"`` count as relevant
    when they equal the estimator's positive class ``classes_[1]``), asks the fitted estimator
    for the top ``k`` items of each of their users with ``exclude_seen=True`` (so the items of
    the training fold are left out and the held-out ones are not), and returns the metric.
    Greater is better.

    Parameters
    ----------
    metric : {"recall", "precision", "hit_rate", "ndcg", "mrr"}
    k : int, default=10
        Capped at the catalogue size of the fitted estimator.
    user_col, item_col : str, default="user_id", "item_id"
    threshold : float, default=0
        With numeric ``y`` given, rows with ``y > threshold`` are relevant.

    Returns
    -------
    scorer : callable ``(estimator, X, y=None) -> float``

    Examples
    --------
    >>> from skdssm.metrics import make_topk_scorer
    >>> make_topk_scorer("ndcg", k=20)
    make_topk_scorer('ndcg', k=20)
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}; got {metric!r}.")
    if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int; got {k!r}.")
    return TopKScorer(metric, int(k), user_col, item_col, threshold)
