"""Machinery shared by skdssm's DataFrame transformers.

Input validation (DataFrame or numeric array), column references (names or positions),
the padded-block layout that the estimators read, and the output container rule.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_scalar
from sklearn.utils.validation import check_is_fitted

from skdssm._utils import check_columns
from skdssm.utils._sklearn_compat import (
    _check_feature_names_in,
    _get_container_adapter,
    validate_data,
)


def block_names(base: str, max_len: int) -> list[str]:
    """Column names ``base[0] .. base[max_len - 1]`` of one padded block."""
    return [f"{base}[{position}]" for position in range(max_len)]


# ----------------------------------------------------------------------------- parameters


def check_max_len(max_len) -> int:
    return check_scalar(max_len, "max_len", numbers.Integral, min_val=1)


def check_option(value, name: str, options: Sequence[str]) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}; got {value!r}.")


def check_pad_value(pad_value) -> None:
    if not isinstance(pad_value, numbers.Integral) or isinstance(pad_value, (bool, np.bool_)):
        raise TypeError(f"pad_value must be an int; got {pad_value!r}.")


def column_position(ref, names: Sequence[str], param: str) -> int:
    """Position of the column ``ref`` (a name, or an int position) among ``names``."""
    if isinstance(ref, numbers.Integral) and not isinstance(ref, (bool, np.bool_)):
        if 0 <= ref < len(names):
            return int(ref)
        raise ValueError(
            f"{param}={ref!r} is not a valid column position: X has {len(names)} feature(s), "
            f"so positions run from 0 to {len(names) - 1}."
        )
    if isinstance(ref, str):
        if ref in names:
            return list(names).index(ref)
        raise ValueError(
            f"Column {ref!r} (parameter {param}) is missing from X; X has columns {list(names)}."
        )
    raise TypeError(
        f"{param} must name a column (str) or give its position (int); "
        f"got {ref!r} of type {type(ref).__name__}."
    )


# ----------------------------------------------------------------------------- cell values


def check_no_missing(series: pd.Series, name: str) -> None:
    """Raise a ValueError naming ``name`` if the column holds NaN/None/NaT (or inf)."""
    missing = np.flatnonzero(series.isna().to_numpy())
    if missing.size:
        raise ValueError(
            f"Column {name!r} of X contains NaN/None at {missing.size} row(s) (first at row "
            f"position {missing[0]}); fill or drop those rows before this transformer."
        )
    if pd.api.types.is_float_dtype(series.dtype):
        infinite = np.flatnonzero(np.isinf(series.to_numpy(dtype=float)))
        if infinite.size:
            raise ValueError(
                f"Column {name!r} of X contains inf at {infinite.size} row(s) (first at row "
                f"position {infinite[0]}); its values must be finite."
            )


def _holds_cells(series: pd.Series) -> bool:
    """Whether the column can hold lists or strings (object or string dtype)."""
    return series.dtype == object or isinstance(series.dtype, pd.StringDtype)


def explode_cells(series: pd.Series, name: str, sep: str | None = None):
    """Flatten a column of list cells into ``(values, rows)``, rows ascending.

    A cell may be a list, tuple or array (its elements), a ``sep``-joined string when ``sep``
    is given (its non-empty tokens), or a scalar (one element). Empty cells contribute no
    values. NaN/None cells or elements raise a ValueError naming the column.
    """
    check_no_missing(series, name)
    if not _holds_cells(series):
        return series.to_numpy(), np.arange(len(series))
    if sep is not None and pd.api.types.infer_dtype(series, skipna=False) == "string":
        # An interaction frame repeats each item's string on every row of that item:
        # split each distinct string once, then repeat its tokens per row.
        codes, distinct = pd.factorize(series)
        values, owner = _explode(pd.Series(np.asarray(distinct, dtype=object)), name, sep)
        counts = np.bincount(owner, minlength=len(distinct))
        lengths = counts[codes]
        rows = np.repeat(np.arange(len(codes)), lengths)
        within = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        first = np.cumsum(counts) - counts
        return values[np.repeat(first[codes], lengths) + within], rows
    return _explode(series.reset_index(drop=True), name, sep)


def _explode(cells: pd.Series, name: str, sep: str | None):
    from_string = np.zeros(len(cells), dtype=bool)
    if sep is not None:
        split = cells.str.split(sep, regex=False)
        from_string = split.notna().to_numpy()
        cells = split.where(split.notna(), cells)
    exploded = cells.explode()
    values = exploded.to_numpy()
    rows = exploded.index.to_numpy()
    keep = ~pd.isna(values)
    if not keep.all():
        # explode turns an empty list into a single NaN; a NaN element of a list is an error.
        candidates = np.unique(rows[~keep])
        nonempty = candidates[cells.iloc[candidates].map(len).to_numpy() > 0]
        if nonempty.size:
            raise ValueError(
                f"Column {name!r} of X holds NaN/None inside the list at row position "
                f"{nonempty[0]}; remove missing elements before this transformer."
            )
    if from_string.any():
        keep &= ~(from_string[rows] & (values == ""))
    values, rows = values[keep], rows[keep]
    if values.dtype == object:
        # Exploded cells come back as objects; recover int/float/str dtypes for the ids.
        if len(values):
            values = pd.Series(values, dtype=object).infer_objects().to_numpy()
        else:
            values = values.astype(np.int64)
    return values, rows


def check_not_padding(values: np.ndarray, pad_value, name: str) -> None:
    """Item ids equal to ``pad_value`` would be read as padding downstream."""
    clash = np.flatnonzero(np.asarray(values == pad_value, dtype=bool))
    if clash.size:
        raise ValueError(
            f"Column {name!r} of X contains the item id {pad_value!r}, which equals "
            f"pad_value={pad_value!r} and would be read as padding (skdssm's estimators mask "
            f"0). Remap the item ids to start at 1 (e.g. codes + 1 from "
            f"sklearn.preprocessing.OrdinalEncoder) or pass another pad_value."
        )


def block_dtype(values_dtype: np.dtype, pad_value) -> np.dtype:
    """Smallest dtype holding both the ids and the padding (keeps float32 and int ids)."""
    return np.result_type(values_dtype, np.min_scalar_type(pad_value))


def pad_ragged(values, rows, n_rows, max_len, *, keep, padding, pad_value, dtype):
    """Lay ragged rows out as an ``(n_rows, max_len)`` block.

    ``values`` are grouped by ``rows`` (ascending). ``keep="first"`` keeps the first
    ``max_len`` values of a row, ``"last"`` the last ones; ``padding="pre"`` puts the
    padding before the values, ``"post"`` after them.
    """
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.cumsum(counts) - counts
    position = np.arange(len(values)) - starts[rows]
    if keep == "last":
        position = position - np.maximum(counts - max_len, 0)[rows]
    kept = (position >= 0) & (position < max_len)
    if padding == "pre":
        position = position + (max_len - np.minimum(counts, max_len))[rows]
    block = np.full((n_rows, max_len), pad_value, dtype=dtype)
    block[rows[kept], position[kept]] = values[kept]
    return block


def positive_mask(positive, frame: pd.DataFrame, X, names: Sequence[str]) -> np.ndarray:
    """Positive rows: all (None), a column's rows ``> 0``, or a callable's boolean mask."""
    n_rows = len(frame)
    if positive is None:
        return np.ones(n_rows, dtype=bool)
    if callable(positive):
        mask = np.asarray(positive(X))
        if mask.shape != (n_rows,) or mask.dtype != bool:
            raise ValueError(
                f"positive(X) must return a boolean mask with one entry per row of X "
                f"(shape ({n_rows},)); got dtype {mask.dtype} and shape {mask.shape}."
            )
        return mask
    column = names[column_position(positive, names, "positive")]
    series = frame[column]
    check_no_missing(series, column)
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=bool)
    if not pd.api.types.is_numeric_dtype(series.dtype):
        raise TypeError(
            f"The positive column {column!r} must be boolean or numeric (rows > 0 count as "
            f"positive); got dtype {series.dtype}. Pass a callable X -> bool mask instead."
        )
    return series.to_numpy() > 0


def as_column_refs(columns, n_features: int) -> list:
    """``columns`` as a list of references; None means every column, a str one column."""
    if columns is None:
        return list(range(n_features))
    if isinstance(columns, (str, numbers.Integral)):
        return [columns]
    return list(columns)


def check_unique_names(names: Sequence[str]) -> None:
    seen = pd.Index(names)
    if not seen.is_unique:
        clash = seen[seen.duplicated()][0]
        raise ValueError(
            f"The output would contain the column {clash!r} twice: an input column already has "
            f"the name of a generated column. Rename that input column or change the "
            f"transformer's output names."
        )


# ----------------------------------------------------------------------------- base class


class FrameTransformer(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Base of skdssm's transformers: DataFrame (by name) or numeric array (by position) in.

    Subclasses implement ``_fit(frame, X)``, ``_transform(frame) -> DataFrame`` and
    ``_output_names(names_in) -> list``. ``frame`` is the input as a DataFrame whose
    columns carry the feature names (``x0, x1, ...`` for arrays); ``X`` is what the user
    passed (validated), handed to user callables.

    Output rule (``set_output(transform="default")``): a DataFrame in gives a DataFrame
    out (index kept), an array in gives a numeric array out. ``"pandas"`` always gives a
    DataFrame. The class opts out of sklearn's automatic wrapping because a DataFrame
    with other columns than at fit (a users-only frame) has other output columns than
    ``get_feature_names_out()``; the wrapping is done here instead.
    """

    def fit(self, X, y=None):
        """Learn what the transformer needs from the training frame.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Interaction frame (columns by name), or a numeric array (columns by position).
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        frame = self._validate_fit_input(X)
        self._fit(frame, self._user_view(X, frame))
        check_unique_names(self._output_names(list(frame.columns)))
        return self

    def transform(self, X):
        """Transform ``X`` as described in the class docstring.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            A DataFrame is read by column name (the columns this transformer reads must
            be present; all others pass through); an array must have the fit-time layout.

        Returns
        -------
        X_out : DataFrame or ndarray
            A DataFrame (same index) for a DataFrame input or with
            ``set_output(transform="pandas")``, otherwise a numeric array.
        """
        check_is_fitted(self)
        frame = self._validate_transform_input(X)
        return self._wrap_output(self._transform(frame), X)

    def fit_transform(self, X, y=None):
        """Fit to ``X`` and transform it.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Training frame, as in :meth:`fit`.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        X_out : DataFrame or ndarray
            Laid out as by :meth:`transform`. The values equal ``fit(X).transform(X)``
            except for UserProfileEncoder, whose training rows get leave-one-out profiles.
        """
        frame = self._validate_fit_input(X)
        out = self._fit_transform(frame, self._user_view(X, frame))
        check_unique_names(self._output_names(list(frame.columns)))
        return self._wrap_output(out, X)

    def get_feature_names_out(self, input_features=None):
        """Output column names for the fit-time input layout.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input names; ``feature_names_in_`` (or ``x0, x1, ...``) when None.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        names_in = list(_check_feature_names_in(self, input_features))
        return np.asarray(self._output_names(names_in), dtype=object)

    # hooks ------------------------------------------------------------------------------

    def _fit_transform(self, frame: pd.DataFrame, X) -> pd.DataFrame:
        self._fit(frame, X)
        return self._transform(frame)

    # helpers ----------------------------------------------------------------------------

    def _check_block_params(self) -> None:
        """Validate ``max_len`` and ``pad_value`` of a transformer that emits a block."""
        check_max_len(self.max_len)
        check_pad_value(self.pad_value)

    def _fit_names(self) -> list[str]:
        return list(_check_feature_names_in(self))

    def _columns(self, refs, param: str, names_in: Sequence[str] | None = None) -> list[str]:
        """Names in ``names_in`` (default: fit-time names) of the columns ``refs`` point to.

        Positions always refer to the fit-time layout, so a name-based transform frame and
        ``get_feature_names_out(input_features)`` agree with fit.
        """
        fit_names = self._fit_names()
        names_in = fit_names if names_in is None else list(names_in)
        return [names_in[column_position(ref, fit_names, param)] for ref in refs]

    def _present_columns(self, frame: pd.DataFrame, refs, param: str) -> list[str]:
        """Fit-time names of ``refs``, checked to be columns of ``frame``."""
        columns = self._columns(refs, param)
        check_columns(frame, columns, what="X")
        return columns

    def _validate_fit_input(self, X) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, skip_check_array=True)
            if X.shape[0] < 1 or X.shape[1] < 1:
                what = "sample(s)" if X.shape[0] < 1 else "feature(s)"
                raise ValueError(
                    f"Found a DataFrame with {min(X.shape)} {what} (shape={X.shape}) while a "
                    f"minimum of 1 is required."
                )
            if hasattr(self, "feature_names_in_"):
                return X
            return X.set_axis(self._fit_names(), axis=1)
        X = validate_data(self, X, dtype="numeric", ensure_all_finite=False)
        return pd.DataFrame(X, columns=self._fit_names(), copy=False)

    def _validate_transform_input(self, X) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame) and hasattr(self, "feature_names_in_"):
            # By name: the needed columns must be there, every other column passes through.
            return X
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, skip_check_array=True, reset=False)
            return X.set_axis(self._fit_names(), axis=1)
        X = validate_data(self, X, dtype="numeric", ensure_all_finite=False, reset=False)
        return pd.DataFrame(X, columns=self._fit_names(), copy=False)

    @staticmethod
    def _user_view(X, frame: pd.DataFrame):
        return X if isinstance(X, pd.DataFrame) else frame.to_numpy()

    def _wrap_output(self, out: pd.DataFrame, X):
        if not isinstance(X, pd.DataFrame):
            out = out.to_numpy()
        adapter = _get_container_adapter("transform", self)
        if adapter is None:
            return out
        if isinstance(out, pd.DataFrame):
            return adapter.create_container(out, X, columns=list(out.columns))
        return adapter.create_container(out, X, columns=self.get_feature_names_out())

    def _replace_columns(self, frame: pd.DataFrame, blocks: dict) -> pd.DataFrame:
        """``frame`` with each column named in ``blocks`` replaced in place by its block."""
        pieces, start = [], 0
        for position, name in enumerate(frame.columns):
            if name in blocks:
                pieces.append(frame.iloc[:, start:position])
                names = block_names(name, blocks[name].shape[1])
                pieces.append(pd.DataFrame(blocks[name], columns=names, index=frame.index))
                start = position + 1
        pieces.append(frame.iloc[:, start:])
        out = pd.concat(pieces, axis=1)
        check_unique_names(out.columns)
        return out

    @staticmethod
    def _append_columns(frame: pd.DataFrame, values: np.ndarray, names: list[str]) -> pd.DataFrame:
        out = pd.concat([frame, pd.DataFrame(values, columns=names, index=frame.index)], axis=1)
        check_unique_names(out.columns)
        return out

    @staticmethod
    def _replaced_names(names_in: Sequence[str], targets: Sequence[str], max_len: int) -> list[str]:
        out = []
        for name in names_in:
            out.extend(block_names(name, max_len) if name in targets else [name])
        return out
