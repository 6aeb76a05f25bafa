"""Splitters for interaction data, usable as ``cv=`` in scikit-learn's model selection tools.

Each splitter takes the interaction frame ``X`` (one row per (user, item) event) and yields
``(train_rows, test_rows)`` positional indices. By default the rows of a test fold whose user or
item never appears in its training fold are dropped (they are in neither fold): a model cannot be
judged on what it could never have seen, and ``drop_unseen=False`` keeps them for cold-start
evaluation.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator

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
