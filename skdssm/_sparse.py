"""A ``scipy.sparse`` users x items matrix as the equivalent interaction frame.

implicit and LightFM users hold their data as a sparse matrix whose rows are users and columns
items; :class:`~skdssm.estimators.TwoTowerRetriever` and
:class:`~skdssm.baselines.PopularityRecommender` accept one in ``fit`` through
:func:`interactions_from_sparse`, so both read it the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


def _aligned(frame, n_rows: int, name: str, axis: str, id_col) -> pd.DataFrame | None:
    if frame is None:
        return None
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame with one row per {axis} of the "
                        f"sparse matrix X; got {type(frame).__name__}.")
    if len(frame) != n_rows:
        raise ValueError(f"{name} must have one row per {axis} of the matrix ({n_rows}); got "
                         f"{len(frame)} rows. Row i of {name} describes {axis} i.")
    if id_col in frame.columns:
        raise ValueError(f"{name} has a column {id_col!r}, but with a sparse matrix the ids are "
                         f"the {axis} positions; drop the column (or rename it to keep it as a "
                         "feature).")
    return frame.reset_index(drop=True)


def interactions_from_sparse(R, user_col, item_col, user_frame=None, item_frame=None,
                             *, y=None, sample_weight=None):
    """The interaction frame of a sparse users x items matrix and its stored values.

    One row per stored entry, in (row, column) order, duplicates summed: ``user_col`` is the
    row position, ``item_col`` the column position, then the columns of ``user_frame`` (row i
    describes user i) and of ``item_frame`` (row j describes item j) gathered for each entry.

    Returns
    -------
    X : DataFrame
    values : ndarray of float64
        The stored value of each row of X.
    """
    if y is not None or sample_weight is not None:
        raise ValueError("With a sparse matrix X the stored values are the ratings / weights of "
                         "the interactions; pass y=None and sample_weight=None (scale R's values "
                         "instead).")
    if R.ndim != 2:
        raise ValueError(f"The sparse matrix X must be 2-D (users x items); got shape {R.shape}.")
    n_users, n_items = R.shape
    users = _aligned(user_frame, n_users, "user_frame", "row", user_col)
    items = _aligned(item_frame, n_items, "item_frame", "column", item_col)
    # CSR -> COO: duplicates summed and entries sorted by (row, column).
    coo = sp.csr_matrix(R).tocoo()
    rows, columns = coo.row.astype(np.int64), coo.col.astype(np.int64)
    if not len(rows):
        raise ValueError("The sparse matrix X has no stored entry; it holds no interaction.")
    parts = [pd.DataFrame({user_col: rows, item_col: columns})]
    for frame, positions, name in ((users, rows, "user_frame"), (items, columns, "item_frame")):
        if frame is None:
            continue
        taken = [c for part in parts for c in part.columns]
        clash = [c for c in frame.columns if c in taken]
        if clash:
            raise ValueError(f"Column {clash[0]!r} of {name} is already a column of the "
                             "interactions (an id column or a user_frame column); rename it.")
        parts.append(frame.iloc[positions].reset_index(drop=True))
    return pd.concat(parts, axis=1), np.asarray(coo.data, dtype=np.float64)


def check_side_frames(user_frame, item_frame) -> None:
    """``user_frame`` / ``item_frame`` describe the rows / columns of a sparse X only."""
    for name, frame in (("user_frame", user_frame), ("item_frame", item_frame)):
        if frame is not None:
            raise ValueError(f"{name} describes the rows or columns of a sparse matrix X; with a "
                             "DataFrame X, put the feature columns in X itself.")
