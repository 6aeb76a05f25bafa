import numpy as np
import pandas as pd
import pytest

from skdssm._features import OOV, PAD, FeatureEncoder, column_groups


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
