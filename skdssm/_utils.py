"""Small helpers shared by every module: randomness and input checks."""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.utils import check_random_state


def check_generator(random_state) -> np.random.Generator:
    """Turn ``random_state`` (None, int, RandomState or Generator) into a numpy Generator.

    An int always gives the same stream; a ``RandomState`` is consumed to draw a seed, as
    scikit-learn does when it hands randomness to a sub-estimator.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.RandomState)):
        return np.random.default_rng(derive_seed(random_state))
    raise ValueError(
        f"random_state must be None, an int, a numpy RandomState or Generator; got {random_state!r}."
    )


def derive_seed(random_state) -> int:
    """A 31-bit int seed for torch, hnswlib and numpy derived from ``random_state``."""
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(np.iinfo(np.int32).max))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state) % np.iinfo(np.int32).max
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def check_columns(X: pd.DataFrame, columns: Iterable[str], *, what: str = "X") -> None:
    """Raise a ValueError naming the first column of ``columns`` missing from ``X``."""
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise ValueError(
            f"Column {missing[0]!r} is missing from {what}; {what} has columns {list(X.columns)}."
            + (f" Also missing: {missing[1:]}." if len(missing) > 1 else "")
        )


def check_dataframe(X, *, what: str = "X", ensure_non_empty: bool = False) -> pd.DataFrame:
    """Require a pandas DataFrame (the interaction frame every estimator takes), with rows when
    ``ensure_non_empty``."""
    if sp.issparse(X):
        raise TypeError(
            f"{what} must be a pandas DataFrame with one row per (user, item) interaction; got "
            f"the sparse matrix {type(X).__name__}: sparse input is not supported. Build a "
            "DataFrame with the id and feature columns (multi-valued features as list cells)."
        )
    if not isinstance(X, pd.DataFrame):
        raise TypeError(
            f"{what} must be a pandas DataFrame with one row per (user, item) interaction; "
            f"got {type(X).__name__}."
        )
    if ensure_non_empty and len(X) == 0:
        raise ValueError(f"{what} has 0 rows; fit needs at least one (user, item) interaction.")
    return X


def expand_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start, start + length)`` of every (start, length) pair, vectorised."""
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(np.asarray(starts, dtype=np.int64) - offsets, lengths) + np.arange(lengths.sum())
