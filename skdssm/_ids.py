"""Ids as values: their types, exact casts into a catalogue, files without pickles, versions.

Ids are compared as values everywhere (``pd.Index`` lookups of object arrays), never after a
cast: ``np.asarray([1, "x"])`` would make the int 1 the string "1".
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
import sklearn
import torch


def versions() -> dict:
    """The versions of the packages a pickled estimator depends on."""
    from . import __version__

    return {"skdssm": __version__, "torch": torch.__version__, "scikit-learn": sklearn.__version__}


def plain_ids(ids: np.ndarray) -> np.ndarray:
    """Ids as an array ``numpy.load`` reads without unpickling: object arrays (strings, or ids
    of mixed types) become fixed-width unicode."""
    return ids.astype(str) if ids.dtype == object else ids


def id_types(ids: np.ndarray) -> tuple:
    """The Python types an id of the array ``ids`` may have and still be one of its kind
    (numpy scalars included); ``(object,)`` for an array of mixed kinds."""
    kind = ids.dtype.kind
    if kind in "iub":
        return (Integral,)
    if kind == "f":
        return (Real,)
    if kind in "US" or pd.api.types.infer_dtype(ids, skipna=False) == "string":
        return (str,)
    return (object,)


def warn_foreign_ids(side: str, ids: np.ndarray, positions: np.ndarray, known_ids) -> None:
    """One warning, with a count, for the unknown ids whose type is not that of the fitted ids
    (``1`` against string ids, ``None``): they are served as unseen, which is rarely meant."""
    unknown = ids[positions < 0]
    if not len(unknown):
        return
    expected = id_types(np.asarray(known_ids))
    foreign = ~pd.Series(unknown, dtype=object).map(
        lambda value: isinstance(value, expected)).to_numpy(bool)
    if foreign.any():
        first = unknown[foreign][0]
        warnings.warn(
            f"{int(foreign.sum())} {side} id(s) are unknown to the model and of another type than "
            f"the {side} ids seen in fit (first: {first!r} of type {type(first).__name__}; the "
            f"fitted ids are {np.asarray(known_ids).dtype} ({expected[0].__name__})): they get the "
            f"out-of-vocabulary embedding. Pass ids of the fitted type.",
            UserWarning, stacklevel=4)


def as_catalogue_ids(ids, catalogue: np.ndarray, name) -> np.ndarray:
    """``ids`` in the dtype of ``catalogue``, or a ValueError naming the first id it cannot hold
    exactly: a cast would truncate 3.5, wrap 2**63 + 5, or add "5" as a second 5."""
    values = np.asarray(ids, dtype=object)
    expected = id_types(catalogue)
    if catalogue.dtype == object:
        cast = values
        fits = pd.Series(values, dtype=object).map(lambda v: isinstance(v, expected)).to_numpy(bool)
    else:
        try:
            cast = values.astype(catalogue.dtype)
            fits = (pd.Series(cast, dtype=object) == pd.Series(values, dtype=object)).to_numpy(bool)
        except (ValueError, TypeError, OverflowError):
            fits = pd.Series(values, dtype=object).map(
                lambda v: holds_exactly(catalogue.dtype, v)).to_numpy(bool)
    if not fits.all():
        bad = values[~fits][0]
        raise ValueError(
            f"Cannot add the {name} {bad!r} ({type(bad).__name__}) to the catalogue: its ids are "
            f"{catalogue.dtype} ({expected[0].__name__}), which cannot hold it exactly (a cast "
            f"would change it or make it equal to another id). Pass ids of the catalogue's type, "
            f"or refit with ids of a type that holds them all (e.g. str)."
        )
    return cast


def holds_exactly(dtype: np.dtype, value) -> bool:
    """Whether ``value`` survives a cast to ``dtype`` unchanged (the slow path of an error)."""
    try:
        return bool(np.asarray([value], dtype=object).astype(dtype)[0] == value)
    except (ValueError, TypeError, OverflowError):
        return False
