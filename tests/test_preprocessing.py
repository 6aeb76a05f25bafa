from __future__ import annotations

import doctest
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from skdssm._preprocessing import _history, _padding, _profile
from skdssm.preprocessing import (
    HistoryBuilder,
    MultiHotPadder,
    SequenceTruncator,
    UserProfileEncoder,
)

BLOCK = re.compile(r"^(?P<base>.+)\[(?P<pos>\d+)\]$")
FAST = settings(max_examples=60, deadline=None)

# The sklearn checks feed float arrays (some cast to int, so 0 occurs): the sequence
# transformers get pad_value=-1 there, and positions name the roles.
TWO_COLUMN_CHECKS = [
    "check_estimators_overwrite_params",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_n_features_in",
]
LEAVE_ONE_OUT_CHECKS = ["check_transformer_general", "check_transformer_data_not_an_array"]
CHECKED = [
    MultiHotPadder(),
    SequenceTruncator(pad_value=-1),
    HistoryBuilder(user_col=0, item_col=1, time_col=None, pad_value=-1),
    HistoryBuilder(user_col=0, item_col=1, time_col=None, pad_value=-1, leave_one_out=True),
    UserProfileEncoder(item_feature_columns=[1], user_col=0, leave_one_out=False),
]
TIMED_HISTORY = HistoryBuilder(user_col=0, item_col=1, time_col=2, pad_value=-1)
LOO_PROFILE = UserProfileEncoder(item_feature_columns=[1], user_col=0)


def _expected_failures(estimator):
    if estimator is TIMED_HISTORY:
        reason = "feeds 2-column arrays; a timed HistoryBuilder needs user, item and time columns"
        return dict.fromkeys(TWO_COLUMN_CHECKS, reason)
    if estimator is LOO_PROFILE:
        reason = "fit_transform gives leave-one-out profiles by design (like TargetEncoder)"
        return dict.fromkeys(LEAVE_ONE_OUT_CHECKS, reason)
    return {}


@parametrize_with_checks(
    [*CHECKED, TIMED_HISTORY, LOO_PROFILE], expected_failed_checks=_expected_failures
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize(
    "check",
    [
        estimator_checks.check_set_output_transform,
        estimator_checks.check_set_output_transform_pandas,
        estimator_checks.check_global_output_transform_pandas,
        estimator_checks.check_transformer_get_feature_names_out,
        estimator_checks.check_transformer_get_feature_names_out_pandas,
        estimator_checks.check_get_feature_names_out_error,
    ],
)
@pytest.mark.parametrize("estimator", [*CHECKED, TIMED_HISTORY], ids=repr)
def test_sklearn_output_checks(estimator, check):
    check(type(estimator).__name__, estimator)


@pytest.mark.parametrize("module", [_padding, _history, _profile])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------- fixtures


def interactions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 3],
            "item_id": [10, 11, 12, 10, 13, 11],
            "timestamp": [100, 200, 200, 150, 300, 50],
            "rating": [5, 4, 1, 5, 2, 4],
            "genres": ["Action|Comedy", "Drama", "", "Action|Comedy", "Horror", "Drama"],
            "year": [1990.0, 2000.0, 1970.0, 1990.0, 1980.0, 2000.0],
            "lat": [48.1, 48.1, 48.1, 40.7, 40.7, 51.5],
            "lon": [11.6, 11.6, 11.6, -74.0, -74.0, -0.1],
        }
    )


def block_columns(frame: pd.DataFrame, base: str) -> list[str]:
    """The columns the estimators read as the padded feature ``base``."""
    columns = [c for c in frame.columns if (m := BLOCK.match(c)) and m["base"] == base]
    assert [int(BLOCK.match(c)["pos"]) for c in columns] == list(range(len(columns)))
    return columns


def block(frame: pd.DataFrame, base: str) -> np.ndarray:
    return frame[block_columns(frame, base)].to_numpy()


ALL = [
    MultiHotPadder(columns=["genres"]),
    SequenceTruncator(columns=["clicks"]),
    HistoryBuilder(),
    UserProfileEncoder(["year"]),
]


def with_clicks(frame: pd.DataFrame) -> pd.DataFrame:
    clicks = pd.Series([[1, 2], [], [3], [4, 5, 6], [7], [8]], dtype=object)
    return frame.assign(clicks=clicks)


# ----------------------------------------------------------------------------- MultiHotPadder


def test_multihot_codes_in_place_and_names():
    X = interactions()
    padder = MultiHotPadder(columns=["genres"], max_len=3)
    out = padder.fit_transform(X)
    assert padder.vocabularies_["genres"].tolist() == ["Action", "Comedy", "Drama", "Horror"]
    position = list(X.columns).index("genres")
    assert list(out.columns[position : position + 3]) == ["genres[0]", "genres[1]", "genres[2]"]
    assert list(out.columns) == list(padder.get_feature_names_out())
    np.testing.assert_array_equal(
        block(out, "genres"),
        [[1, 2, 0], [3, 0, 0], [0, 0, 0], [1, 2, 0], [4, 0, 0], [3, 0, 0]],
    )
    assert block(out, "genres").dtype == np.int64
    passthrough = out.drop(columns=block_columns(out, "genres"))
    pd.testing.assert_frame_equal(passthrough, X.drop(columns="genres"))


def test_multihot_accepts_lists_tuples_arrays_and_scalars():
    cells = pd.Series([["b", "a"], ("c",), np.array(["a"]), "b|c", [], "a"], dtype=object)
    out = MultiHotPadder(columns=["tags"], max_len=2).fit_transform(pd.DataFrame({"tags": cells}))
    np.testing.assert_array_equal(out.to_numpy(), [[2, 1], [3, 0], [1, 0], [2, 3], [0, 0], [1, 0]])


def test_multihot_unseen_values_get_oov_and_decode_to_none():
    padder = MultiHotPadder(columns=["genres"], max_len=3).fit(interactions())
    new = pd.DataFrame({"genres": [["Drama", "Western", "Action"], []]})
    out = padder.transform(new)
    np.testing.assert_array_equal(out.to_numpy(), [[3, 5, 1], [0, 0, 0]])
    assert padder.inverse_transform(out)["genres"].tolist() == [["Drama", None, "Action"], []]


@pytest.mark.parametrize("truncate, expected", [("tail", [1, 2]), ("head", [3, 4])])
def test_multihot_truncate(truncate, expected):
    X = pd.DataFrame({"tags": [["a", "b", "c", "d"]]})
    out = MultiHotPadder(columns=["tags"], max_len=2, truncate=truncate).fit_transform(X)
    assert out.to_numpy().tolist() == [expected]


tokens = st.sampled_from(list("abcdefgh"))
token_lists = st.lists(st.lists(tokens, max_size=9), min_size=1, max_size=12)


@FAST
@given(
    fit_lists=token_lists,
    new_lists=st.lists(
        st.lists(st.sampled_from(list("abcdefghxyz")), max_size=9), min_size=1, max_size=12
    ),
    max_len=st.integers(1, 7),
    truncate=st.sampled_from(["tail", "head"]),
    joined=st.booleans(),
)
def test_multihot_properties(fit_lists, new_lists, max_len, truncate, joined):
    def frame(lists):
        cells = ["|".join(cell) for cell in lists] if joined else pd.Series(lists, dtype=object)
        return pd.DataFrame({"tags": cells})

    padder = MultiHotPadder(columns=["tags"], max_len=max_len, truncate=truncate)
    padder.fit(frame(fit_lists))
    vocabulary = padder.vocabularies_["tags"].tolist()
    assert vocabulary == sorted({t for cell in fit_lists for t in cell})
    for lists in (fit_lists, new_lists):
        codes = padder.transform(frame(lists)).to_numpy()
        assert codes.shape == (len(lists), max_len)
        assert codes.min() >= 0 and codes.max() <= len(vocabulary) + 1
        kept = [cell[:max_len] if truncate == "tail" else cell[-max_len:] for cell in lists]
        assert ((codes != 0).sum(axis=1) == [len(cell) for cell in kept]).all()
        names = padder.get_feature_names_out()
        decoded = padder.inverse_transform(pd.DataFrame(codes, columns=names))
        expected = [[t if t in vocabulary else None for t in cell] for cell in kept]
        assert decoded["tags"].tolist() == expected


def test_multihot_array_in_array_out_and_set_output():
    X = np.array([[3.0, 1.0], [1.0, 2.0], [3.0, 5.0]])
    padder = MultiHotPadder(max_len=2)
    out = padder.fit_transform(X)
    assert isinstance(out, np.ndarray) and np.issubdtype(out.dtype, np.integer)
    np.testing.assert_array_equal(out, [[2, 0, 1, 0], [1, 0, 2, 0], [2, 0, 3, 0]])
    frame = padder.set_output(transform="pandas").transform(X)
    assert list(frame.columns) == ["x0[0]", "x0[1]", "x1[0]", "x1[1]"]
    np.testing.assert_array_equal(frame.to_numpy(), out)
    assert padder.vocabularies_["x0"].tolist() == [1.0, 3.0]


def test_multihot_pad_value_must_not_be_a_code():
    with pytest.raises(ValueError, match="pad_value=2 collides"):
        MultiHotPadder(columns=["genres"], pad_value=2).fit(interactions())
    out = MultiHotPadder(columns=["genres"], max_len=3, pad_value=-1).fit_transform(interactions())
    assert block(out, "genres")[2].tolist() == [-1, -1, -1]


# ----------------------------------------------------------------------------- SequenceTruncator


def test_sequence_truncator_layouts():
    X = pd.DataFrame({"user_id": [1, 2], "clicks": [[5, 7, 9, 11], [3]]})
    layouts = {
        ("last", "pre"): [[7, 9, 11], [0, 0, 3]],
        ("last", "post"): [[7, 9, 11], [3, 0, 0]],
        ("first", "pre"): [[5, 7, 9], [0, 0, 3]],
        ("first", "post"): [[5, 7, 9], [3, 0, 0]],
    }
    for (keep, padding), expected in layouts.items():
        truncator = SequenceTruncator(columns=["clicks"], max_len=3, keep=keep, padding=padding)
        out = truncator.fit_transform(X)
        assert block(out, "clicks").tolist() == expected
        assert list(out.columns) == ["user_id", "clicks[0]", "clicks[1]", "clicks[2]"]
        assert block(out, "clicks").dtype == np.int64


@FAST
@given(
    sequences=st.lists(st.lists(st.integers(1, 10**6), max_size=15), min_size=1, max_size=10),
    max_len=st.integers(1, 8),
)
def test_sequence_truncator_keeps_most_recent_items_in_order(sequences, max_len):
    X = pd.DataFrame({"seq": pd.Series(sequences, dtype=object)})
    out = SequenceTruncator(max_len=max_len).fit_transform(X).to_numpy()
    assert out.shape == (len(sequences), max_len)
    for row, sequence in zip(out, sequences):
        recent = sequence[-max_len:]
        assert row.tolist() == [0] * (max_len - len(recent)) + recent


def test_sequence_truncator_rejects_padding_ids():
    X = pd.DataFrame({"clicks": [[1, 0, 2]]})
    with pytest.raises(ValueError, match=r"'clicks'.*item id 0.*pad_value=0.*Remap"):
        SequenceTruncator().fit(X)
    truncator = SequenceTruncator().fit(pd.DataFrame({"clicks": [[1, 2]]}))
    with pytest.raises(ValueError, match="'clicks'"):
        truncator.transform(X)
    out = SequenceTruncator(max_len=4, pad_value=-1).fit_transform(X)
    assert out.to_numpy().tolist() == [[-1, 1, 0, 2]]


# ----------------------------------------------------------------------------- HistoryBuilder


def test_history_strictly_before_timestamp_with_ties_excluded():
    out = HistoryBuilder(max_len=3).fit_transform(interactions())
    assert block(out, "history").tolist() == [
        [0, 0, 0],  # user 1 at t=100: nothing earlier
        [0, 0, 10],  # t=200: item 12 shares the timestamp, excluded
        [0, 0, 10],
        [0, 0, 0],
        [0, 0, 10],
        [0, 0, 0],
    ]
    assert list(out.columns[:8]) == list(interactions().columns)


def test_history_users_only_frame_unknown_users_and_nan_time():
    builder = HistoryBuilder(max_len=4).fit(interactions())
    users = pd.DataFrame({"user_id": [1, 2, 99]}, index=[7, 8, 9])
    out = builder.transform(users)
    assert list(out.columns) == ["user_id", "history[0]", "history[1]", "history[2]", "history[3]"]
    assert out.index.tolist() == [7, 8, 9]
    assert block(out, "history").tolist() == [[0, 10, 11, 12], [0, 0, 10, 13], [0, 0, 0, 0]]
    timed = pd.DataFrame({"user_id": [1, 1], "timestamp": [np.nan, 150.0]})
    assert block(builder.transform(timed), "history").tolist() == [[0, 10, 11, 12], [0, 0, 0, 10]]
    pandas_out = clone(builder).set_output(transform="pandas").fit(interactions()).transform(users)
    pd.testing.assert_frame_equal(pandas_out, out)


def test_history_positive_column_and_callable():
    X = interactions()
    by_callable = HistoryBuilder(max_len=2, positive=lambda X: X["rating"] >= 4).fit(X)
    by_column = HistoryBuilder(max_len=2, positive="liked").fit(X.assign(liked=X["rating"] >= 4))
    users = pd.DataFrame({"user_id": [1, 2]})
    for builder in (by_callable, by_column):
        assert block(builder.transform(users), "history").tolist() == [[10, 11], [0, 10]]
    with pytest.raises(ValueError, match="boolean mask"):
        HistoryBuilder(positive=lambda X: X["rating"]).fit(X)


def test_history_datetime_timestamps():
    X = interactions().assign(timestamp=pd.to_datetime(interactions()["timestamp"], unit="D"))
    out = HistoryBuilder(max_len=3).fit_transform(X)
    numeric = HistoryBuilder(max_len=3).fit_transform(interactions())
    np.testing.assert_array_equal(block(out, "history"), block(numeric, "history"))
    utc = X.assign(timestamp=X["timestamp"].dt.tz_localize("UTC"))
    from_utc = HistoryBuilder(max_len=3).fit(X).transform(utc)
    np.testing.assert_array_equal(block(from_utc, "history"), block(out, "history"))
    with pytest.raises(TypeError, match="'timestamp'.*same kind"):
        HistoryBuilder().fit(X).transform(interactions())
    with pytest.raises(TypeError, match="'timestamp'.*same kind"):
        HistoryBuilder().fit(interactions()).transform(X)


def test_history_without_time_column_is_whole_history():
    builder = HistoryBuilder(max_len=3, time_col=None)
    out = builder.fit_transform(interactions())
    assert block(out, "history")[0].tolist() == [10, 11, 12]
    assert builder.event_times_ is None


def test_history_rejects_padding_item_ids():
    X = interactions().assign(item_id=[0, 11, 12, 10, 13, 11])
    with pytest.raises(ValueError, match=r"'item_id'.*pad_value=0"):
        HistoryBuilder().fit(X)


events = st.lists(
    st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(0, 8), st.booleans()),
    min_size=1,
    max_size=30,
)
queries = st.lists(
    st.tuples(st.integers(1, 5), st.one_of(st.integers(0, 10).map(float), st.just(np.nan))),
    min_size=1,
    max_size=15,
)


def reference_history(stored: pd.DataFrame, query: pd.DataFrame, max_len: int) -> list:
    rows = []
    for user, time in zip(query["user_id"], query["timestamp"]):
        seen = stored[(stored["user_id"] == user) & stored["positive"]]
        if not np.isnan(time):
            seen = seen[seen["timestamp"] < time]
        items = seen.sort_values("timestamp", kind="stable")["item_id"].tolist()[-max_len:]
        rows.append([0] * (max_len - len(items)) + items)
    return rows


def as_frame(events_) -> pd.DataFrame:
    return pd.DataFrame(events_, columns=["user_id", "item_id", "timestamp", "positive"])


@FAST
@given(events_=events, queries_=queries, max_len=st.integers(1, 6))
def test_history_matches_brute_force_reference(events_, queries_, max_len):
    stored = as_frame(events_)
    builder = HistoryBuilder(max_len=max_len, positive="positive").fit(stored)
    query = pd.DataFrame(queries_, columns=["user_id", "timestamp"])
    expected = reference_history(stored, query, max_len)
    assert block(builder.transform(query), "history").tolist() == expected
    own = stored.assign(timestamp=stored["timestamp"].astype(float))
    expected = reference_history(stored, own, max_len)
    assert block(builder.transform(stored), "history").tolist() == expected


@FAST
@given(events_=events, max_len=st.integers(1, 6))
def test_history_never_leaks_current_or_future_interactions(events_, max_len):
    stored = as_frame(events_)
    stored["item_id"] = np.arange(1, len(stored) + 1)  # unique items: each has one timestamp
    time_of = dict(zip(stored["item_id"], stored["timestamp"]))
    history = block(HistoryBuilder(max_len=max_len).fit_transform(stored), "history")
    assert history.shape == (len(stored), max_len)
    for row_time, items in zip(stored["timestamp"], history):
        assert all(time_of[item] < row_time for item in items if item != 0)


def test_leave_one_out_history_drops_each_rows_own_item():
    X = interactions()
    out = HistoryBuilder(max_len=3, leave_one_out=True).fit_transform(X)
    # user 1 stored by time: 10 (t=100), then 11 and 12 (t=200); every row sees the other two.
    assert block(out, "history").tolist() == [
        [0, 11, 12], [0, 10, 12], [0, 10, 11], [0, 0, 13], [0, 0, 10], [0, 0, 0],
    ]
    builder = HistoryBuilder(max_len=2, leave_one_out=True).fit(X)
    # A users frame, and a row whose item is not stored (held out), see the most recent items.
    users = pd.DataFrame({"user_id": [1, 99]})
    assert block(builder.transform(users), "history").tolist() == [[11, 12], [0, 0]]
    held_out = pd.DataFrame({"user_id": [1], "item_id": [42]})
    assert block(builder.transform(held_out), "history").tolist() == [[11, 12]]
    with pytest.raises(TypeError, match="leave_one_out"):
        HistoryBuilder(leave_one_out="yes").fit(X)


def reference_leave_one_out(stored: pd.DataFrame, max_len: int) -> list:
    rows = []
    for user, item in zip(stored["user_id"], stored["item_id"]):
        seen = stored[(stored["user_id"] == user) & stored["positive"]]
        items = seen.sort_values("timestamp", kind="stable")["item_id"].tolist()
        window = items[-max_len - 1:]
        if item in window:
            del window[len(window) - 1 - window[::-1].index(item)]
        else:
            window = window[-max_len:]
        window = [0 if other == item else other for other in window]
        rows.append([0] * (max_len - len(window)) + window)
    return rows


@FAST
@given(events_=events, max_len=st.integers(1, 6))
def test_leave_one_out_history_matches_brute_force_reference(events_, max_len):
    stored = as_frame(events_)
    builder = HistoryBuilder(max_len=max_len, positive="positive", leave_one_out=True)
    history = block(builder.fit_transform(stored), "history")
    assert history.tolist() == reference_leave_one_out(stored, max_len)
    # The point of it: a row never sees its own item.
    assert not (history == stored["item_id"].to_numpy()[:, None]).any()


# ----------------------------------------------------------------------------- UserProfileEncoder


def test_profile_full_and_fallback():
    X = interactions()
    encoder = UserProfileEncoder(["year"], positive=lambda X: X["rating"] >= 4).fit(X)
    # positives: user 1 -> 1990, 2000; user 2 -> 1990; user 3 -> 2000; global mean 1995
    users = pd.DataFrame({"user_id": [1, 2, 3, 42]})
    out = encoder.transform(users)
    assert list(out.columns) == ["user_id", "profile_year"]
    assert out["profile_year"].tolist() == [1995.0, 1990.0, 2000.0, 1995.0]
    no_positive = X.assign(rating=[5, 4, 1, 1, 1, 4])
    refit = clone(encoder).fit(no_positive)
    assert refit.transform(pd.DataFrame({"user_id": [2]}))["profile_year"].tolist() == [
        pytest.approx((1990 + 2000 + 2000) / 3)
    ]


def test_profile_fit_transform_is_leave_one_out():
    X = interactions()
    encoder = UserProfileEncoder(["year", "lat"], positive=lambda X: X["rating"] >= 4)
    loo = encoder.fit_transform(X)[["profile_year", "profile_lat"]].to_numpy()
    full = encoder.transform(X)[["profile_year", "profile_lat"]].to_numpy()
    positive = (X["rating"] >= 4).to_numpy()
    features = X[["year", "lat"]].to_numpy()
    for row in range(len(X)):
        mates = positive & (X["user_id"] == X["user_id"][row]).to_numpy()
        if not positive[row]:
            np.testing.assert_allclose(loo[row], full[row])
            continue
        mates[row] = False
        others = positive.copy()
        others[row] = False
        expected = features[mates].mean(axis=0) if mates.any() else features[others].mean(axis=0)
        np.testing.assert_allclose(loo[row], expected)
    assert not np.allclose(loo, full)
    plain = UserProfileEncoder(["year", "lat"], leave_one_out=False)
    np.testing.assert_allclose(plain.fit_transform(X).iloc[:, -2:], plain.transform(X).iloc[:, -2:])


def test_profile_rejects_non_numeric_features():
    with pytest.raises(TypeError, match="'genres'.*numeric"):
        UserProfileEncoder(["genres"]).fit(interactions())


# ----------------------------------------------------------------------------- shared contract


@pytest.mark.parametrize(
    "estimator, column",
    [
        (ALL[0], "genres"),
        (ALL[1], "clicks"),
        (ALL[2], "user_id"),
        (ALL[2], "item_id"),
        (ALL[2], "timestamp"),
        (ALL[3], "user_id"),
        (ALL[3], "year"),
    ],
)
def test_nan_raises_naming_the_column(estimator, column):
    X = with_clicks(interactions())
    numeric = pd.api.types.is_numeric_dtype(X[column].dtype)
    X_nan = X.astype({column: float if numeric else object})
    X_nan.loc[1, column] = np.nan if numeric else None
    with pytest.raises(ValueError, match=f"'{column}'.*NaN"):
        clone(estimator).fit(X_nan)
    # Transform reads no item or item feature (they pass through), and a NaN time
    # means "whole history"; the columns it reads must be complete.
    if column in ("genres", "clicks", "user_id"):
        with pytest.raises(ValueError, match=f"'{column}'.*NaN"):
            clone(estimator).fit(X).transform(X_nan)


def test_nan_inside_a_list_raises_naming_the_column():
    X = interactions()
    inner = X.assign(genres=pd.Series([["Drama", None]] * 6, dtype=object))
    with pytest.raises(ValueError, match="'genres'.*inside the list"):
        MultiHotPadder(columns=["genres"]).fit(inner)


@pytest.mark.parametrize("estimator", ALL, ids=lambda e: type(e).__name__)
def test_missing_column_raises_naming_it(estimator):
    X = with_clicks(interactions())
    needed = {"MultiHotPadder": "genres", "SequenceTruncator": "clicks"}.get(
        type(estimator).__name__, "user_id"
    )
    with pytest.raises(ValueError, match=f"'{needed}'.*missing from X"):
        clone(estimator).fit(X.drop(columns=needed))
    fitted = clone(estimator).fit(X)
    with pytest.raises(ValueError, match=f"'{needed}'.*missing from X"):
        fitted.transform(X.drop(columns=needed))


@pytest.mark.parametrize("estimator", ALL, ids=lambda e: type(e).__name__)
def test_inputs_not_modified_and_pandas_round_trip(estimator):
    X = with_clicks(interactions()).set_index(pd.Index(list("abcdef")))
    before = X.copy(deep=True)
    estimator = clone(estimator)
    out = estimator.fit_transform(X)
    estimator.transform(X)
    pd.testing.assert_frame_equal(X, before)
    assert isinstance(out, pd.DataFrame) and out.index.equals(X.index)
    assert list(out.columns) == list(estimator.get_feature_names_out())
    assert estimator.n_features_in_ == X.shape[1]
    assert list(estimator.feature_names_in_) == list(X.columns)
    pandas_out = clone(estimator).set_output(transform="pandas").fit_transform(X)
    pd.testing.assert_frame_equal(pandas_out, out)


@pytest.mark.parametrize("estimator", ALL[:3], ids=lambda e: type(e).__name__)
def test_set_params_max_len_changes_width(estimator):
    X = with_clicks(interactions())
    assert clone(estimator).get_params() == estimator.get_params()
    pipe = Pipeline([("step", clone(estimator))])
    wide = pipe.fit_transform(X).shape[1]
    narrow = clone(pipe).set_params(step__max_len=3).fit_transform(X).shape[1]
    assert wide - narrow == estimator.max_len - 3


def test_column_transformer_geo_recipe_composes():
    X = interactions()
    geo = ColumnTransformer(
        [("geo", StandardScaler(), ["lat", "lon"])],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    pipe = Pipeline(
        [
            ("genres", MultiHotPadder(columns=["genres"], max_len=3)),
            ("history", HistoryBuilder(max_len=2)),
            ("profile", UserProfileEncoder(["year"], positive=lambda X: X["rating"] >= 4)),
            ("geo", geo),
        ]
    ).set_output(transform="pandas")
    out = pipe.fit_transform(X)
    assert list(out.columns) == list(pipe.get_feature_names_out())
    kept = ["user_id", "item_id", "timestamp", "year", "profile_year", "history[1]", "genres[2]"]
    assert set(kept) <= set(out.columns)
    pd.testing.assert_series_equal(out["user_id"], X["user_id"])
    np.testing.assert_allclose(out[["lat", "lon"]].mean(), 0.0, atol=1e-12)
    assert block(out, "genres").dtype == np.int64
    served = pipe.transform(X)
    assert list(served.columns) == list(out.columns)
