"""Users' positive histories as ragged (CSR-style) arrays, gathered one mini-batch at a time.

:class:`TwoTowerRetriever` describes a user by the items they liked: a bag (mean embedding of
their most recent items), a behaviour sequence (self-attention over the items before each
row's time) or a profile (mean content features of their items). Storing those per training
row would cost rows x width; here each user's items are stored once, oldest first (memory
grows with the interactions), and :class:`UserInputs` gathers what one batch needs.

The rules reproduce the sklearn transformers a user can run on a frame:
:class:`~skdssm.preprocessing.HistoryBuilder` (``leave_one_out=True`` for bags, the time cut for
sequences) and :class:`~skdssm.preprocessing.UserProfileEncoder` (leave-one-out profiles).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._features import (
    HISTORY,
    HISTORY_BAG,
    HISTORY_END,
    ITEM_POSITION,
    LEAVE_ONE_OUT,
    N_RESERVED,
    OFFSETS,
    PAD,
    POOLING_TRANSPOSE,
    PROFILE,
    USER_POSITION,
)
from ._utils import expand_ranges


class UserHistories:
    """Each user's positive items, oldest first, in CSR layout.

    User ``u``'s items are ``items[indptr[u]:indptr[u + 1]]`` (item positions in the
    catalogue), with their ``times`` when the data has timestamps. A user position of -1
    (unknown) has an empty history.
    """

    def __init__(self, indptr: np.ndarray, items: np.ndarray, times: np.ndarray | None = None):
        self.indptr = indptr
        self.items = items
        self.times = times

    @classmethod
    def from_events(cls, users: np.ndarray, items: np.ndarray, n_users: int,
                    times: np.ndarray | None = None) -> UserHistories:
        """Group (user, item[, time]) events by user, by time within a user (stable: rows
        with equal times keep their order)."""
        users = np.asarray(users, dtype=np.int64)
        order = (np.argsort(users, kind="stable") if times is None
                 else np.lexsort((times, users)))
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
        return cls(indptr, np.asarray(items, dtype=np.int64)[order],
                   None if times is None else np.asarray(times)[order])

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.indptr, self.items, self.times) if a is not None)

    def lengths(self, users: np.ndarray | None = None) -> np.ndarray:
        lengths = np.diff(self.indptr)
        if users is None:
            return lengths
        return np.where(users >= 0, lengths[np.maximum(users, 0)], 0)

    def bounds(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start and end offsets of each user's items (0, 0 for -1)."""
        known = users >= 0
        safe = np.maximum(users, 0)
        return (np.where(known, self.indptr[safe], 0), np.where(known, self.indptr[safe + 1], 0))

    def take(self, users: np.ndarray) -> UserHistories:
        """The histories of ``users`` (one entry per element, -1 empty), as a new object."""
        starts, ends = self.bounds(np.asarray(users, dtype=np.int64))
        lengths = ends - starts
        indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        events = expand_ranges(starts, lengths)
        return UserHistories(indptr, self.items[events],
                             None if self.times is None else self.times[events])

    @staticmethod
    def stack(first: UserHistories, second: UserHistories) -> UserHistories:
        """Row by row, ``first``'s events then ``second``'s (in time order when timed); both
        hold the same rows."""
        rows = np.arange(first.n_users)
        users = np.concatenate([np.repeat(rows, first.lengths()), np.repeat(rows, second.lengths())])
        times = None if first.times is None else np.concatenate([first.times, second.times])
        return UserHistories.from_events(users, np.concatenate([first.items, second.items]),
                                         first.n_users, times)

    def ends_before(self, users: np.ndarray, times: np.ndarray) -> np.ndarray:
        """One past each row's last event strictly before its time (the user's end when the
        time is missing): the sequence of a row never holds its own or later interactions."""
        starts, ends = self.bounds(users)
        if self.times is None:
            return ends
        timed = (users >= 0) & ~pd.isna(times)
        # Offset within the user's time-sorted slice: a searchsorted on (user, time) keys.
        grid = np.unique(self.times)
        event_user = np.repeat(np.arange(self.n_users), np.diff(self.indptr))
        width = len(grid) + 1
        event_keys = event_user * width + np.searchsorted(grid, self.times)
        keys = users[timed] * width + np.searchsorted(grid, times[timed], side="left")
        out = ends.copy()
        out[timed] = np.searchsorted(event_keys, keys, side="left")
        return np.clip(out, starts, ends)

    def window(self, users: np.ndarray, ends: np.ndarray, width: int):
        """The ``width`` items before each row's end offset, oldest first and right-aligned
        (-1 where the user has fewer), and the mask of real entries."""
        starts, _ = self.bounds(users)
        positions = ends[:, None] + np.arange(-width, 0)
        visible = positions >= starts[:, None]
        if not len(self.items):
            return np.full(positions.shape, -1, dtype=np.int64), visible
        return np.where(visible, self.items[np.clip(positions, 0, None)], -1), visible

    def bag(self, users: np.ndarray, own_items: np.ndarray | None, width: int):
        """Each row's bag: the user's most recent ``width`` items other than the row's own.

        As ``HistoryBuilder(leave_one_out=True)``: a window of the last ``width + 1`` items
        loses one column per row, the most recent occurrence of the row's item when it is in
        the window (else the oldest), and other occurrences of the row's item are dropped too.
        ``own_items`` -1 (or None) means the row has no item (serving): the last ``width``.

        Returns
        -------
        items : ndarray of int64
            The bags' item positions, row after row.
        lengths : ndarray of int64 of shape (n_rows,)
        """
        starts, ends = self.bounds(users)
        # Each row's window of its last width + 1 events, ragged (no rows x width block).
        first = np.maximum(ends - (width + 1), starts)
        sizes = ends - first
        rows = np.repeat(np.arange(len(users)), sizes)
        window = self.items[expand_ranges(first, sizes)]
        if own_items is None:
            own_items = np.full(len(users), -1)
        own = window == np.asarray(own_items)[rows]
        has_own = np.zeros(len(users), dtype=bool)
        has_own[rows[own]] = True
        keep = ~own
        # A full window without the row's item loses its oldest event instead.
        full = (sizes == width + 1) & ~has_own
        keep[(np.cumsum(sizes) - sizes)[full]] = False
        return window[keep], np.bincount(rows[keep], minlength=len(users))

    def sequence(self, users: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
        """Codes of the last ``width`` items before each row's end, padding (0) first."""
        block, visible = self.window(users, ends, width)
        return np.where(visible, block + N_RESERVED, PAD)

    def matrix(self, n_items: int) -> sp.csr_matrix:
        """Users x items counts of the stored events."""
        counts = np.ones(len(self.items), dtype=np.float64)
        return sp.csr_matrix((counts, self.items, self.indptr), shape=(self.n_users, n_items))


class UserProfiles:
    """Per-user means of item content features over the users' histories.

    As :class:`~skdssm.preprocessing.UserProfileEncoder`: a user's profile is the mean feature
    vector of their positive items; a training row marked leave-one-out gets the mean over the
    user's *other* items (the global mean of the other positive rows when the user has no
    other), every other row the full profile, and a user without items the global mean.
    """

    def __init__(self, histories: UserHistories, item_features: np.ndarray):
        self.item_features = np.asarray(item_features, dtype=np.float64)
        self.sums = histories.matrix(len(self.item_features)) @ self.item_features
        self.counts = histories.lengths()
        self.total = self.sums.sum(axis=0)
        self.n_events = int(self.counts.sum())

    @property
    def global_profile(self) -> np.ndarray:
        return self.total / max(self.n_events, 1)

    def rows(self, users: np.ndarray, own_items: np.ndarray, leave_one_out: np.ndarray) -> np.ndarray:
        known = users >= 0
        safe = np.maximum(users, 0)
        counts = np.where(known, self.counts[safe], 0)
        sums = np.where(known[:, None], self.sums[safe], 0.0)
        full = np.where((counts > 0)[:, None], sums / np.maximum(counts, 1)[:, None],
                        self.global_profile)
        if not leave_one_out.any():
            return full.astype(np.float32)
        own = self.item_features[np.maximum(own_items, 0)]
        others = counts - 1
        user_means = (sums - own) / np.maximum(others, 1)[:, None]
        fallback = ((self.total - own) / (self.n_events - 1) if self.n_events > 1
                    else np.broadcast_to(self.global_profile, own.shape))
        loo = np.where((others > 0)[:, None], user_means, fallback)
        return np.where(leave_one_out[:, None], loo, full).astype(np.float32)

    @classmethod
    def of(cls, histories: UserHistories, like: UserProfiles) -> UserProfiles:
        """Profiles of other histories (e.g. ``history=`` at serving) over the same items,
        with the same global fallback as ``like``."""
        out = cls(histories, like.item_features)
        out.total, out.n_events = like.total, like.n_events
        return out


class UserInputs:
    """Batch transform: adds the generated user inputs (bag, sequence or profile) of each row.

    Reads the rows' :data:`USER_POSITION` (and :data:`ITEM_POSITION`, :data:`HISTORY_END`,
    :data:`LEAVE_ONE_OUT` where the representation needs them) and writes the tower's keys:
    the bag as flat codes plus offsets (``torch.nn.functional.embedding_bag`` pools them
    without a rows x width x dim tensor), the sequence as a right-aligned padded block, the
    profile as float features.

    ``bag_codes`` (the number of rows of the bag's embedding) also adds the transpose of the
    batch's mean-pooling matrix, in CSR layout (see :func:`bag_pooling_transpose`): the towers'
    backward pass then pools the gradient by embedding row instead of sorting the codes (on the
    CPU, ``embedding_bag``'s own backward sorted them and was a fifth of a training step).
    """

    def __init__(self, representation: str, histories: UserHistories, *, bag_size: int = 0,
                 sequence_length: int = 0, profiles: UserProfiles | None = None,
                 bag_codes: int | None = None):
        self.representation = representation
        self.histories = histories
        self.bag_size = bag_size
        self.sequence_length = sequence_length
        self.profiles = profiles
        self.bag_codes = bag_codes

    def arrays(self, rows: dict) -> dict:
        """The generated inputs (numpy) for a dict of per-row numpy meta arrays."""
        users = np.asarray(rows[USER_POSITION])
        own = rows.get(ITEM_POSITION)
        if self.representation == "bag":
            items, lengths = self.histories.bag(users, None if own is None else np.asarray(own),
                                                self.bag_size)
            offsets = np.zeros(len(users), dtype=np.int64)
            np.cumsum(lengths[:-1], out=offsets[1:])
            key = f"user:{HISTORY_BAG}"
            out = {key: items + N_RESERVED, key + OFFSETS: offsets}
            if self.bag_codes is not None:
                transpose = bag_pooling_transpose(out[key], offsets, self.bag_codes)
                out.update(zip((key + suffix for suffix in POOLING_TRANSPOSE), transpose))
            return out
        if self.representation == "sequence":
            ends = rows.get(HISTORY_END)
            ends = self.histories.bounds(users)[1] if ends is None else np.asarray(ends)
            return {f"user:{HISTORY}": self.histories.sequence(users, ends, self.sequence_length)}
        if self.representation == "profile":
            loo = rows.get(LEAVE_ONE_OUT)
            loo = np.zeros(len(users), bool) if loo is None else np.asarray(loo, dtype=bool)
            own = np.full(len(users), -1) if own is None else np.asarray(own)
            return {f"user:{PROFILE}": self.profiles.rows(users, own, loo)}
        return {}

    def __call__(self, batch: dict) -> dict:
        import torch

        meta = {key: batch[key].numpy() for key in (USER_POSITION, ITEM_POSITION, HISTORY_END,
                                                    LEAVE_ONE_OUT) if key in batch}
        generated = self.arrays(meta)
        return {**batch, **{key: torch.from_numpy(np.ascontiguousarray(value))
                            for key, value in generated.items()}}


def bag_pooling_transpose(codes: np.ndarray, offsets: np.ndarray, n_codes: int) -> tuple:
    """Transpose of the mean-pooling matrix of flat bags, in CSR layout.

    The bags (``codes`` of row ``i`` from ``offsets[i]`` to the next offset; padding, code 0,
    left out) pool an embedding table ``E`` of ``n_codes`` rows as ``P @ E``, where
    ``P[i, c]`` is the share of code ``c`` in row ``i``'s bag. Their gradient with respect to
    ``E`` is ``P.T @ grad``: for every code ``c``, the rows that pooled it and their weights.

    Returns
    -------
    rows : ndarray of int64
        For each code in turn, the rows whose bags hold it (once per occurrence).
    code_offsets : ndarray of int64 of shape (n_codes,)
        Where each code's rows start in ``rows``.
    weights : ndarray of float32
        ``P[row, code]`` of each entry (``1 / bag length``).
    """
    codes = np.asarray(codes, dtype=np.int64)
    indptr = np.append(offsets, len(codes)).astype(np.int64)
    valid = codes != PAD
    rows = np.repeat(np.arange(len(offsets)), np.diff(indptr))
    counts = np.bincount(rows, weights=valid, minlength=len(offsets))
    weights = (1.0 / np.maximum(counts, 1))[rows] * valid
    pooling = sp.csr_matrix((weights.astype(np.float32), codes, indptr),
                            shape=(len(offsets), n_codes))
    transpose = pooling.tocsc()  # the CSR arrays of P.T, by a counting pass (no sort)
    return (transpose.indices.astype(np.int64), transpose.indptr[:-1].astype(np.int64),
            transpose.data.astype(np.float32, copy=False))
