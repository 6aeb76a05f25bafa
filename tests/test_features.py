import re

import numpy as np
import pandas as pd
import pytest

from skdssm import DSSMRecommender, TwoTowerRetriever
from skdssm._features import OOV, PAD, FeatureEncoder, column_groups
from skdssm.datasets import make_interactions


@pytest.fixture
def frame():
    return pd.DataFrame({
        "user_id": [1, 1, 2, 3],
        "item_id": [10, 11, 10, 12],
        "gender": ["M", "M", "F", "F"],
        "age": [20, 20, 30, 40],
        "genres": [["a", "b"], ["c"], ["a", "b"], []],
        "price": [1.0, 2.0, 1.0, 3.0],
    })


def test_auto_assigns_columns_by_constancy_and_kind_by_dtype(frame):
    enc = FeatureEncoder("user_id", "item_id").fit(frame)
    roles = {f.name: (f.side, f.kind) for f in enc.features_}
    assert roles == {
        "user_id": ("user", "categorical"), "item_id": ("item", "categorical"),
        "gender": ("user", "categorical"), "age": ("user", "categorical"),
        "genres": ("item", "multi"), "price": ("item", "dense"),
    }


def test_column_constant_within_neither_id_is_an_error_naming_it(frame):
    frame = frame.assign(timestamp=[1, 2, 3, 4])
    with pytest.raises(ValueError, match="Column 'timestamp' is neither constant"):
        FeatureEncoder("user_id", "item_id").fit(frame)


def test_explicit_lists_ignore_other_columns(frame):
    frame = frame.assign(timestamp=[1, 2, 3, 4])
    enc = FeatureEncoder("user_id", "item_id", user_features=["gender"], item_features=[]).fit(frame)
    assert [f.name for f in enc.features_] == ["user_id", "item_id", "gender"]


def test_codes_reserve_padding_and_oov(frame):
    enc = FeatureEncoder("user_id", "item_id").fit(frame)
    new = frame.assign(gender=["X", "M", "F", "F"], genres=[["zzz", "a"], [], ["c"], ["b"]])
    user = enc.encode(new, "user")
    assert user["user:gender"][0] == OOV
    item = enc.encode(new, "item")["item:genres"]
    assert item.shape == (4, 2)
    assert item[0, 0] == OOV and item[0, 1] >= 2
    assert (item[1] == PAD).all()


def test_list_cells_and_padded_block_encode_the_same_tokens(frame):
    block = pd.DataFrame({"genres[0]": [1, 3, 1, 0], "genres[1]": [2, 0, 2, 0]})
    lists = frame[["user_id", "item_id"]].assign(genres=[[1, 2], [3], [1, 2], []])
    as_block = pd.concat([frame[["user_id", "item_id"]], block], axis=1)
    a = FeatureEncoder("user_id", "item_id").fit(lists)
    b = FeatureEncoder("user_id", "item_id").fit(as_block)
    np.testing.assert_array_equal(a.encode(lists, "item")["item:genres"],
                                  b.encode(as_block, "item")["item:genres"])


def test_block_columns_must_be_contiguous():
    with pytest.raises(ValueError, match="without gaps"):
        column_groups(["user_id", "g[0]", "g[2]"])


def test_sequence_uses_item_vocabulary_and_keeps_most_recent_right_aligned(frame):
    frame = frame.assign(history=[[10], [10, 11, 12], [], [99, 12]])
    enc = FeatureEncoder("user_id", "item_id", sequence_features=["history"],
                         max_sequence_length=2).fit(frame)
    codes = enc.encode(frame, "user")["user:history"]
    item_codes = dict(zip([10, 11, 12], enc.encode(frame.iloc[[0, 1, 3]], "item")["item:item_id"]))
    assert codes.shape == (4, 2)
    assert codes[0].tolist() == [PAD, item_codes[10]]
    assert codes[1].tolist() == [item_codes[11], item_codes[12]]
    assert codes[2].tolist() == [PAD, PAD]
    assert codes[3].tolist() == [OOV, item_codes[12]]


def test_missing_values_are_errors_naming_the_column(frame):
    frame = frame.assign(price=[1.0, np.nan, 1.0, 3.0])
    with pytest.raises(ValueError, match="Column 'price' contains 1 missing"):
        FeatureEncoder("user_id", "item_id").fit(frame)


def test_missing_id_column_is_named(frame):
    with pytest.raises(ValueError, match="Column 'uid' is missing from X"):
        FeatureEncoder("uid", "item_id").fit(frame)


# --------------------------------------------------------------------------- hardening


@pytest.fixture(scope="module")
def interactions():
    data = make_interactions(n_users=40, n_items=30, random_state=0)
    X = data.frame.drop(columns=["rating", "timestamp", "label"])
    return X, data.frame["label"].to_numpy()


def small_dssm():
    return DSSMRecommender(embedding_dim=4, hidden_dims=(8,), max_epochs=1, early_stopping=False,
                           batch_size=64, random_state=0)


def small_retriever():
    return TwoTowerRetriever(embedding_dim=4, hidden_dims=(8,), max_epochs=1, batch_size=64,
                             random_state=0)


def test_repeated_index_labels_encode_and_fit_like_a_fresh_index(interactions):
    X, y = interactions
    repeated = X.set_axis(np.arange(len(X)) // 2)  # each label on two rows
    enc = FeatureEncoder("user_id", "item_id").fit(repeated)
    fresh = FeatureEncoder("user_id", "item_id").fit(X)
    assert [(f.name, f.side, f.kind) for f in enc.features_] == [
        (f.name, f.side, f.kind) for f in fresh.features_]
    for side in ("user", "item"):
        got, want = enc.encode(repeated, side), fresh.encode(X, side)
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])

    model = small_dssm().fit(repeated, y)
    np.testing.assert_allclose(model.predict_proba(repeated),
                               small_dssm().fit(X, y).predict_proba(X), rtol=1e-5)
    users = X["user_id"].unique()[:5]
    np.testing.assert_array_equal(small_retriever().fit(repeated).predict_topk(users, k=3),
                                  small_retriever().fit(X).predict_topk(users, k=3))


def with_strings(X, rows, text="theme_1|theme_2"):
    """X with ``tags`` replaced by a joined string on every row of the items at ``rows``."""
    items = X["item_id"].iloc[rows]
    tags = X["tags"].copy()
    tags[X["item_id"].isin(items).to_numpy()] = text
    return X.assign(tags=tags)


@pytest.mark.parametrize("first_bad", [0, 5])  # a string in the first row hid the lists
def test_string_among_list_cells_names_the_column_and_first_bad_row(interactions, first_bad):
    X, y = interactions
    X = X.set_axis([f"r{i}" for i in range(len(X))])
    X = with_strings(X, [first_bad])
    position = int(np.flatnonzero(X["tags"].map(type) == str)[0])
    message = (rf"Column 'tags' holds lists, but \d+ of its cells are not lists; the first, at "
               rf"position {position} \(index label 'r{position}'\), is the str 'theme_1\|theme_2'")
    with pytest.raises(ValueError, match=message):
        FeatureEncoder("user_id", "item_id").fit(X)
    with pytest.raises(ValueError, match=message):
        small_dssm().fit(X, y)
    with pytest.raises(ValueError, match=message):
        small_retriever().fit(X)


def test_string_among_list_cells_at_predict_time_is_named(interactions):
    X, y = interactions
    model = small_dssm().fit(X, y)
    with pytest.raises(ValueError, match=r"'tags' holds lists, .* position 0 \(index label 3\)"):
        model.predict_proba(with_strings(X, [3]).iloc[3:])
    enc = FeatureEncoder("user_id", "item_id", sequence_features=["history"])
    frame = X.assign(history=[[1, 2]] * (len(X) - 1) + ["1|2"])
    with pytest.raises(ValueError, match=rf"Column 'history' .* position {len(X) - 1} "):
        enc.fit(frame)


@pytest.mark.parametrize("value", [1e39, -1e39])
def test_dense_values_beyond_float32_are_named(interactions, value):
    X, y = interactions
    huge = X.assign(price=np.where(X["item_id"] == X["item_id"].iloc[2], value, X["price"]))
    message = (r"Column 'price' contains \d+ value\(s\) beyond the float32 range "
               rf"\(\|x\| <= 3.403e\+38\), first {re.escape(f'{value:.4g}')} at position 2 "
               r"\(index label 2\)")
    with pytest.raises(ValueError, match=message):
        FeatureEncoder("user_id", "item_id").fit(huge)
    with pytest.raises(ValueError, match=message):
        small_dssm().fit(huge, y)
    model = small_dssm().fit(X, y)
    with pytest.raises(ValueError, match=message):
        model.predict_proba(huge)
    # The float32 range itself is fine: 3e38 is large but finite in float32.
    largest = X.assign(price=np.where(X["item_id"] == X["item_id"].iloc[2], 3e38, X["price"]))
    dense = FeatureEncoder("user_id", "item_id").fit(largest).encode(largest, "item")["item:dense"]
    assert np.isfinite(dense).all() and dense.max() == np.float32(3e38)
