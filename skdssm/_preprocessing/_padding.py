"""Padded blocks for multi-valued features (MultiHotPadder) and sequences (SequenceTruncator)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_array, check_is_fitted

from skdssm._preprocessing._base import (
    FrameTransformer,
    as_column_refs,
    block_dtype,
    block_names,
    check_not_padding,
    check_option,
    explode_cells,
    pad_ragged,
)
from skdssm._utils import check_columns


class MultiHotPadder(FrameTransformer):
    """Encode multi-valued columns (genres, tags) as padded blocks of integer codes.

    Each listed column holds lists (list, tuple or array cells), ``sep``-joined strings
    (``"Action|Comedy"``) or scalars (one value). It is replaced, at its own position, by
    ``max_len`` integer columns ``<name>[0] .. <name>[max_len - 1]``: the codes of the
    cell's values in their original order, then padding. Other columns pass through
    unchanged and in order. skdssm's estimators read such a block as one multi-valued
    feature named ``<name>`` and mask the padding 0.

    Codes: the vocabulary of each column is learned in :meth:`fit` (sorted unique values);
    a known value gets ``1 + its index in vocabularies_[name]`` (1..V), a value unseen at
    fit the out-of-vocabulary code ``V + 1``, so no real value is ever coded 0.

    Parameters
    ----------
    columns : list of str or int, str, int or None, default=None
        Columns to encode, by name or by position in the fit-time layout. None encodes
        every column of X (a numeric array is then read as one single-value list per cell).
    max_len : int, default=6
        Width of each block. Longer lists are cut according to ``truncate``.
    pad_value : int, default=0
        Value of the padding positions. skdssm's estimators mask 0, so keep 0 for them;
        another value is for other consumers and must not be a code (1..V+1).
    sep : str or None, default="|"
        Separator of string cells; the empty string gives an empty list and empty tokens
        are dropped. None takes a string cell as one value.
    truncate : {"tail", "head"}, default="tail"
        Which end of a list longer than ``max_len`` is dropped: ``"tail"`` keeps the first
        ``max_len`` values, ``"head"`` keeps the last ``max_len``.

    Attributes
    ----------
    vocabularies_ : dict of str -> ndarray
        Per encoded column, its sorted values; code ``i + 1`` stands for
        ``vocabularies_[name][i]``. Keys are column names (``x0, x1, ...`` for arrays).
    n_features_in_ : int
        Number of columns seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names seen in :meth:`fit`, when X had string column names.

    See Also
    --------
    SequenceTruncator : ordered behaviour sequences with raw ids and recency-aware cutting.

    Notes
    -----
    A DataFrame in gives a DataFrame out (same index), a numeric array gives an integer
    or float array; ``set_output(transform="pandas")`` always gives a DataFrame. At
    transform, a DataFrame is read by column name: only the encoded columns must be
    present and every other column passes through. Missing values (NaN/None cells or
    elements) raise a ValueError naming the column.

    Examples
    --------
    >>> import pandas as pd
    >>> from skdssm.preprocessing import MultiHotPadder
    >>> X = pd.DataFrame({"item_id": [1, 2, 3], "genres": ["Action|Comedy", "Drama", ""]})
    >>> padder = MultiHotPadder(columns=["genres"], max_len=3).fit(X)
    >>> padder.vocabularies_["genres"].tolist()
    ['Action', 'Comedy', 'Drama']
    >>> padder.transform(X)
       item_id  genres[0]  genres[1]  genres[2]
    0        1          1          2          0
    1        2          3          0          0
    2        3          0          0          0
    >>> padder.transform(pd.DataFrame({"item_id": [4], "genres": [["Drama", "Horror"]]}))
       item_id  genres[0]  genres[1]  genres[2]
    0        4          3          4          0
    >>> padder.inverse_transform(padder.transform(X))["genres"].tolist()
    [['Action', 'Comedy'], ['Drama'], []]
    """

    def __init__(self, columns=None, max_len=6, pad_value=0, sep="|", truncate="tail"):
        self.columns = columns
        self.max_len = max_len
        self.pad_value = pad_value
        self.sep = sep
        self.truncate = truncate

    def _fit(self, frame: pd.DataFrame, X) -> None:
        self._check_block_params()
        check_option(self.truncate, "truncate", ("tail", "head"))
        self.vocabularies_ = {}
        for name in self._columns(as_column_refs(self.columns, frame.shape[1]), "columns"):
            values, _ = explode_cells(frame[name], name, self.sep)
            try:
                vocabulary = np.sort(pd.unique(values))
            except TypeError as exc:
                raise TypeError(
                    f"Column {name!r} of X mixes values that cannot be sorted into one "
                    f"vocabulary ({exc}); convert them to one type, e.g. str."
                ) from exc
            if 1 <= self.pad_value <= len(vocabulary) + 1:
                raise ValueError(
                    f"pad_value={self.pad_value} collides with the codes "
                    f"1..{len(vocabulary) + 1} of column {name!r}; use 0 (what skdssm's "
                    f"estimators mask) or a negative value."
                )
            self.vocabularies_[name] = vocabulary

    def _transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        check_columns(frame, list(self.vocabularies_), what="X")
        keep = "first" if self.truncate == "tail" else "last"
        blocks = {}
        for name, vocabulary in self.vocabularies_.items():
            values, rows = explode_cells(frame[name], name, self.sep)
            codes = pd.Index(vocabulary).get_indexer(values) + 1
            codes[codes == 0] = len(vocabulary) + 1
            blocks[name] = pad_ragged(
                codes, rows, len(frame), self.max_len,
                keep=keep, padding="post", pad_value=self.pad_value, dtype=np.int64,
            )
        return self._replace_columns(frame, blocks)

    def _output_names(self, names_in) -> list[str]:
        refs = as_column_refs(self.columns, self.n_features_in_)
        targets = self._columns(refs, "columns", names_in)
        return self._replaced_names(names_in, targets, self.max_len)

    def inverse_transform(self, X):
        """Turn code blocks back into list columns.

        Codes decode to their vocabulary values, the out-of-vocabulary code ``V + 1`` to
        None, padding to nothing. Each block ``<name>[0..max_len-1]`` is replaced, at its
        position, by one column ``<name>`` of lists; other columns pass through.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features_out)
            Output of :meth:`transform`. A DataFrame is read by column name, an array in
            the layout of :meth:`get_feature_names_out`.

        Returns
        -------
        X_original : DataFrame or ndarray of objects
            A DataFrame for a DataFrame input, otherwise an object array.
        """
        check_is_fitted(self)
        if isinstance(X, pd.DataFrame):
            frame = X
        else:
            names = self.get_feature_names_out()
            X = check_array(X, dtype=None, ensure_all_finite=False)
            if X.shape[1] != len(names):
                raise ValueError(
                    f"X has {X.shape[1]} columns, but the output of this MultiHotPadder has "
                    f"{len(names)}: {list(names)}."
                )
            frame = pd.DataFrame(X, columns=names)
        decoded = {name: self._decode(frame, name) for name in self.vocabularies_}
        first = {f"{name}[0]": name for name in decoded}
        dropped = {column for name in decoded for column in block_names(name, self.max_len)}
        pieces, start = [], 0
        for position, column in enumerate(frame.columns):
            if column in dropped:
                pieces.append(frame.iloc[:, start:position])
                start = position + 1
                if column in first:
                    pieces.append(decoded[first[column]].to_frame())
        pieces.append(frame.iloc[:, start:])
        out = pd.concat(pieces, axis=1)
        return out if isinstance(X, pd.DataFrame) else out.to_numpy()

    def _decode(self, frame: pd.DataFrame, name: str) -> pd.Series:
        columns = block_names(name, self.max_len)
        check_columns(frame, columns, what="X")
        codes = frame[columns].to_numpy()
        vocabulary = self.vocabularies_[name]
        is_value = codes != self.pad_value
        oov = len(vocabulary) + 1
        if not np.all((codes[is_value] >= 1) & (codes[is_value] <= oov)):
            raise ValueError(
                f"The block of column {name!r} holds values that are neither pad_value="
                f"{self.pad_value} nor codes 1..{oov}; was it produced by this MultiHotPadder?"
            )
        lookup = np.empty(oov, dtype=object)
        lookup[: oov - 1] = vocabulary.tolist()
        values = lookup[codes[is_value].astype(np.intp) - 1]
        splits = np.cumsum(is_value.sum(axis=1))[:-1]
        lists = [part.tolist() for part in np.split(values, splits)]
        return pd.Series(lists, index=frame.index, name=name, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []
        return tags


class SequenceTruncator(FrameTransformer):
    """Cut behaviour sequences to the most recent ``max_len`` items and pad them to a block.

    Each listed column holds sequences of item ids ordered oldest -> newest (list, tuple
    or array cells; a scalar is a one-item sequence). It is replaced, at its position, by
    ``max_len`` columns ``<name>[0] .. <name>[max_len - 1]`` of the raw item ids; other
    columns pass through unchanged and in order. With the defaults the padding comes
    first and the most recent item is always in the last column (SASRec style), which is
    the layout skdssm's sequence encoders expect.

    Item ids pass through unchanged (their dtype is kept), so an id equal to
    ``pad_value`` (0 by default) would be read as padding: :meth:`fit` and
    :meth:`transform` raise a ValueError when they see one. Remap the ids to start at 1
    or choose another ``pad_value`` (skdssm's estimators mask 0 only).

    Parameters
    ----------
    columns : list of str or int, str, int or None, default=None
        Sequence columns, by name or by position in the fit-time layout; None means every
        column of X.
    max_len : int, default=50
        Width of each block.
    keep : {"last", "first"}, default="last"
        ``"last"`` keeps the ``max_len`` most recent items, ``"first"`` the oldest ones.
    padding : {"pre", "post"}, default="pre"
        ``"pre"`` puts the padding before the items (most recent item last), ``"post"``
        after them.
    pad_value : int, default=0
        Value of the padding positions.

    Attributes
    ----------
    n_features_in_ : int
        Number of columns seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names seen in :meth:`fit`, when X had string column names.

    See Also
    --------
    HistoryBuilder : builds such sequences from the interaction log without leakage.

    Notes
    -----
    Nothing is learned in :meth:`fit` apart from the input layout; it validates the
    columns. Output containers follow :class:`MultiHotPadder`.

    Examples
    --------
    >>> import pandas as pd
    >>> from skdssm.preprocessing import SequenceTruncator
    >>> X = pd.DataFrame({"user_id": [1, 2], "clicks": [[5, 7, 9, 11], [3]]})
    >>> SequenceTruncator(columns=["clicks"], max_len=3).fit_transform(X)
       user_id  clicks[0]  clicks[1]  clicks[2]
    0        1          7          9         11
    1        2          0          0          3
    """

    def __init__(self, columns=None, max_len=50, keep="last", padding="pre", pad_value=0):
        self.columns = columns
        self.max_len = max_len
        self.keep = keep
        self.padding = padding
        self.pad_value = pad_value

    def _fit(self, frame: pd.DataFrame, X) -> None:
        self._check_block_params()
        check_option(self.keep, "keep", ("last", "first"))
        check_option(self.padding, "padding", ("pre", "post"))
        for name in self._sequence_columns():
            values, _ = explode_cells(frame[name], name)
            check_not_padding(values, self.pad_value, name)

    def _sequence_columns(self) -> list[str]:
        return self._columns(as_column_refs(self.columns, self.n_features_in_), "columns")

    def _transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        columns = self._sequence_columns()
        check_columns(frame, columns, what="X")
        blocks = {}
        for name in columns:
            values, rows = explode_cells(frame[name], name)
            check_not_padding(values, self.pad_value, name)
            blocks[name] = pad_ragged(
                values, rows, len(frame), self.max_len,
                keep=self.keep, padding=self.padding, pad_value=self.pad_value,
                dtype=block_dtype(values.dtype, self.pad_value),
            )
        return self._replace_columns(frame, blocks)

    def _output_names(self, names_in) -> list[str]:
        refs = as_column_refs(self.columns, self.n_features_in_)
        targets = self._columns(refs, "columns", names_in)
        return self._replaced_names(names_in, targets, self.max_len)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
