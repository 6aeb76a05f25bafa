"""fit on a scipy.sparse users x items matrix equals fit on the equivalent interaction frame."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from skdssm import TwoTowerRetriever
from skdssm._sparse import interactions_from_sparse
from skdssm.baselines import PopularityRecommender

FAST = dict(hidden_dims=(16, 8), embedding_dim=8, max_epochs=2, batch_size=32, random_state=0)


@pytest.fixture(scope="module")
def matrix():
    rng = np.random.default_rng(0)
    dense = rng.integers(1, 6, (30, 20)) * (rng.random((30, 20)) < 0.3)
    dense[:, 19] = 0  # an item nobody interacted with
    users = pd.DataFrame({"segment": rng.choice(["a", "b", "c"], 30),
                          "activity": rng.random(30)}, index=np.arange(100, 130))
    items = pd.DataFrame({"genre": rng.choice(["x", "y"], 20), "price": rng.random(20)})
    return sp.csr_matrix(dense.astype(np.float32)), users, items


def equivalent_frame(dense, users, items):
    """The interactions of ``dense`` row by row, written out by hand."""
    rows, columns = np.nonzero(dense)
    frame = pd.DataFrame({"user_id": rows, "item_id": columns})
    frame = pd.concat([frame, users.iloc[rows].reset_index(drop=True),
                       items.iloc[columns].reset_index(drop=True)], axis=1)
    return frame, dense[rows, columns].astype(np.float64)


@pytest.mark.parametrize("params", [dict(), dict(user_representation="id", loss="bce",
                                                 rating_transform="center")])
def test_sparse_fit_equals_frame_fit(matrix, params):
    R, users, items = matrix
    frame, values = equivalent_frame(R.toarray(), users, items)
    from_sparse = TwoTowerRetriever(**FAST, **params).fit(R, user_frame=users, item_frame=items)
    from_frame = TwoTowerRetriever(**FAST, **params).fit(frame, values)
    np.testing.assert_array_equal(from_sparse.user_ids_, np.unique(np.nonzero(R)[0]))
    np.testing.assert_array_equal(from_sparse.item_ids_, from_frame.item_ids_)
    assert 19 not in from_sparse.item_ids_
    query = np.arange(30)
    np.testing.assert_array_equal(from_sparse.predict_topk(query, k=5),
                                  from_frame.predict_topk(query, k=5))
    np.testing.assert_allclose(from_sparse.transform_users(query),
                               from_frame.transform_users(query), atol=1e-6)
    # Seen items are the stored entries: none comes back for its row.
    top = from_sparse.predict_topk(query, k=5)
    assert not R.toarray()[query[:, None], top].any()


def test_sparse_fit_without_frames_and_with_coo_input(matrix):
    R, _, _ = matrix
    frame, values = equivalent_frame(R.toarray(), pd.DataFrame(index=range(30)),
                                     pd.DataFrame(index=range(20)))
    from_coo = TwoTowerRetriever(**FAST).fit(R.tocoo())
    from_frame = TwoTowerRetriever(**FAST).fit(frame, values)
    np.testing.assert_array_equal(from_coo.predict_topk(np.arange(30), k=4),
                                  from_frame.predict_topk(np.arange(30), k=4))


def test_popularity_reads_the_matrix_as_weighted_interactions(matrix):
    R, _, _ = matrix
    frame, values = equivalent_frame(R.toarray(), pd.DataFrame(index=range(30)),
                                     pd.DataFrame(index=range(20)))
    model = PopularityRecommender().fit(R)
    expected = PopularityRecommender().fit(frame, sample_weight=values)
    np.testing.assert_array_equal(model.item_ids_, expected.item_ids_)
    column_sums = np.asarray(R.sum(axis=0)).ravel()
    np.testing.assert_allclose(model.item_counts_, column_sums[model.item_ids_])
    np.testing.assert_array_equal(model.predict_topk(np.arange(30), k=3),
                                  expected.predict_topk(np.arange(30), k=3))


def test_sparse_input_errors_name_the_parameter(matrix):
    R, users, items = matrix
    model = TwoTowerRetriever(**FAST)
    with pytest.raises(ValueError, match="y=None and sample_weight=None"):
        model.fit(R, np.ones(R.nnz))
    with pytest.raises(ValueError, match="user_frame must have one row per row"):
        model.fit(R, user_frame=users.iloc[:10])
    with pytest.raises(ValueError, match="item_frame has a column 'item_id'"):
        model.fit(R, item_frame=items.assign(item_id=1))
    with pytest.raises(ValueError, match="Column 'segment' of item_frame"):
        model.fit(R, user_frame=users, item_frame=items.assign(segment="s"))
    with pytest.raises(TypeError, match="user_frame must be a pandas DataFrame"):
        model.fit(R, user_frame=users.to_numpy())
    frame, _ = equivalent_frame(R.toarray(), users, items)
    with pytest.raises(ValueError, match="user_frame describes the rows"):
        model.fit(frame, user_frame=users)
    with pytest.raises(ValueError, match="no stored entry"):
        model.fit(sp.csr_matrix((3, 4)))
    with pytest.raises(ValueError, match="y=None"):
        PopularityRecommender().fit(R, sample_weight=np.ones(R.nnz))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8),
       st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7), st.floats(-5, 5)), min_size=1,
                max_size=30))
def test_conversion_holds_every_stored_entry_once(n_rows, n_columns, entries):
    """Each stored entry becomes one row (duplicates summed), in (row, column) order, with the
    side frames' rows gathered by position."""
    entries = [(r % n_rows, c % n_columns, v) for r, c, v in entries]
    rows, columns, values = map(np.array, zip(*entries))
    R = sp.coo_matrix((values, (rows, columns)), shape=(n_rows, n_columns))
    users = pd.DataFrame({"u": np.arange(n_rows) * 10}, index=np.arange(n_rows)[::-1])
    items = pd.DataFrame({"i": np.arange(n_columns) * 100})
    frame, stored = interactions_from_sparse(R, "user", "item", users, items)
    expected = sp.csr_matrix(R)
    np.testing.assert_array_equal(frame["user"], np.repeat(np.arange(n_rows),
                                                           np.diff(expected.indptr)))
    np.testing.assert_array_equal(frame["item"], expected.indices)
    np.testing.assert_allclose(stored, expected.data)
    np.testing.assert_array_equal(frame["u"], frame["user"] * 10)
    np.testing.assert_array_equal(frame["i"], frame["item"] * 100)
    assert list(frame.columns) == ["user", "item", "u", "i"]
