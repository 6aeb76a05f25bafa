"""Business rules of the serving verbs: candidate restriction, extra exclusions, typed fills.

Pure functions over the fitted catalogue (item ids, embeddings) used by the estimators'
``predict_topk`` and ``similar_items``; they know nothing of towers or training.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .neighbors import exact_topk


def item_positions(item_ids: np.ndarray, ids) -> np.ndarray:
    """Position of each of ``ids`` in ``item_ids`` (-1 when absent), ids compared as values."""
    return pd.Index(item_ids.astype(object)).get_indexer(pd.Index(ids, dtype=object))


def as_id_array(ids, name: str) -> np.ndarray:
    """A 1-D object array of the ids as given (no common-type conversion: 1 stays 1 next to "x")."""
    if isinstance(ids, (str, bytes)) or np.ndim(ids) != 1:
        raise ValueError(f"{name} must be a 1-D array-like of item ids; got {ids!r:.80}.")
    if isinstance(ids, (pd.Series, pd.Index, np.ndarray)):
        return np.asarray(ids, dtype=object)
    values = np.empty(len(ids), dtype=object)
    values[:] = list(ids)
    return values


def query_user_ids(users, user_col) -> np.ndarray:
    """The user id of each query row: the ``user_col`` column of a frame, else the ids."""
    if isinstance(users, pd.DataFrame):
        return users[user_col].to_numpy(dtype=object)
    return as_id_array(users, "users")


def exclusion_matrix(exclude_items, users: np.ndarray, item_ids: np.ndarray, user_col,
                     item_col) -> sp.csr_matrix:
    """(n_queries, n_items) boolean matrix of the items ``exclude_items`` removes for each query.

    ``exclude_items`` is an array-like of item ids (every query row), a mapping user id -> item
    ids, or a frame of (``user_col``, ``item_col``) rows; the latter two apply to every query row
    of that user. Item ids absent from the catalogue are ignored (they cannot be returned).
    """
    n_queries, n_items = len(users), len(item_ids)
    if isinstance(exclude_items, (pd.DataFrame, Mapping)):
        pairs = _user_item_pairs(exclude_items, user_col, item_col)
        rows = pd.DataFrame({"user": pd.Series(users, dtype=object),
                             "row": np.arange(n_queries)})
        matched = rows.merge(pairs, on="user")
        row, column = matched["row"].to_numpy(), item_positions(item_ids, matched["item"])
    else:
        columns = np.unique(item_positions(item_ids, as_id_array(exclude_items, "exclude_items")))
        columns = columns[columns >= 0]
        row = np.repeat(np.arange(n_queries), len(columns))
        column = np.tile(columns, n_queries)
    known = column >= 0
    return sp.csr_matrix((np.ones(int(known.sum()), dtype=bool), (row[known], column[known])),
                         shape=(n_queries, n_items))


def _user_item_pairs(exclude_items, user_col, item_col) -> pd.DataFrame:
    """The (user, item) rows of a mapping user -> ids or of a frame, as object columns."""
    if isinstance(exclude_items, pd.DataFrame):
        missing = [c for c in (user_col, item_col) if c not in exclude_items.columns]
        if missing:
            raise ValueError(
                f"Column {missing[0]!r} is missing from the exclude_items frame; it has columns "
                f"{list(exclude_items.columns)}. Pass (user_col, item_col) = ({user_col!r}, "
                f"{item_col!r}) rows, a dict user -> item ids, or an array of item ids.")
        return pd.DataFrame({"user": exclude_items[user_col].to_numpy(dtype=object),
                             "item": exclude_items[item_col].to_numpy(dtype=object)})
    items = pd.Series(list(exclude_items.values()),
                      index=pd.Index(list(exclude_items.keys()), dtype=object), dtype=object)
    # A scalar value is one id; an empty list gives no row (explode makes it NaN, dropped).
    exploded = items.explode().dropna()
    return pd.DataFrame({"user": exploded.index.to_numpy(dtype=object),
                         "item": exploded.to_numpy(dtype=object)})


def candidate_positions(candidates, item_ids: np.ndarray) -> np.ndarray:
    """Sorted unique catalogue positions of ``candidates``; unknown ids are a ValueError."""
    values = as_id_array(candidates, "candidates")
    positions = item_positions(item_ids, values)
    unknown = values[positions < 0]
    if len(unknown):
        raise ValueError(
            f"{len(unknown)} candidates are not in the catalogue (item_ids_), e.g. "
            f"{list(unknown[:5])}; candidates must be ids of items seen in fit or added by "
            "index_items.")
    return np.unique(positions)


def candidate_topk(queries: np.ndarray, embeddings: np.ndarray, k: int, positions: np.ndarray,
                   exclude: sp.csr_matrix | None, removed: np.ndarray | None):
    """Exact ``(distances, indices)`` of the ``k`` best of the catalogue ``positions`` per query.

    Scores only the candidates (a matrix product over them), as implicit's ``items=`` does;
    excluded and removed items are skipped, and slots beyond the eligible ones are -1 / inf.
    """
    if removed is not None:
        positions = positions[~removed[positions]]
    distances = np.full((len(queries), k), np.inf, dtype=np.float32)
    indices = np.full((len(queries), k), -1, dtype=np.int64)
    found = min(k, len(positions))
    if found and len(queries):
        sub_exclude = None if exclude is None else sp.csr_matrix(exclude)[:, positions]
        scores, local = exact_topk(queries, embeddings[positions], found, sub_exclude)
        eligible = np.isfinite(scores)
        distances[:, :found] = np.where(eligible, 1.0 - scores, np.inf)
        indices[:, :found] = np.where(eligible, positions[local], -1)
    return distances, indices


def default_fill(dtype: np.dtype):
    """The fill of the item ids' dtype: -1 (signed ints), the largest value (unsigned ints),
    NaN (floats), NaT (datetimes), "" (numpy strings), None (objects)."""
    if dtype.kind == "i":
        return -1
    if dtype.kind == "u":
        return np.iinfo(dtype).max
    if dtype.kind in "fc":
        return np.nan
    if dtype.kind in "mM":
        return np.array("NaT", dtype=dtype)[()]
    if dtype.kind in "US":
        return dtype.type()
    return None


def check_fill_value(fill_value, dtype: np.dtype):
    """``fill_value`` (None: the dtype's default) as a value of ``dtype``, or a ValueError when
    it cannot be stored there exactly."""
    if fill_value is None:
        return default_fill(dtype)
    if dtype.kind == "O":
        return fill_value
    try:
        stored = np.array([fill_value]).astype(dtype, casting="same_kind")[0]
    except (TypeError, ValueError, OverflowError):
        stored = None
    if stored is None or not (stored == fill_value or (stored != stored and fill_value != fill_value)):
        raise ValueError(
            f"fill_value={fill_value!r} cannot be stored exactly in the item ids' dtype {dtype}; "
            f"pass a value of that dtype that is not an item id, or None for the default "
            f"({default_fill(dtype)!r}).")
    return stored


def ids_with_fill(item_ids: np.ndarray, indices: np.ndarray, fill_value) -> np.ndarray:
    """``item_ids[indices]`` with ``fill_value`` (checked by :func:`check_fill_value`) where the
    index is -1, keeping the dtype of ``item_ids`` (object for bools, which have no spare value)."""
    ids = item_ids[np.maximum(indices, 0)]
    short = indices < 0
    if not short.any():
        return ids
    if ids.dtype.kind == "b":
        ids = ids.astype(object)
    if fill_value is not None and pd.Index(item_ids.astype(object)).isin([fill_value]).any():
        shown = fill_value.item() if isinstance(fill_value, np.generic) else fill_value
        raise ValueError(
            f"Some rows have fewer eligible items than k, and their fill value {shown!r} is "
            "an item id of the catalogue, so the filled slots could not be told from "
            "recommendations; pass fill_value= a value of the ids' dtype that is not an item id.")
    ids[short] = fill_value
    return ids
