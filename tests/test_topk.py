"""The serving verbs of both estimators: similar_items, predict_topk's candidates and
exclude_items, remove_items, and the typed fill of rows with too few eligible items."""

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest

from skdssm import DSSMRecommender, TwoTowerRetriever
from skdssm.datasets import make_interactions
from skdssm.neighbors import ExactIndex, HNSWIndex, ShardedIndex, exact_topk, recall_against

FAST = dict(hidden_dims=(32, 16), embedding_dim=8, max_epochs=2, early_stopping=False,
            random_state=0)
ITEM_COLUMNS = ["item_id", "category", "tags", "price"]


@pytest.fixture(scope="module")
def frame():
    return make_interactions(n_users=80, n_items=200, interactions_per_user=20,
                             random_state=0).frame


def fit(which, frame, index="exact", **params):
    if which == "dssm":
        X = frame.drop(columns=["label", "rating", "timestamp"])
        return DSSMRecommender(index=index, batch_size=128, **FAST, **params).fit(
            X, frame["label"]), X
    positives = frame[frame["label"] == 1].drop(columns=["label", "rating"])
    return TwoTowerRetriever(index=index, batch_size=64, **FAST, **params).fit(positives), positives


@pytest.fixture(scope="module", params=["dssm", "retriever"])
def fitted(request, frame):
    """Each estimator with exact search and with an HNSW graph, over the same embeddings."""
    model, X = fit(request.param, frame)
    graph = pickle.loads(pickle.dumps(model))
    graph.index_ = HNSWIndex(M=8, random_state=0).fit(graph.item_embeddings_,
                                                      queries=graph.transform_users(graph.user_ids_))
    return model, graph, X


def positions_of(model, ids):
    return pd.Index(model.item_ids_).get_indexer(np.asarray(ids).ravel()).reshape(np.shape(ids))


def seen_sets(X):
    return X.groupby("user_id")["item_id"].agg(set)


# -------------------------------------------------------------------------- similar_items
def test_similar_items_are_the_nearest_items_without_the_query_item(fitted):
    model, graph, _ = fitted
    queries = model.item_ids_[:15]
    ids, scores = model.similar_items(queries, k=5, return_scores=True)
    assert ids.dtype == model.item_ids_.dtype and ids.shape == scores.shape == (15, 5)
    assert not (ids == queries[:, None]).any()
    vectors = model.item_embeddings_
    itself = np.full_like(vectors @ vectors.T, 0.0)
    np.fill_diagonal(itself, -np.inf)
    truth = np.argsort(-(vectors[:15] @ vectors.T + itself[:15]), axis=1, kind="stable")[:, :5]
    np.testing.assert_allclose(scores, np.take_along_axis(vectors[:15] @ vectors.T, truth, 1),
                               atol=1e-5)
    # The HNSW graph finds (almost all of) the same neighbours, and never the query item.
    found = graph.similar_items(queries, k=5)
    assert not (found == queries[:, None]).any()
    assert recall_against(positions_of(model, found), truth) >= 0.95


def test_similar_items_of_a_new_item_described_by_features(frame):
    # A content-only item tower: a new id with a known item's features is that item's twin.
    model, X = fit("retriever", frame, item_id_embedding=False)
    known = X.drop_duplicates("item_id")[ITEM_COLUMNS].head(3)
    new = known.assign(item_id=np.arange(10_000, 10_003))
    ids, scores = model.similar_items(new, k=4, return_scores=True)
    np.testing.assert_array_equal(ids[:, 0], known["item_id"])
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    # A frame row of a catalogue item leaves that item out, like its id does.
    np.testing.assert_array_equal(model.similar_items(known, k=4),
                                  model.similar_items(known["item_id"].to_numpy(), k=4))
    with pytest.raises(ValueError, match="Column 'price' is missing from the item frame"):
        model.similar_items(new.drop(columns="price"))


# ----------------------------------------------------------------- candidates, exclude_items
def test_candidates_restrict_the_answer_exactly_under_every_index(fitted):
    model, graph, X = fitted
    users = model.user_ids_[:20]
    candidates = model.item_ids_[::4]
    seen = seen_sets(X)
    queries = model.transform_users(users)
    exclude = model.seen_items_[pd.Index(model.user_ids_).get_indexer(users)]
    shortlist = np.flatnonzero(np.isin(model.item_ids_, candidates))
    _, local = exact_topk(queries, model.item_embeddings_[shortlist], 8, exclude[:, shortlist])
    expected = model.item_ids_[shortlist[local]]
    for served in (model, graph):
        ids = served.predict_topk(users, k=8, candidates=list(candidates))
        assert np.isin(ids, candidates).all()
        assert not any(item in seen[user] for user, row in zip(users, ids) for item in row)
        np.testing.assert_array_equal(ids, expected)
    with pytest.raises(ValueError, match=r"2 candidates are not in the catalogue.*\[-5, -6\]"):
        model.predict_topk(users, k=3, candidates=[candidates[0], -5, -6])


def test_too_few_candidates_fill_the_tail_with_a_typed_value(fitted):
    model, _, _ = fitted
    ids, scores = model.predict_topk(model.user_ids_[:3], k=6, exclude_seen=False,
                                     candidates=model.item_ids_[:4], return_scores=True)
    assert ids.dtype == model.item_ids_.dtype
    assert (ids[:, 4:] == -1).all() and np.isneginf(scores[:, 4:]).all()
    assert np.isfinite(scores[:, :4]).all() and (np.sort(ids[:, :4], axis=1)
                                                 == np.sort(model.item_ids_[:4])).all()


def test_exclude_items_for_everyone_per_user_and_as_rows(fitted):
    model, graph, X = fitted
    users = model.user_ids_[:20]
    everyone = model.item_ids_[:30]
    top = model.predict_topk(users, k=10)
    banned = {users[0]: list(top[0, :3]), users[1]: top[1, 0]}
    rows = pd.DataFrame({"user_id": [users[2]] * 2, "item_id": top[2, :2]})
    for served in (model, graph):
        ids = served.predict_topk(users, k=10, exclude_items=everyone)
        assert not np.isin(ids, everyone).any() and all(len(set(row)) == 10 for row in ids)
        by_user = served.predict_topk(users, k=10, exclude_items=banned)
        assert not np.isin(by_user[0], top[0, :3]).any() and top[1, 0] not in by_user[1]
        by_rows = served.predict_topk(users, k=10, exclude_items=rows)
        assert not np.isin(by_rows[2], top[2, :2]).any()
    # Exact search: only the banned items change the lists, the rest move up in order.
    by_user = model.predict_topk(users, k=10, exclude_items=banned)
    np.testing.assert_array_equal(by_user[0, :7], top[0, 3:])
    np.testing.assert_array_equal(by_user[3:], top[3:])
    # The same user twice in a query gets its exclusions on both rows; unknown ids are ignored.
    twice = model.predict_topk([users[0], users[0]], k=10, exclude_items={users[0]: top[0, :3]})
    np.testing.assert_array_equal(twice[0], twice[1])
    np.testing.assert_array_equal(model.predict_topk(users, k=10, exclude_items=[-7, -8]), top)
    with pytest.raises(ValueError, match="Column 'item_id' is missing from the exclude_items"):
        model.predict_topk(users, exclude_items=rows.drop(columns="item_id"))


def test_exclusions_under_hnsw_match_exact_search(fitted):
    model, graph, X = fitted
    users = model.user_ids_
    everyone = model.item_ids_[::7]
    exact = model.predict_topk(users, k=10, exclude_items=everyone)
    approximate = graph.predict_topk(users, k=10, exclude_items=everyone)
    assert not np.isin(approximate, everyone).any()
    assert (approximate >= 0).all() and all(len(set(row)) == 10 for row in approximate)
    assert recall_against(positions_of(model, approximate), positions_of(model, exact)) >= 0.95


# ------------------------------------------------------------------------------ remove_items
@pytest.mark.parametrize("index", [
    ExactIndex(), HNSWIndex(M=8), ShardedIndex(n_shards=3, base=HNSWIndex(M=8))],
    ids=["exact", "hnsw", "sharded"])
@pytest.mark.parametrize("which", ["dssm", "retriever"])
def test_removed_items_are_not_served_and_index_items_brings_them_back(frame, which, index,
                                                                        tmp_path):
    model, X = fit(which, frame, index=index)
    users = model.user_ids_
    top = model.predict_topk(users, k=10)
    gone = np.unique(top[:, :2])
    model.remove_items(gone)
    ids = model.predict_topk(users, k=10)
    assert not np.isin(ids, gone).any() and all(len(set(row)) == 10 for row in ids)
    assert not np.isin(model.similar_items(model.item_ids_[:10], k=5), gone).any()
    assert not np.isin(model.item_ids_[model.kneighbors(users, 10)[1]], gone).any()
    # Against exact search over the items left, the seen ones excluded.
    removed = np.isin(model.item_ids_, gone)
    _, truth = exact_topk(model.transform_users(users), model.item_embeddings_, 10,
                          model.seen_items_, removed=removed)
    assert recall_against(positions_of(model, ids), truth) >= 0.95
    # Removals persist through pickle and joblib.
    joblib.dump(model, tmp_path / "model.joblib")
    for restored in (pickle.loads(pickle.dumps(model)), joblib.load(tmp_path / "model.joblib")):
        np.testing.assert_array_equal(restored.predict_topk(users, k=10), ids)
        np.testing.assert_array_equal(restored.item_ids_[restored.index_.removed_], gone)
    # index_items brings removed items back; with the same features, the answers are the same
    # as before the removal (an HNSW point is unmarked with the links it kept).
    items = X.drop_duplicates("item_id", keep="last")
    model.index_items(items[items["item_id"].isin(gone)])
    assert not model.index_.removed_.any()
    np.testing.assert_array_equal(model.predict_topk(users, k=10), top)


def test_remove_items_errors_and_limits(fitted):
    model, _, _ = fitted
    model = pickle.loads(pickle.dumps(model))
    with pytest.raises(ValueError, match=r"2 ids passed to remove_items are not in the catalogue"):
        model.remove_items([model.item_ids_[0], -3, "x"])
    assert not model.index_.removed_.any()  # nothing removed by a failed call
    n_items = len(model.item_ids_)
    model.remove_items(model.item_ids_[:n_items - 3])
    with pytest.raises(ValueError, match=rf"n_neighbors = 4 and {n_items - 3} of the catalogue's"):
        model.kneighbors(model.user_ids_[:2], n_neighbors=4)
    ids, scores = model.predict_topk(model.user_ids_[:2], k=5, exclude_seen=False,
                                     return_scores=True)
    assert set(ids[:, :3].ravel()) <= set(model.item_ids_[-3:]) and (ids[:, 3:] == -1).all()
    assert np.isneginf(scores[:, 3:]).all()


def test_remove_items_needs_an_index_that_can_remove(frame):
    class QueryOnly(ExactIndex):
        remove_items = None

    model, _ = fit("dssm", frame, index=QueryOnly())
    with pytest.raises(TypeError, match="QueryOnly has no remove_items"):
        model.remove_items(model.item_ids_[:1])


# --------------------------------------------------------------------------- typed fills
def tiny(item_ids):
    X = pd.DataFrame({"user_id": [1, 1, 1, 2], "item_id": item_ids})
    return DSSMRecommender(**dict(FAST, max_epochs=1, hidden_dims=(8,))).fit(X, [1, 0, 1, 1])


@pytest.mark.parametrize("item_ids, fill", [
    (np.array([1, 2, 3, 1]), -1),
    (np.array([1, 2, 3, 1], dtype=np.uint32), np.iinfo(np.uint32).max),
    (np.array([1.5, 2.5, 3.5, 1.5]), np.nan),
    (np.array(["a", "b", "c", "a"], dtype=object), None),
])
def test_rows_with_too_few_eligible_items_keep_the_ids_dtype(item_ids, fill):
    model = tiny(item_ids)
    ids, scores = model.predict_topk([1, 2], k=2, return_scores=True)
    assert ids.dtype == model.item_ids_.dtype
    expected = np.array([fill, fill], dtype=ids.dtype)
    np.testing.assert_array_equal(ids[0], expected)  # user 1 saw the whole catalogue
    assert np.isneginf(scores[0]).all() and np.isfinite(scores[1]).all()
    assert set(ids[1]) == set(item_ids[1:3])


def test_fill_value_is_checked_against_the_ids_dtype():
    model = tiny([1, 2, 3, 1])
    np.testing.assert_array_equal(model.predict_topk([1], k=2, fill_value=0), [[0, 0]])
    for bad in (3.5, "none", 2**70):
        with pytest.raises(ValueError, match=rf"fill_value={bad!r} cannot be stored exactly"):
            model.predict_topk([1], k=2, fill_value=bad)
    with pytest.raises(ValueError, match="fill value 2 is an item id"):
        model.predict_topk([1], k=2, fill_value=2)
    # An id -1 in the catalogue: the default fill cannot mark missing slots, so it asks for one.
    minus_one = tiny([1, -1, 3, 1])
    with pytest.raises(ValueError, match="fill value -1 is an item id"):
        minus_one.predict_topk([1], k=2)
    np.testing.assert_array_equal(minus_one.predict_topk([1], k=2, fill_value=-9), [[-9, -9]])
    # Rows that need no fill are served whatever the fill value.
    assert set(minus_one.predict_topk([2], k=2)[0]) == {-1, 3}
