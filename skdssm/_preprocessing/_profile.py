"""UserProfileEncoder: a user's profile is the mean content of the items they liked."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from skdssm._preprocessing._base import (
    FrameTransformer,
    as_column_refs,
    check_no_missing,
    positive_mask,
)
from skdssm._utils import check_columns


class UserProfileEncoder(FrameTransformer):
    """Append each user's profile: the mean item features of the items they rated positively.

    :meth:`fit` averages the listed numeric item feature columns over each user's
    positive training rows. :meth:`transform` appends the columns
    ``<prefix><feature>`` looked up by user id; only ``user_col`` is read, so a
    users-only frame works. Users unseen at fit, and users without positive rows, get the
    global profile: the mean over all positive training rows. All input columns pass
    through unchanged.

    **Leakage.** The full profile of a training row includes that row's own item, so a
    model trained on it could read the label off the profile. :meth:`fit_transform`
    therefore cross-fits, as sklearn's ``TargetEncoder`` does: each positive training
    row gets the leave-one-out profile, the mean over the user's *other* positive rows
    (the global mean of the other positive rows when the user has none). Non-positive
    rows are not part of any profile and get the full one. :meth:`transform` always uses
    the full profiles, so ``fit_transform(X)`` differs from ``fit(X).transform(X)`` on
    purpose; ``leave_one_out=False`` makes them equal.

    Parameters
    ----------
    item_feature_columns : list of str or int, str or int
        Numeric (or boolean) item feature columns to average, by name or position.
    user_col : str or int, default="user_id"
        User id column.
    positive : None, str, int or callable, default=None
        Which rows count: None for all; a column whose rows ``> 0`` (or True) count; or a
        callable ``X -> boolean mask`` such as ``lambda X: X["rating"] >= 4``.
    prefix : str, default="profile\\_"
        Prefix of the appended column names.
    leave_one_out : bool, default=True
        Whether :meth:`fit_transform` gives positive training rows leave-one-out profiles.

    Attributes
    ----------
    users_ : ndarray
        Users with at least one positive row, sorted.
    user_profiles_ : ndarray of shape (n_users, n_item_features)
        Their profiles (float32 when every feature column is float32, else float64).
    user_counts_ : ndarray of shape (n_users,)
        Number of positive rows behind each profile.
    global_profile_ : ndarray of shape (n_item_features,)
        Mean over all positive rows; the profile of unknown users.
    n_features_in_ : int
        Number of columns seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names seen in :meth:`fit`, when X had string column names.

    Examples
    --------
    >>> import pandas as pd
    >>> from skdssm.preprocessing import UserProfileEncoder
    >>> X = pd.DataFrame({"user_id": [1, 1, 1, 2],
    ...                   "year": [1990.0, 2000.0, 1970.0, 1980.0],
    ...                   "rating": [5, 4, 1, 5]})
    >>> encoder = UserProfileEncoder(["year"], positive=lambda X: X["rating"] >= 4)
    >>> encoder.fit(X).transform(pd.DataFrame({"user_id": [1, 2, 3]}))
       user_id  profile_year
    0        1        1995.0
    1        2        1980.0
    2        3        1990.0
    >>> encoder.fit_transform(X)["profile_year"].tolist()
    [2000.0, 1990.0, 1995.0, 1995.0]
    """

    def __init__(
        self,
        item_feature_columns,
        user_col="user_id",
        positive=None,
        prefix="profile_",
        leave_one_out=True,
    ):
        self.item_feature_columns = item_feature_columns
        self.user_col = user_col
        self.positive = positive
        self.prefix = prefix
        self.leave_one_out = leave_one_out

    def _feature_columns(self, names_in=None) -> list[str]:
        if self.item_feature_columns is None:
            raise TypeError("item_feature_columns must list the item feature columns to average.")
        refs = as_column_refs(self.item_feature_columns, self.n_features_in_)
        return self._columns(refs, "item_feature_columns", names_in)

    def _fit_statistics(self, frame: pd.DataFrame, X):
        """Fit the profiles; return what leave-one-out needs: positive rows and their sums."""
        if not isinstance(self.prefix, str):
            raise TypeError(f"prefix must be a str; got {self.prefix!r}.")
        (user,) = self._columns([self.user_col], "user_col")
        features = self._feature_columns()
        if not features:
            raise ValueError("item_feature_columns is empty; list the item feature columns.")
        check_no_missing(frame[user], user)
        for column in features:
            if not pd.api.types.is_numeric_dtype(frame[column].dtype):
                raise TypeError(
                    f"Item feature column {column!r} must be numeric or boolean to be averaged; "
                    f"got dtype {frame[column].dtype}. Encode it first (e.g. MultiHotPadder is "
                    f"for multi-valued columns, OneHotEncoder for categories)."
                )
            check_no_missing(frame[column], column)
        keep = positive_mask(self.positive, frame, X, list(frame.columns))
        if not keep.any():
            raise ValueError(
                "No row of X is positive, so no profile can be computed; check `positive`."
            )
        values = frame[features].to_numpy(dtype=np.float64)[keep]
        all_float32 = all(frame[column].dtype == np.float32 for column in features)
        dtype = np.float32 if all_float32 else np.float64
        codes, users = pd.factorize(frame[user].to_numpy()[keep], sort=True)
        membership = sparse.csr_array(
            (np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(len(users), len(codes))
        )
        sums = membership @ values
        counts = np.bincount(codes, minlength=len(users))
        self.users_ = np.asarray(users)
        self.user_counts_ = counts
        self.user_profiles_ = (sums / counts[:, None]).astype(dtype)
        self.global_profile_ = values.mean(axis=0).astype(dtype)
        return keep, values, codes, sums

    def _fit(self, frame: pd.DataFrame, X) -> None:
        self._fit_statistics(frame, X)

    def _profiles(self, frame: pd.DataFrame) -> np.ndarray:
        (user,) = self._columns([self.user_col], "user_col")
        check_columns(frame, [user], what="X")
        check_no_missing(frame[user], user)
        codes = pd.Index(self.users_).get_indexer(frame[user].to_numpy())
        return np.where((codes >= 0)[:, None], self.user_profiles_[codes], self.global_profile_)

    def _transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self._append_columns(frame, self._profiles(frame), self._profile_names())

    def _fit_transform(self, frame: pd.DataFrame, X) -> pd.DataFrame:
        keep, values, codes, sums = self._fit_statistics(frame, X)
        profiles = self._profiles(frame)
        if self.leave_one_out:
            profiles[keep] = self._leave_one_out(values, codes, sums).astype(profiles.dtype)
        return self._append_columns(frame, profiles, self._profile_names())

    def _leave_one_out(self, values, codes, sums) -> np.ndarray:
        """Per positive row, the mean of its user's other positive rows (vectorised)."""
        others = self.user_counts_[codes] - 1
        user_means = (sums[codes] - values) / np.maximum(others, 1)[:, None]
        if len(values) > 1:
            fallback = (values.sum(axis=0) - values) / (len(values) - 1)
        else:
            fallback = np.broadcast_to(self.global_profile_, values.shape)
        return np.where((others > 0)[:, None], user_means, fallback)

    def _profile_names(self, names_in=None) -> list[str]:
        return [f"{self.prefix}{name}" for name in self._feature_columns(names_in)]

    def _output_names(self, names_in) -> list[str]:
        return list(names_in) + self._profile_names(names_in)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
