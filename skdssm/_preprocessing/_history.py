"""HistoryBuilder: leakage-free behaviour histories from the interaction log."""

from __future__ import annotations

import numpy as np
import pandas as pd

from skdssm._preprocessing._base import (
    FrameTransformer,
    block_dtype,
    block_names,
    check_no_missing,
    check_not_padding,
    positive_mask,
)
from skdssm._utils import check_columns


def _time_values(series: pd.Series, name: str) -> np.ndarray:
    """Timestamps as a sortable array: numbers as they are, datetimes as naive UTC."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        if getattr(series.dtype, "tz", None) is not None:
            series = series.dt.tz_convert(None)
        return series.to_numpy(dtype="datetime64[ns]")
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy()
    raise TypeError(
        f"The time column {name!r} must be numeric or datetime; got dtype {series.dtype}. "
        f"Convert it, e.g. with pandas.to_datetime."
    )


class HistoryBuilder(FrameTransformer):
    """Add each row's interaction history, strictly before the row's timestamp, as a block.

    :meth:`fit` stores the (positive) training interactions. :meth:`transform` appends
    ``max_len`` columns ``<output_col>[0] .. <output_col>[max_len - 1]`` holding, for each
    row, the items its user interacted with in the stored data **strictly before the
    row's timestamp** (interactions at the same timestamp are excluded), the most recent
    ``max_len`` of them, padding first and the most recent item last. All input columns
    pass through unchanged; skdssm's estimators read the block as one sequence feature.

    Because a row only sees strictly earlier interactions, a training row never sees its
    own label, so ``fit_transform`` on the training frame is leakage-free.

    Rows without a usable timestamp get the user's whole stored history (most recent
    ``max_len``): a frame without ``time_col`` (e.g. a users-only frame at
    recommendation time) or a NaN/NaT time. The item column is not read at transform.
    Users unseen at fit get an empty history (all padding).

    Parameters
    ----------
    user_col : str or int, default="user_id"
        User id column (name, or position for arrays).
    item_col : str or int, default="item_id"
        Item id column. Ids equal to ``pad_value`` raise a ValueError (they would be read
        as padding): remap ids to start at 1 or choose another ``pad_value``.
    time_col : str, int or None, default="timestamp"
        Timestamp column (numeric or datetime). None: the data has no timestamps; the
        training rows are taken as chronological and **every** row gets its user's whole
        stored history, so a training row's history contains its own item (target
        leakage). Use None only for frames the model is not trained on, e.g. serving.
    max_len : int, default=50
        Width of the history block.
    positive : None, str, int or callable, default=None
        Which stored rows count as history: None for all; a column (name or position)
        whose rows ``> 0`` (or True) count; or a callable ``X -> boolean mask`` such as
        ``lambda X: X["rating"] >= 4``.
    output_col : str, default="history"
        Base name of the appended block.
    pad_value : int, default=0
        Value of the padding positions; skdssm's estimators mask 0.
    leave_one_out : bool, default=False
        Instead of the history before each row's time, give a row that carries an item
        its user's whole stored history **minus that row's own item** (every stored
        interaction with it), the most recent ``max_len`` of the rest: a bag of the user's
        other interactions (SVD++ / FISM-style implicit feedback), leakage-free for training
        rows without relying on timestamps. A row whose item is not stored (a held-out row)
        and a row without the item column (a users frame) get the most recent ``max_len``
        stored items. A row gets fewer than ``max_len`` items when its item was stored more
        than once within the window.

    Attributes
    ----------
    users_ : ndarray
        Users with stored interactions, sorted.
    user_offsets_ : ndarray of shape (n_users + 1,)
        Stored interactions of ``users_[u]`` are ``event_items_[user_offsets_[u]:
        user_offsets_[u + 1]]``, oldest first.
    event_items_ : ndarray
        Stored item ids, grouped by user, by time within a user.
    event_times_ : ndarray or None
        Their timestamps (None when ``time_col`` is None).
    n_features_in_ : int
        Number of columns seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names seen in :meth:`fit`, when X had string column names.

    See Also
    --------
    SequenceTruncator : pads sequences that are already in list cells.

    Notes
    -----
    The look-up is vectorised: stored events are sorted by (user, time), each query row's
    end offset is found with one ``np.searchsorted`` on combined (user, time-rank) keys,
    and the last ``max_len`` positions are gathered with a broadcast index matrix.

    Examples
    --------
    >>> import pandas as pd
    >>> from skdssm.preprocessing import HistoryBuilder
    >>> X = pd.DataFrame({"user_id": [1, 1, 1, 2],
    ...                   "item_id": [10, 11, 12, 10],
    ...                   "timestamp": [1, 2, 2, 5]})
    >>> HistoryBuilder(max_len=3).fit_transform(X)
       user_id  item_id  timestamp  history[0]  history[1]  history[2]
    0        1       10          1           0           0           0
    1        1       11          2           0           0          10
    2        1       12          2           0           0          10
    3        2       10          5           0           0           0
    >>> users = pd.DataFrame({"user_id": [1, 3]})
    >>> HistoryBuilder(max_len=3).fit(X).transform(users)
       user_id  history[0]  history[1]  history[2]
    0        1          10          11          12
    1        3           0           0           0
    """

    def __init__(
        self,
        user_col="user_id",
        item_col="item_id",
        time_col="timestamp",
        max_len=50,
        positive=None,
        output_col="history",
        pad_value=0,
        leave_one_out=False,
    ):
        self.user_col = user_col
        self.item_col = item_col
        self.time_col = time_col
        self.max_len = max_len
        self.positive = positive
        self.output_col = output_col
        self.pad_value = pad_value
        self.leave_one_out = leave_one_out

    def _fit(self, frame: pd.DataFrame, X) -> None:
        self._check_block_params()
        if not isinstance(self.output_col, str):
            raise TypeError(f"output_col must be a str; got {self.output_col!r}.")
        if not isinstance(self.leave_one_out, (bool, np.bool_)):
            raise TypeError(f"leave_one_out must be a bool; got {self.leave_one_out!r}.")
        names = list(frame.columns)
        (user,) = self._columns([self.user_col], "user_col")
        (item,) = self._columns([self.item_col], "item_col")
        for column in (user, item):
            check_no_missing(frame[column], column)
        keep = positive_mask(self.positive, frame, X, names)
        items = frame[item].to_numpy()[keep]
        check_not_padding(items, self.pad_value, item)
        codes, users = pd.factorize(frame[user].to_numpy()[keep], sort=True)
        self.users_ = np.asarray(users)
        if self.time_col is None:
            order = np.argsort(codes, kind="stable")
            self.event_times_ = None
        else:
            (time,) = self._columns([self.time_col], "time_col")
            check_no_missing(frame[time], time)
            times = _time_values(frame[time], time)[keep]
            order = np.lexsort((times, codes))
            self.event_times_ = times[order]
            # Rank of each stored time among the distinct stored times: (user, rank) keys
            # sort like (user, time), so one searchsorted finds "strictly before t".
            self._time_grid = np.unique(self.event_times_)
            ranks = np.searchsorted(self._time_grid, self.event_times_)
            self._event_keys = codes[order] * (len(self._time_grid) + 1) + ranks
        self.event_items_ = items[order]
        counts = np.bincount(codes, minlength=len(self.users_))
        self.user_offsets_ = np.concatenate([[0], np.cumsum(counts)])

    def _history_ends(self, frame: pd.DataFrame, codes: np.ndarray) -> np.ndarray:
        """Offset one past each row's last stored event that it may see."""
        known = codes >= 0
        ends = np.where(known, self.user_offsets_[codes + 1], 0)
        if self.time_col is None:
            return ends
        (time,) = self._columns([self.time_col], "time_col")
        if time not in frame.columns:
            return ends
        times = _time_values(frame[time], time)
        is_datetime = np.issubdtype(times.dtype, np.datetime64)
        if is_datetime != np.issubdtype(self.event_times_.dtype, np.datetime64):
            # numpy would compare datetimes with numbers silently, as nanoseconds.
            raise TypeError(
                f"The time column {time!r} of X has dtype {frame[time].dtype}, but fit saw "
                f"{self.event_times_.dtype} timestamps; pass the same kind (both datetime or "
                f"both numeric)."
            )
        timed = known & ~pd.isna(times)
        ranks = np.searchsorted(self._time_grid, times[timed], side="left")
        keys = codes[timed] * (len(self._time_grid) + 1) + ranks
        ends[timed] = np.searchsorted(self._event_keys, keys, side="left")
        return ends

    def _transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        (user,) = self._columns([self.user_col], "user_col")
        check_columns(frame, [user], what="X")
        check_no_missing(frame[user], user)
        codes = pd.Index(self.users_).get_indexer(frame[user].to_numpy())
        starts = np.where(codes >= 0, self.user_offsets_[codes], 0)
        if self.leave_one_out:
            history = self._other_items(frame, codes, starts)
        else:
            history, _ = self._gather(starts, self._history_ends(frame, codes), self.max_len)
        return self._append_columns(frame, history, block_names(self.output_col, self.max_len))

    def _gather(self, starts: np.ndarray, ends: np.ndarray, width: int):
        """The ``width`` stored items before each row's end offset, padding first where the user
        has fewer (a user's items lie in ``[start, end)``), and the mask of real entries."""
        positions = ends[:, None] + np.arange(-width, 0)
        visible = positions >= starts[:, None]
        block = np.full(positions.shape, self.pad_value,
                        dtype=block_dtype(self.event_items_.dtype, self.pad_value))
        block[visible] = self.event_items_[positions[visible]]
        return block, visible

    def _other_items(self, frame: pd.DataFrame, codes: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """The most recent ``max_len`` stored items of each row's user other than the row's own.

        A window of the last ``max_len + 1`` stored items loses one column per row: the most
        recent occurrence of the row's item when it is in the window, else the oldest; other
        occurrences of the row's item are then padded too.
        """
        ends = np.where(codes >= 0, self.user_offsets_[codes + 1], 0)
        window, visible = self._gather(starts, ends, self.max_len + 1)
        (item,) = self._columns([self.item_col], "item_col")
        if item not in frame.columns:
            return window[:, 1:]
        own = visible & (window == frame[item].to_numpy()[:, None])
        # Last own position in the window, or column 0 when the item is not there.
        drop = np.where(own.any(axis=1), own.shape[1] - 1 - np.argmax(own[:, ::-1], axis=1), 0)
        keep = np.ones(window.shape, dtype=bool)
        keep[np.arange(len(window)), drop] = False
        history = window[keep].reshape(len(window), self.max_len)
        history[own[keep].reshape(history.shape)] = self.pad_value
        return history

    def _output_names(self, names_in) -> list[str]:
        return list(names_in) + block_names(self.output_col, self.max_len)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
