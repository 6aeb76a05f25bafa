"""DataFrame -> named arrays for the towers: column roles, kinds, vocabularies, OOV and padding.

Rows are addressed by position only (``iloc``, numpy arrays), never by index label, so frames
with repeated or unsortable index labels encode like any other; error messages give both the
position and the label of the first offending row.

Everything here is learned in :meth:`FeatureEncoder.fit` (called from the estimators' ``fit``), so
vocabularies never leak across cross-validation folds.

Codes of categorical, multi-valued and sequence features share one layout: ``0`` is padding,
``1`` is the out-of-vocabulary (OOV) slot for values unseen in fit, known values are ``2..V+1``.

A *padded block* is a group of columns named ``<name>[0]``, ..., ``<name>[L-1]`` (what
:class:`~skdssm.preprocessing.MultiHotPadder`, :class:`~skdssm.preprocessing.SequenceTruncator` and
:class:`~skdssm.preprocessing.HistoryBuilder` emit); it is one multi-valued feature whose ``0`` (or
missing) entries are padding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._utils import check_columns

PAD, OOV = 0, 1
N_RESERVED = 2

# Batch keys beside the encoded features ("<side>:<feature>", "<side>:dense"). Inputs that the
# retriever generates from the users' histories:
HISTORY = "history"  # behaviour sequence, a padded block of item codes
HISTORY_BAG = "history_bag"  # bag of items, flat item codes ...
OFFSETS = ":offsets"  # ... with the start of each row's bag under "<key>:offsets"
# ... and, in training batches on the CPU, the transpose of the bags' mean-pooling matrix (for
# each embedding row, the batch rows that pool it and their weights) under "<key>" + each suffix:
POOLING_TRANSPOSE = (":pooled_rows", ":pooled_offsets", ":pooled_weights")
PROFILE = "profile"  # mean content features of the user's items (float)
# Per-row bookkeeping read by the batch transforms and the loss, never by a tower:
USER_POSITION = "meta:user"  # position in the user vocabulary (-1: unknown)
ITEM_POSITION = "meta:item"  # position in the catalogue (-1: none)
HISTORY_END = "meta:history_end"  # one past the row's last visible history event
LEAVE_ONE_OUT = "meta:leave_one_out"  # the row's own item leaves its profile
# Added by the negative-sampling transform (training and validation batches):
CANDIDATES = "candidates"  # item-tower inputs of the sampled items (a nested dict)
CANDIDATE_POSITION = "meta:candidate_item"  # their catalogue positions, (S,)
CANDIDATE_LOG_Q = "meta:candidate_log_q"  # log q of every candidate column, (B + S,)
KNOWN_POSITIVE = "meta:known_positive"  # (B, B + S): candidate is a known positive of the row
USER_LOG_Q = "meta:user_log_q"  # log q of each row's user (symmetric softmax), (B,)
ITEM_LOG_Q = "meta:item_log_q"  # log of the row's item's share of the training rows, (B,)
BLOCK_PATTERN = re.compile(r"^(?P<base>.+)\[(?P<pos>\d+)\]$")
KINDS = ("categorical", "dense", "multi", "sequence")
LIST_TYPES = (list, tuple, np.ndarray)
# Towers compute in float32: a finite float64 beyond this becomes inf there, and NaN downstream.
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class Feature:
    """One input of a tower: its source columns, kind, side and learned vocabulary."""

    name: str
    kind: str
    side: str
    columns: tuple
    is_block: bool = False
    vocabulary: pd.Index | None = None
    max_len: int = 0
    embedded: bool = True

    @property
    def cardinality(self) -> int:
        """Rows of the embedding table: padding, OOV and the known values."""
        return len(self.vocabulary) + N_RESERVED


@dataclass
class TowerSchema:
    """What a tower needs to build its layers; plain data, picklable, no arrays."""

    categorical: dict = field(default_factory=dict)  # name -> cardinality
    multi: dict = field(default_factory=dict)  # name -> cardinality
    sequence: dict = field(default_factory=dict)  # name -> (cardinality, max_len)
    n_dense: int = 0
    n_profile: int = 0  # generated profile features, fed to the dense branch after n_dense
    ids: tuple = ()  # names of the id features (subject to id dropout)


def column_groups(columns) -> dict:
    """Map feature names to their columns, grouping ``name[i]`` blocks (checked to be 0..L-1)."""
    groups: dict = {}
    blocks: dict = {}
    for col in columns:
        match = BLOCK_PATTERN.match(str(col))
        if match:
            blocks.setdefault(match["base"], {})[int(match["pos"])] = col
        else:
            groups[col] = (col,)
    for base, by_pos in blocks.items():
        if base in groups:
            raise ValueError(
                f"Column {base!r} and the padded block {base!r}[0..] both exist in X; "
                "rename one of them."
            )
        if sorted(by_pos) != list(range(len(by_pos))):
            raise ValueError(
                f"The padded block {base!r} must have columns {base}[0] .. {base}[L-1] without "
                f"gaps; found positions {sorted(by_pos)}."
            )
        groups[base] = tuple(by_pos[i] for i in range(len(by_pos)))
    return groups


def _is_list_cell(value) -> bool:
    return isinstance(value, LIST_TYPES)


def _first_valid(series: pd.Series):
    valid = series.notna().to_numpy()
    return series.iloc[int(valid.argmax())] if valid.any() else None


def _row(series: pd.Series, position: int) -> str:
    return f"position {position} (index label {series.index[position]!r})"


def _holds_lists(series: pd.Series) -> bool:
    """Whether any cell is a list: such a column is multi-valued, whatever its first cell."""
    if not pd.api.types.is_object_dtype(series.dtype):
        return False
    if _is_list_cell(_first_valid(series)):
        return True
    # Columns of plain scalars are recognised without visiting each cell in Python.
    return pd.api.types.infer_dtype(series, skipna=True).startswith("mixed") and bool(
        series.map(_is_list_cell).any()
    )


def _check_list_cells(series: pd.Series) -> None:
    """Raise a ValueError naming the column and the first cell that is not a list."""
    # ``type`` is a C call (several times faster than isinstance through map); the rare
    # list subclasses it misses are rechecked one by one.
    is_list = series.map(type).isin(LIST_TYPES).to_numpy() | series.isna().to_numpy()
    others = np.flatnonzero(~is_list)
    is_list[others] = [_is_list_cell(series.iloc[i]) for i in others]
    bad = np.flatnonzero(~is_list)
    if bad.size:
        value = series.iloc[bad[0]]
        raise ValueError(
            f"Column {series.name!r} holds lists, but {bad.size} of its cells are not lists; the "
            f"first, at {_row(series, bad[0])}, is the {type(value).__name__} {value!r}. Every "
            "cell of a multi-valued column must be a list, tuple or array: split joined "
            f"strings first (e.g. X[{series.name!r}].str.split('|')), or pad the column with "
            f"skdssm.preprocessing.MultiHotPadder(columns=[{series.name!r}]), which reads both."
        )


def infer_kind(frame: pd.DataFrame, name: str, columns: tuple, is_block: bool) -> str:
    """Kind of a feature from its dtype: codes -> categorical, floats -> dense, lists -> multi."""
    if is_block:
        return "multi"
    series = frame[columns[0]]
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if pd.api.types.is_integer_dtype(dtype):
        return "categorical"
    if pd.api.types.is_float_dtype(dtype):
        return "dense"
    if _holds_lists(series):
        return "multi"
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return "categorical"
    raise ValueError(
        f"Column {name!r} has dtype {dtype}, which skdssm cannot encode; expected strings, "
        "categoricals or integer codes (embedded), floats (dense) or list cells (multi-valued). "
        "Convert it (e.g. a datetime to a number) or drop it from X."
    )


def check_no_missing(frame: pd.DataFrame, feature: Feature) -> None:
    """Missing, infinite and beyond-float32 values are an error for every kind except padding
    inside blocks."""
    if feature.is_block:
        return
    series = frame[feature.columns[0]]
    missing = np.flatnonzero(series.isna().to_numpy())
    if missing.size:
        raise ValueError(
            f"Column {feature.name!r} contains {missing.size} missing value(s) (NaN or None; "
            f"first at {_row(series, missing[0])}); fill or drop them before calling the estimator."
        )
    if pd.api.types.is_float_dtype(series.dtype):
        # An infinite dense value turns every logit into NaN without any error from torch.
        values = series.to_numpy(dtype=np.float64)
        infinite = np.flatnonzero(np.isinf(values))
        if infinite.size:
            raise ValueError(
                f"Column {feature.name!r} contains {infinite.size} infinite value(s) (first at "
                f"{_row(series, infinite[0])}); replace or drop them before calling the estimator."
            )
        too_large = np.flatnonzero(np.abs(values) > FLOAT32_MAX)
        if too_large.size:
            raise ValueError(
                f"Column {feature.name!r} contains {too_large.size} value(s) beyond the float32 "
                f"range (|x| <= {FLOAT32_MAX:.4g}), first {values[too_large[0]]:.4g} at "
                f"{_row(series, too_large[0])}; the towers compute in float32, where these are "
                "infinite. Rescale the column (e.g. np.log1p or StandardScaler) or drop those rows."
            )


def _row_hash(frame: pd.DataFrame, columns: tuple) -> np.ndarray:
    """A uint64 key per row that is equal for equal cells; list cells hashed element-wise."""
    sub = frame[list(columns)]
    if len(columns) == 1 and _holds_lists(sub.iloc[:, 0]):
        values, rows, positions, lengths = explode_lists(sub.iloc[:, 0])
        hashed = pd.util.hash_array(values.astype(str).astype(object))
        mixed = hashed * (positions.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
        out = np.zeros(len(sub), dtype=np.uint64)
        np.add.at(out, rows, mixed)
        return out ^ lengths.astype(np.uint64)
    return pd.util.hash_pandas_object(sub.astype(object), index=False).to_numpy()


def constant_within(frame: pd.DataFrame, columns: tuple, group_codes: np.ndarray) -> bool:
    """True when every group (user or item) has a single value of ``columns``."""
    keys = pd.Series(_row_hash(frame, columns))
    return bool((keys.groupby(group_codes).nunique() <= 1).all())


def explode_lists(series: pd.Series):
    """Flatten list cells: (values, row of each value, position within its row, lengths).

    Raises a ValueError naming the column and the first cell that is not a list.
    """
    _check_list_cells(series)
    lengths = series.str.len().fillna(0).to_numpy(dtype=np.int64)
    exploded = series.reset_index(drop=True).explode()
    keep = np.repeat(lengths > 0, np.maximum(lengths, 1))
    values = exploded.to_numpy(dtype=object)[keep]
    rows = np.repeat(np.arange(len(series)), lengths)
    starts = np.cumsum(lengths) - lengths
    positions = np.arange(len(values)) - np.repeat(starts, lengths)
    return values, rows, positions, lengths


def learn_vocabulary(values: np.ndarray) -> pd.Index:
    """Distinct non-missing values, sorted when the values are comparable."""
    uniques = pd.unique(pd.Series(values, dtype=object).dropna())
    try:
        uniques = np.sort(uniques)
    except TypeError:
        pass
    return pd.Index(uniques, dtype=object)


def encode_values(vocabulary: pd.Index, values: np.ndarray) -> np.ndarray:
    """Codes for ``values``: known -> 2.., unseen -> OOV."""
    positions = vocabulary.get_indexer(pd.Index(values, dtype=object))
    return np.where(positions >= 0, positions + N_RESERVED, OOV).astype(np.int64)


def _pad_matrix(codes, rows, positions, lengths, n_rows, max_len, keep_last):
    """Scatter per-row codes into an (n_rows, max_len) matrix, truncating long rows.

    ``keep_last`` keeps the most recent ``max_len`` values right-aligned (sequences: the newest item
    always sits in the last column); otherwise the first ``max_len`` values left-aligned.
    """
    out = np.zeros((n_rows, max_len), dtype=np.int64)
    if keep_last:
        column = positions - (lengths[rows] - max_len)
        keep = column >= 0
    else:
        column = positions
        keep = column < max_len
    out[rows[keep], column[keep]] = codes[keep]
    return out


class FeatureEncoder:
    """Learns column roles, kinds and vocabularies from a training frame and encodes frames.

    Parameters mirror the estimators' (``user_col``, ``item_col``, ``user_features``,
    ``item_features``, ``sequence_features``, ``max_sequence_length``). ``embed_user_id`` /
    ``embed_item_id`` set to False keep the id for bookkeeping (codes are still encoded) but leave
    it out of the tower (content-only towers). ``extra_user_features`` are row-level user inputs
    generated by the estimator itself (profiles, histories), given to the user tower without the
    constancy check.
    """

    def __init__(self, user_col, item_col, user_features="auto", item_features="auto",
                 sequence_features=None, max_sequence_length=50, *, embed_user_id=True,
                 embed_item_id=True, extra_user_features=()):
        self.user_col = user_col
        self.item_col = item_col
        self.user_features = user_features
        self.item_features = item_features
        self.sequence_features = sequence_features
        self.max_sequence_length = max_sequence_length
        self.embed_user_id = embed_user_id
        self.embed_item_id = embed_item_id
        self.extra_user_features = extra_user_features

    # ------------------------------------------------------------------ fit
    def fit(self, X: pd.DataFrame) -> FeatureEncoder:
        groups = column_groups(X.columns)
        for col in (self.user_col, self.item_col):
            if col not in groups:
                raise ValueError(
                    f"Column {col!r} is missing from X; X has columns {list(X.columns)}. "
                    "Set user_col / item_col to the id columns of your frame."
                )
        for name, columns in groups.items():
            # Before side assignment: a NaN would otherwise break the constancy test and be
            # reported as a column that belongs to neither tower.
            if len(columns) == 1 and BLOCK_PATTERN.match(str(columns[0])) is None:
                check_no_missing(X, Feature(name, "", "", columns, False))
        sides = self._assign_sides(X, groups)
        self.features_ = []
        for name, side in sides.items():
            columns = groups[name]
            is_block = len(columns) > 1 or BLOCK_PATTERN.match(str(columns[0])) is not None
            if name in (self.user_col, self.item_col):
                kind = "categorical"
            elif name in self._sequence_names():
                kind = "sequence"
            else:
                kind = infer_kind(X, name, columns, is_block)
            embedded = not ((name == self.user_col and not self.embed_user_id)
                            or (name == self.item_col and not self.embed_item_id))
            feature = Feature(name, kind, side, columns, is_block, embedded=embedded)
            check_no_missing(X, feature)
            self.features_.append(feature)
        self._learn_vocabularies(X)
        return self

    def _sequence_names(self) -> list:
        return list(self.sequence_features or [])

    def _explicit(self, value, which: str) -> list | None:
        if isinstance(value, str) and value == "auto":
            return None
        if value is None:
            return []
        if isinstance(value, str):
            raise ValueError(f"{which} must be 'auto' or a list of column names; got {value!r}.")
        return list(value)

    def _assign_sides(self, X: pd.DataFrame, groups: dict) -> dict:
        user_list = self._explicit(self.user_features, "user_features")
        item_list = self._explicit(self.item_features, "item_features")
        sides = {self.user_col: "user", self.item_col: "item"}
        for name in self._sequence_names():
            sides[name] = "user"
        for names, side in ((user_list, "user"), (item_list, "item"),
                            (list(self.extra_user_features), "user")):
            for name in names or []:
                sides[name] = side
        for name in sides:
            if name not in groups:
                raise ValueError(
                    f"Column {name!r} is missing from X; X has columns {list(X.columns)}."
                )
        if user_list is not None and item_list is not None:
            return sides
        user_codes = pd.factorize(X[self.user_col])[0]
        item_codes = pd.factorize(X[self.item_col])[0]
        rows_per_user = len(X) / max(user_codes.max() + 1, 1)
        rows_per_item = len(X) / max(item_codes.max() + 1, 1)
        for name, columns in groups.items():
            if name in sides:
                continue
            in_user = user_list is None and constant_within(X, columns, user_codes)
            in_item = item_list is None and constant_within(X, columns, item_codes)
            if in_user and in_item:
                # Constancy is stronger evidence on the side with more rows per id.
                sides[name] = "user" if rows_per_user > rows_per_item else "item"
            elif in_user or in_item:
                sides[name] = "user" if in_user else "item"
            else:
                raise ValueError(
                    f"Column {name!r} is neither constant within each {self.user_col!r} nor within "
                    f"each {self.item_col!r}, so it cannot be given to a tower automatically. List it "
                    "in user_features=[...] or item_features=[...], in sequence_features if it is "
                    "a behaviour sequence, or drop it from X."
                )
        return sides

    def _learn_vocabularies(self, X: pd.DataFrame) -> None:
        item_vocab = None
        for feature in self.features_:
            if feature.kind == "dense":
                continue
            if feature.kind == "categorical":
                feature.vocabulary = learn_vocabulary(X[feature.columns[0]].to_numpy(dtype=object))
                if feature.name == self.item_col:
                    item_vocab = feature.vocabulary
            elif feature.kind == "multi":
                values, lengths = self._flat_tokens(X, feature)
                feature.vocabulary = learn_vocabulary(values)
                feature.max_len = (len(feature.columns) if feature.is_block
                                   else max(int(lengths.max(initial=0)), 1))
        for feature in self.features_:
            if feature.kind == "sequence":
                feature.vocabulary = item_vocab
                if feature.is_block:
                    feature.max_len = len(feature.columns)
                else:
                    _check_list_cells(X[feature.columns[0]])
                    lengths = X[feature.columns[0]].str.len().to_numpy()
                    feature.max_len = int(min(max(lengths.max(initial=0), 1),
                                              self.max_sequence_length))

    @staticmethod
    def _flat_tokens(X: pd.DataFrame, feature: Feature):
        """Non-padding tokens of a multi-valued feature and the number per row."""
        if feature.is_block:
            block = X[list(feature.columns)].to_numpy(dtype=object)
            valid = ~pd.isna(block) & (block != PAD)
            return block[valid], valid.sum(axis=1)
        values, _, _, lengths = explode_lists(X[feature.columns[0]])
        return values, lengths

    # --------------------------------------------------------------- encode
    def side_features(self, side: str) -> list:
        return [f for f in self.features_ if f.side == side]

    def feature(self, name: str) -> Feature:
        return next(f for f in self.features_ if f.name == name)

    def required_columns(self, side: str) -> list:
        return [c for f in self.side_features(side) for c in f.columns]

    def schema(self, side: str) -> TowerSchema:
        schema = TowerSchema()
        for f in self.side_features(side):
            if not f.embedded:
                continue
            if f.kind == "dense":
                schema.n_dense += 1
            elif f.kind == "categorical":
                schema.categorical[f.name] = f.cardinality
                if f.name in (self.user_col, self.item_col):
                    schema.ids += (f.name,)
            elif f.kind == "multi":
                schema.multi[f.name] = f.cardinality
            else:
                schema.sequence[f.name] = (f.cardinality, f.max_len)
        return schema

    def encode(self, X: pd.DataFrame, side: str) -> dict:
        """Arrays for one tower, keyed ``"<side>:<feature>"`` plus ``"<side>:dense"``."""
        check_columns(X, self.required_columns(side), what="X")
        out = {}
        dense = []
        for feature in self.side_features(side):
            check_no_missing(X, feature)
            key = f"{side}:{feature.name}"
            if feature.kind == "dense":
                dense.append(X[feature.columns[0]].to_numpy(dtype=np.float32))
            elif feature.kind == "categorical":
                out[key] = encode_values(feature.vocabulary, X[feature.columns[0]].to_numpy(dtype=object))
            else:
                out[key] = self._encode_padded(X, feature)
        if dense:
            out[f"{side}:dense"] = np.stack(dense, axis=1)
        return out

    def _encode_padded(self, X: pd.DataFrame, feature: Feature) -> np.ndarray:
        keep_last = feature.kind == "sequence"
        if feature.is_block:
            block = X[list(feature.columns)].to_numpy(dtype=object)
            codes = encode_values(feature.vocabulary, block.ravel()).reshape(block.shape)
            codes[pd.isna(block) | (block == PAD)] = PAD
            return codes
        values, rows, positions, lengths = explode_lists(X[feature.columns[0]])
        codes = encode_values(feature.vocabulary, values)
        return _pad_matrix(codes, rows, positions, lengths, len(X), feature.max_len, keep_last)
