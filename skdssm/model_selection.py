"""Splitters for interaction data, and searches whose best model recommends.

The splitters are usable as ``cv=`` in scikit-learn's model selection tools. Each splitter
takes the interaction frame ``X`` (one row per (user, item) event) and yields ``(train_rows,
test_rows)`` positional indices. By default the rows of a test fold whose user or item never
appears in its training fold are dropped (they are in neither fold): a model cannot be judged on
what it could never have seen, and ``drop_unseen=False`` keeps them for cold-start evaluation.

:class:`GridSearchCV` and :class:`RandomizedSearchCV` are scikit-learn's, plus the recommender
verbs (``predict_topk``, ``kneighbors``, ...) of the refitted ``best_estimator_``.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator
from sklearn.model_selection import GridSearchCV as _GridSearchCV
from sklearn.model_selection import RandomizedSearchCV as _RandomizedSearchCV
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ._utils import check_columns, check_dataframe, check_generator
from .utils._sklearn_compat import Interval, validate_parameter_constraints


def user_holdout_rows(user_codes: np.ndarray, fraction: float, rng: np.random.Generator,
                      min_interactions: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per-user random holdout: ``round(fraction * n)`` rows (at least 1, at most ``n - 1``) of
    each user with ``n >= min_interactions`` rows. Returns sorted (train_rows, test_rows)."""
    order = rng.permutation(len(user_codes))
    shuffled = pd.Series(user_codes[order])
    rank = shuffled.groupby(shuffled).cumcount().to_numpy()
    counts = shuffled.map(shuffled.value_counts()).to_numpy()
    n_test = np.where(counts >= min_interactions,
                      np.clip(np.rint(counts * fraction), 1, counts - 1), 0)
    test = np.zeros(len(user_codes), dtype=bool)
    test[order[rank < n_test]] = True
    return np.flatnonzero(~test), np.flatnonzero(test)


class _InteractionSplitter(BaseCrossValidator):
    """Shared checks and the dropping of unseen users/items (not public)."""

    _parameter_constraints: dict = {
        "user_col": [str, Integral],
        "item_col": [str, Integral],
        "drop_unseen": ["boolean"],
    }

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        """Number of (train, test) pairs :meth:`split` yields."""
        return getattr(self, "n_splits", 1)

    def _check(self, X, columns) -> pd.DataFrame:
        params = {name: getattr(self, name) for name in self._parameter_constraints}
        validate_parameter_constraints(self._parameter_constraints, params,
                                       caller_name=type(self).__name__)
        X = check_dataframe(X)
        check_columns(X, [c for c in columns if c is not None])
        return X

    def _finish(self, X, train, test):
        if not self.drop_unseen:
            return train, test
        seen = np.ones(len(test), dtype=bool)
        for column in (self.user_col, self.item_col):
            values = X[column].to_numpy()
            seen &= pd.Series(values[test]).isin(pd.unique(values[train])).to_numpy()
        return train, test[seen]

    def _iter_test_indices(self, X=None, y=None, groups=None):
        for _, test in self.split(X, y, groups):
            yield test


class UserHoldoutSplit(_InteractionSplitter):
    """Per-user random holdout: a fraction of each user's interactions goes to the test fold.

    Users with fewer than ``min_interactions`` rows stay entirely in the training fold; every
    other user keeps at least one row in training and gives at least one to the test fold.

    Parameters
    ----------
    test_size : float in (0, 1), default=0.2
        Fraction of each eligible user's rows held out (rounded, then clipped to [1, n - 1]).
    min_interactions : int, default=5
        Users with fewer rows are never held out.
    n_splits : int, default=1
        Independent random holdouts (like ``ShuffleSplit``; test folds may overlap).
    user_col, item_col : str, default="user_id", "item_id"
    drop_unseen : bool, default=True
        Drop test rows whose item (or user) is absent from the training fold.
    random_state : int, RandomState, Generator or None, default=None
        An int gives the same splits on every call to :meth:`split`.

    Examples
    --------
    >>> import pandas as pd
    >>> from skdssm.model_selection import UserHoldoutSplit
    >>> X = pd.DataFrame({"user_id": [1] * 5 + [2] * 2, "item_id": [1, 2, 3, 4, 5, 1, 2]})
    >>> train, test = next(UserHoldoutSplit(drop_unseen=False, random_state=0).split(X))
    >>> len(test), X["user_id"].iloc[test].unique().tolist()
    (1, [1])
    """

    _parameter_constraints: dict = {
        **_InteractionSplitter._parameter_constraints,
        "test_size": [Interval(Real, 0, 1, closed="neither")],
        "min_interactions": [Interval(Integral, 2, None, closed="left")],
        "n_splits": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, test_size=0.2, min_interactions=5, n_splits=1, user_col="user_id",
                 item_col="item_id", drop_unseen=True, random_state=None):
        self.test_size = test_size
        self.min_interactions = min_interactions
        self.n_splits = n_splits
        self.user_col = user_col
        self.item_col = item_col
        self.drop_unseen = drop_unseen
        self.random_state = random_state

    def split(self, X, y=None, groups=None):
        """Yield ``(train_rows, test_rows)`` positional indices of X, ``n_splits`` times.

        Parameters
        ----------
        X : DataFrame
            Interactions with ``user_col`` and ``item_col``.
        y, groups : ignored
        """
        X = self._check(X, [self.user_col, self.item_col])
        rng = check_generator(self.random_state)
        user_codes = pd.factorize(X[self.user_col])[0]
        for _ in range(self.n_splits):
            train, test = user_holdout_rows(user_codes, self.test_size, rng, self.min_interactions)
            yield self._finish(X, train, test)


class LeaveLastOut(_InteractionSplitter):
    """Each user's most recent interaction is the test fold (one split).

    Parameters
    ----------
    user_col : str, default="user_id"
    time_col : str, default="timestamp"
        Event time; ties are broken by row order (the later row is more recent).
    item_col : str, default="item_id"
    min_interactions : int, default=2
        Users with fewer rows stay entirely in training.
    drop_unseen : bool, default=True
        Drop test rows whose item is absent from the training fold.
    """

    _parameter_constraints: dict = {
        **_InteractionSplitter._parameter_constraints,
        "time_col": [str, Integral],
        "min_interactions": [Interval(Integral, 2, None, closed="left")],
    }

    def __init__(self, user_col="user_id", time_col="timestamp", item_col="item_id",
                 min_interactions=2, drop_unseen=True):
        self.user_col = user_col
        self.time_col = time_col
        self.item_col = item_col
        self.min_interactions = min_interactions
        self.drop_unseen = drop_unseen

    def split(self, X, y=None, groups=None):
        """Yield one ``(train_rows, test_rows)`` pair of positional indices of X."""
        X = self._check(X, [self.user_col, self.item_col, self.time_col])
        users = pd.factorize(X[self.user_col])[0]
        # Stable sort by time, then by user: the last row of each user's block is its latest.
        order = np.argsort(X[self.time_col].to_numpy(), kind="stable")
        order = order[np.argsort(users[order], kind="stable")]
        sorted_users = users[order]
        is_last = np.append(sorted_users[1:] != sorted_users[:-1], True)
        counts = np.bincount(users)
        test_mask = np.zeros(len(X), dtype=bool)
        test_mask[order[is_last & (counts[sorted_users] >= self.min_interactions)]] = True
        yield self._finish(X, np.flatnonzero(~test_mask), np.flatnonzero(test_mask))


class TemporalSplit(_InteractionSplitter):
    """Global time cutoff: interactions at or after the cutoff form the test fold (one split).

    Parameters
    ----------
    time_col : str, default="timestamp"
    test_size : float in (0, 1), default=0.2
        The cutoff is the time of the row at this fraction from the end, so about this fraction
        of rows is held out (all rows sharing the cutoff time go to the test fold).
    cutoff : scalar, default=None
        An explicit cutoff time instead of ``test_size``.
    user_col, item_col : str, default="user_id", "item_id"
    drop_unseen : bool, default=True
        Drop test rows whose user or item is absent from the training fold (new users after the
        cutoff have no training history).
    """

    _parameter_constraints: dict = {
        **_InteractionSplitter._parameter_constraints,
        "time_col": [str, Integral],
        "test_size": [Interval(Real, 0, 1, closed="neither")],
        "cutoff": "no_validation",
    }

    def __init__(self, time_col="timestamp", test_size=0.2, cutoff=None, user_col="user_id",
                 item_col="item_id", drop_unseen=True):
        self.time_col = time_col
        self.test_size = test_size
        self.cutoff = cutoff
        self.user_col = user_col
        self.item_col = item_col
        self.drop_unseen = drop_unseen

    def split(self, X, y=None, groups=None):
        """Yield one ``(train_rows, test_rows)`` pair of positional indices of X."""
        X = self._check(X, [self.user_col, self.item_col, self.time_col])
        times = X[self.time_col].to_numpy()
        cutoff = self.cutoff
        if cutoff is None:
            position = min(int(np.floor(len(X) * (1 - self.test_size))), len(X) - 1)
            cutoff = np.sort(times, kind="stable")[position]
        test_mask = times >= cutoff
        if test_mask.all():
            raise ValueError(f"Every row of X is at or after the cutoff {cutoff!r}; the training "
                             f"fold would be empty. Lower test_size or pass a later cutoff.")
        yield self._finish(X, np.flatnonzero(~test_mask), np.flatnonzero(test_mask))


# ----------------------------------------------------------------------------- searches


def _best_estimator_has(attr: str):
    """Whether a search can answer ``attr``: only with ``refit=True``, and only when the refitted
    best estimator (before fit: the searched estimator) has it, as sklearn's searches decide
    for ``predict`` and ``transform``."""

    def check(self) -> bool:
        if not self.refit:
            raise AttributeError(
                f"This {type(self).__name__} was built with refit=False, so it keeps no "
                f"best_estimator_ to answer {attr}. Pass refit=True (or the name of the metric "
                f"to refit on when scoring has several), or refit "
                f"clone(estimator).set_params(**search.best_params_) yourself."
            )
        getattr(self.best_estimator_ if hasattr(self, "best_estimator_") else self.estimator,
                attr)
        return True

    return check


class _RecommenderSearchMixin:
    """The recommender verbs of ``best_estimator_``, forwarded (shared by both searches)."""

    @available_if(_best_estimator_has("predict_topk"))
    def predict_topk(self, users, k: int = 10, **params):
        """``predict_topk`` of the best estimator, refitted on the whole of X.

        Parameters
        ----------
        users : array-like of user ids, or DataFrame
            As the best estimator's ``predict_topk`` takes them (a
            :class:`~skdssm.pipeline.RecommenderPipeline` prepares a frame of users through
            its user-side steps).
        k : int, default=10
            Number of items per user.
        **params : dict
            Other arguments of the best estimator's ``predict_topk`` (``exclude_seen``,
            ``return_scores``, ...).

        Returns
        -------
        item_ids : ndarray of shape (n_users, k)
            And the scores when ``return_scores=True``.
        """
        check_is_fitted(self)
        return self.best_estimator_.predict_topk(users, k=k, **params)

    @available_if(_best_estimator_has("kneighbors"))
    def kneighbors(self, X=None, *args, **params):
        """``kneighbors`` of the best estimator (queries are users).

        Parameters
        ----------
        X : array-like of user ids, DataFrame or None, default=None
        *args, **params
            Other arguments of the best estimator's ``kneighbors`` (``n_neighbors``,
            ``return_distance``, ...).

        Returns
        -------
        Whatever the best estimator's ``kneighbors`` returns: ``(distances, indices)`` or
        the indices alone.
        """
        check_is_fitted(self)
        return self.best_estimator_.kneighbors(X, *args, **params)

    @available_if(_best_estimator_has("similar_items"))
    def similar_items(self, *args, **params):
        """``similar_items`` of the best estimator, with the same arguments.

        Parameters
        ----------
        *args, **params
            As the best estimator's ``similar_items`` takes them.

        Returns
        -------
        Whatever the best estimator's ``similar_items`` returns.
        """
        check_is_fitted(self)
        return self.best_estimator_.similar_items(*args, **params)

    @available_if(_best_estimator_has("transform_users"))
    def transform_users(self, users, **params):
        """User-tower embeddings from the best estimator.

        Parameters
        ----------
        users : array-like of user ids, or DataFrame
        **params : dict
            Other arguments of the best estimator's ``transform_users`` (``history``).

        Returns
        -------
        ndarray of shape (n_users, embedding_size)
        """
        check_is_fitted(self)
        return self.best_estimator_.transform_users(users, **params)

    @available_if(_best_estimator_has("transform_items"))
    def transform_items(self, items=None):
        """Item-tower embeddings from the best estimator.

        Parameters
        ----------
        items : array-like of item ids, DataFrame or None, default=None
            None gives the fitted catalogue.

        Returns
        -------
        ndarray of shape (n_items, embedding_size)
        """
        check_is_fitted(self)
        return self.best_estimator_.transform_items(items)

    @available_if(_best_estimator_has("export_embeddings"))
    def export_embeddings(self, path) -> None:
        """Write the best estimator's user and item embeddings to ``path`` (.npz or .parquet).

        Parameters
        ----------
        path : str or path-like
        """
        check_is_fitted(self)
        self.best_estimator_.export_embeddings(path)

    @available_if(_best_estimator_has("index_items"))
    def index_items(self, items):
        """Add or update items in the best estimator's catalogue and index (no retraining).

        Parameters
        ----------
        items : DataFrame
            One row per item: the item id and item feature columns.

        Returns
        -------
        self
        """
        check_is_fitted(self)
        self.best_estimator_.index_items(items)
        return self


class GridSearchCV(_RecommenderSearchMixin, _GridSearchCV):
    """:class:`sklearn.model_selection.GridSearchCV` whose best model also recommends.

    Parameters, attributes and every method are scikit-learn's. With ``refit=True`` (the
    default; or a metric name when ``scoring`` has several) it also answers the recommender
    verbs of ``best_estimator_`` when that estimator has them: :meth:`predict_topk`,
    :meth:`kneighbors`, :meth:`similar_items`, :meth:`transform_users`,
    :meth:`transform_items`, :meth:`export_embeddings` and :meth:`index_items`. With
    ``refit=False`` there is no best estimator, and asking for them raises an AttributeError
    that says so.

    Parameters
    ----------
    estimator : estimator object
        A :class:`~skdssm.pipeline.RecommenderPipeline`, or a skdssm estimator.
    param_grid, scoring, n_jobs, refit, cv, verbose, pre_dispatch, error_score, \
return_train_score
        As in :class:`sklearn.model_selection.GridSearchCV`.

    Attributes
    ----------
    best_estimator_, best_params_, best_score_, cv_results_
        As in :class:`sklearn.model_selection.GridSearchCV`.

    See Also
    --------
    RandomizedSearchCV : the same for sampled parameters.

    Examples
    --------
    >>> from skdssm import DSSMRecommender
    >>> from skdssm.datasets import make_interactions
    >>> from skdssm.model_selection import GridSearchCV
    >>> data = make_interactions(n_users=40, n_items=30, interactions_per_user=8, random_state=0)
    >>> X, y = data.frame[["user_id", "item_id", "segment"]], data.frame["label"]
    >>> model = DSSMRecommender(hidden_dims=(8,), embedding_dim=4, max_epochs=2,
    ...                         early_stopping=False, random_state=0)
    >>> search = GridSearchCV(model, {"activation": ["relu", "tanh"]}, cv=2,
    ...                       scoring="roc_auc").fit(X, y)
    >>> search.predict_topk([1, 2, 3], k=5).shape
    (3, 5)
    """


class RandomizedSearchCV(_RecommenderSearchMixin, _RandomizedSearchCV):
    """:class:`sklearn.model_selection.RandomizedSearchCV` whose best model also recommends.

    Parameters, attributes and every method are scikit-learn's; the recommender verbs of
    ``best_estimator_`` are forwarded as in :class:`GridSearchCV` (``refit=True`` only).

    Parameters
    ----------
    estimator : estimator object
        A :class:`~skdssm.pipeline.RecommenderPipeline`, or a skdssm estimator.
    param_distributions, n_iter, scoring, n_jobs, refit, cv, verbose, pre_dispatch, \
random_state, error_score, return_train_score
        As in :class:`sklearn.model_selection.RandomizedSearchCV`.

    Attributes
    ----------
    best_estimator_, best_params_, best_score_, cv_results_
        As in :class:`sklearn.model_selection.RandomizedSearchCV`.

    See Also
    --------
    GridSearchCV : the same for an explicit grid.

    Examples
    --------
    >>> from scipy.stats import loguniform
    >>> from skdssm import DSSMRecommender
    >>> from skdssm.datasets import make_interactions
    >>> from skdssm.model_selection import RandomizedSearchCV
    >>> data = make_interactions(n_users=40, n_items=30, interactions_per_user=8, random_state=0)
    >>> X, y = data.frame[["user_id", "item_id", "segment"]], data.frame["label"]
    >>> model = DSSMRecommender(hidden_dims=(8,), embedding_dim=4, max_epochs=2,
    ...                         early_stopping=False, random_state=0)
    >>> search = RandomizedSearchCV(model, {"lr": loguniform(1e-3, 1e-2)}, n_iter=2, cv=2,
    ...                             scoring="roc_auc", random_state=0).fit(X, y)
    >>> search.predict_topk([1, 2], k=3).shape
    (2, 3)
    """
