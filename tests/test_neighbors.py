"""Nearest-neighbour indexes and their use by the estimators."""

import pickle
import re
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone

from skdssm import DSSMRecommender, TwoTowerRetriever
from skdssm.datasets import make_interactions
from skdssm.neighbors import (
    EXACT_CROSSOVER,
    ExactIndex,
    HNSWIndex,
    ShardedIndex,
    exact_topk,
    make_index,
    recall_against,
    recall_lower_bound,
    recall_per_query,
)

FAST = dict(hidden_dims=(32, 16), embedding_dim=8, max_epochs=3, batch_size=64, lr=1e-2,
            early_stopping=False)


def unit(rng, n, d=16):
    vectors = rng.standard_normal((n, d)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    return unit(rng, 3000), unit(rng, 400), unit(rng, 400)


@pytest.fixture(scope="module")
def hnsw(vectors):
    items, tuning, _ = vectors
    return HNSWIndex(target_recall=0.995, random_state=0).fit(items, queries=tuning)


@pytest.fixture(scope="module")
def sharded(vectors):
    items, tuning, _ = vectors
    return ShardedIndex(n_shards=4, base=HNSWIndex(target_recall=0.995),
                        random_state=0).fit(items, queries=tuning)


# Every index the shared tests below run on: the two single indexes and a sharded one of each.
MAKERS = {
    "exact": ExactIndex,
    "hnsw": lambda: HNSWIndex(random_state=0),
    "sharded-exact": lambda: ShardedIndex(n_shards=3, base=ExactIndex()),
    "sharded-hnsw": lambda: ShardedIndex(n_shards=4, base=HNSWIndex(), random_state=0),
}


def test_tuned_hnsw_reaches_the_target_recall_on_new_queries(vectors, hnsw):
    items, _, queries = vectors
    assert hnsw.recall_ >= 0.995 and hnsw.ef_search_ >= 10
    _, truth = ExactIndex().fit(items).query(queries, 10)
    _, found = hnsw.query(queries, 10)
    assert recall_against(found, truth) >= 0.99
    # The smallest passing ef is chosen: a much smaller one falls short.
    lower = HNSWIndex(ef_search=max(1, hnsw.ef_search_ // 4), random_state=0).fit(
        items, queries=vectors[1])
    assert lower.recall_ < hnsw.recall_


def test_sharded_hnsw_reaches_the_target_recall_on_new_queries(vectors, sharded):
    items, _, queries = vectors
    # Each shard is tuned on the shared sample; the merged recall is measured against exact
    # search over all items, not averaged over the shards.
    assert sharded.recall_ >= 0.995 and sharded.recall_lower_ < sharded.recall_
    assert all(shard.recall_lower_ >= 0.995 for shard in sharded.shards_)
    _, truth = ExactIndex().fit(items).query(queries, 10)
    assert recall_against(sharded.query(queries, 10)[1], truth) >= 0.99


def test_recall_lower_bound_is_mean_minus_z_standard_errors():
    found = np.array([[0, 1], [0, 9], [9, 8], [1, 0]])
    truth = np.array([[0, 1], [0, 1], [0, 1], [0, 1]])
    per_query = recall_per_query(found, truth)
    assert per_query.tolist() == [1.0, 0.5, 0.0, 1.0]
    standard_error = np.std(per_query, ddof=1) / 2
    assert recall_lower_bound(per_query) == pytest.approx(0.625 - 1.645 * standard_error)
    assert recall_lower_bound(np.ones(5)) == 1.0


def test_tuning_asks_the_lower_bound_not_the_mean_to_reach_the_target(vectors, hnsw):
    items, tuning, _ = vectors
    assert hnsw.recall_lower_ >= 0.995 and hnsw.recall_lower_ < hnsw.recall_
    # The smallest ef whose lower bound passes is chosen: half of it does not pass.
    below = HNSWIndex(ef_search=hnsw.ef_search_ // 2, random_state=0).fit(items, queries=tuning)
    assert below.recall_lower_ < 0.995


def test_tuning_without_queries_uses_perturbed_items(vectors):
    index = HNSWIndex(random_state=0).fit(vectors[0])
    assert index.recall_ >= 0.99
    again = HNSWIndex(random_state=0).fit(vectors[0])
    assert again.ef_search_ == index.ef_search_


def test_exact_index_matches_brute_force_and_returns_cosine_distances(vectors):
    items, _, queries = vectors
    distances, indices = ExactIndex().fit(items).query(queries, 5)
    scores = queries @ items.T
    np.testing.assert_array_equal(indices, np.argsort(-scores, axis=1)[:, :5])
    np.testing.assert_allclose(distances, 1 - np.sort(scores, axis=1)[:, ::-1][:, :5], atol=1e-5)
    assert distances.dtype == np.float32 and indices.dtype == np.int64


@pytest.mark.parametrize("kind", ["exact", "hnsw", "sharded-exact", "sharded-hnsw"])
def test_excluded_items_are_never_returned_and_rows_stay_full(request, vectors, kind):
    items, _, queries = vectors
    fixtures = {"hnsw": "hnsw", "sharded-hnsw": "sharded"}
    index = (request.getfixturevalue(fixtures[kind]) if kind in fixtures
             else MAKERS[kind]().fit(items))
    _, near = exact_topk(queries, items, 60)
    # Exclude a varying number of each query's own nearest items (the hard case).
    counts = np.arange(len(queries)) % 50
    mask = np.arange(60)[None, :] < counts[:, None]
    exclude = sp.csr_matrix((np.ones(mask.sum(), bool), (np.nonzero(mask)[0], near[mask])),
                            shape=(len(queries), len(items)))
    _, found = index.query(queries, 10, exclude=exclude)
    assert (found >= 0).all()
    assert exclude[np.arange(len(queries))[:, None], found].nnz == 0
    assert all(len(set(row)) == 10 for row in found)
    _, truth = exact_topk(queries, items, 10, exclude)
    assert recall_against(found, truth) >= 0.97


@pytest.mark.parametrize("kind", MAKERS)
def test_rows_with_too_few_eligible_items_get_minus_one_and_inf(kind):
    items = np.eye(4, dtype=np.float32)
    index = MAKERS[kind]().fit(items, k=3)
    exclude = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 0, 0]]))
    distances, found = index.query(items[:2], 3, exclude=exclude)
    assert found[0, :2].tolist() == [2, 3] or found[0, :2].tolist() == [3, 2]
    assert found[0, 2] == -1 and np.isinf(distances[0, 2])
    assert found[1, 0] == 1 and (found[1] >= 0).all()


@pytest.mark.parametrize("kind", MAKERS)
def test_add_and_replace_items(vectors, kind):
    items, _, queries = vectors
    index = MAKERS[kind]().fit(items[:1000])
    index.add_items(-queries[:3])
    assert index.n_items_ == 1003
    np.testing.assert_array_equal(index.query(-queries[:3], 1)[1].ravel(), [1000, 1001, 1002])
    index.replace_items(np.array([5]), queries[[7]])
    assert index.query(queries[[7]], 1)[1][0, 0] == 5
    with pytest.raises(ValueError, match="positions must lie in"):
        index.replace_items(np.array([5000]), queries[[7]])


@pytest.mark.parametrize("kind", MAKERS)
def test_save_load_and_pickle_give_identical_answers(vectors, kind, tmp_path):
    items, _, queries = vectors
    index = MAKERS[kind]().fit(items)
    expected = index.query(queries, 10)
    index.save(tmp_path / "index.pkl")
    for restored in (type(index).load(tmp_path / "index.pkl"), pickle.loads(pickle.dumps(index))):
        for got, want in zip(restored.query(queries, 10), expected):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match="not a"):
        (HNSWIndex if isinstance(index, ExactIndex) else ExactIndex).load(tmp_path / "index.pkl")


@pytest.mark.parametrize("kind", MAKERS)
def test_removed_items_are_never_returned_and_replace_items_brings_them_back(vectors, kind,
                                                                             tmp_path):
    items, _, queries = vectors
    index = MAKERS[kind]().fit(items[:1000])
    _, near = exact_topk(queries, items[:1000], 10)
    removed = np.unique(near[:, :3])  # the hard case: every query's own nearest items
    index.remove_items(removed)
    index.remove_items(removed[:5])  # removing twice is a no-op
    assert index.removed_.sum() == len(removed)
    mask = np.zeros(1000, dtype=bool)
    mask[removed] = True
    # Exclusions and removals together: rows stay full and match exact search without them.
    exclude = sp.csr_matrix((np.ones(len(queries), bool), (np.arange(len(queries)), near[:, 5])),
                            shape=(len(queries), 1000))
    for rows in (None, exclude):
        _, found = index.query(queries, 10, exclude=rows)
        assert (found >= 0).all() and not np.isin(found, removed).any()
        _, truth = exact_topk(queries, items[:1000], 10, rows, removed=mask)
        assert recall_against(found, truth) >= 0.97
    # Asking for more than the items left fills the tail with -1 / inf instead of failing.
    left = 1000 - len(removed)
    distances, found = index.query(queries[:2], left + 3)
    assert (found[:, :left] >= 0).all() and (found[:, left:] == -1).all()
    assert np.isinf(distances[:, left:]).all()
    # The removals persist through pickle and save / load.
    index.save(tmp_path / "index.pkl")
    for restored in (pickle.loads(pickle.dumps(index)), type(index).load(tmp_path / "index.pkl")):
        np.testing.assert_array_equal(restored.removed_, index.removed_)
        np.testing.assert_array_equal(restored.query(queries, 10)[1], index.query(queries, 10)[1])
    # Replacing a removed item's vector returns it again; added items are not removed.
    back = removed[:4]
    index.replace_items(back, items[back])
    np.testing.assert_array_equal(index.query(items[back], 1)[1].ravel(), back)
    index.replace_items(removed[4:5], -queries[:1])  # a new vector for a removed item
    assert index.query(-queries[:1], 1)[1][0, 0] == removed[4] and not index.removed_[removed[4]]
    index.add_items(-queries[:2])
    assert not index.removed_[-2:].any() and len(index.removed_) == 1002
    with pytest.raises(ValueError, match="positions must lie in"):
        index.remove_items(np.array([1002]))


@pytest.mark.parametrize("kind", MAKERS)
def test_an_index_pickled_before_removals_existed_still_answers(vectors, kind):
    items, _, queries = vectors
    index = MAKERS[kind]().fit(items[:500])
    expected = index.query(queries, 10)[1]
    old = pickle.loads(pickle.dumps(index))
    for part in [old, *getattr(old, "shards_", [])]:
        del part.removed_  # what an index pickled by an earlier skdssm lacks
    restored = pickle.loads(pickle.dumps(old))
    np.testing.assert_array_equal(restored.query(queries, 10)[1], expected)
    restored.remove_items(expected[0, :1])
    assert expected[0, 0] not in restored.query(queries[:1], 10)[1]


# ------------------------------------------------------------- sharded index
def test_sharded_index_splits_items_round_robin_and_returns_global_positions(vectors):
    items = vectors[0][:1001]
    index = ShardedIndex(n_shards=4, base=ExactIndex()).fit(items)
    assert index.n_shards_ == 4
    for shard, part in enumerate(index.shards_):
        np.testing.assert_array_equal(part.embeddings_, items[shard::4])
    # Every item is its own nearest neighbour, at its global position.
    np.testing.assert_array_equal(index.query(items, 1)[1].ravel(), np.arange(1001))
    graphs = ShardedIndex(n_shards=4, base=HNSWIndex(), random_state=0).fit(items)
    assert (graphs.query(items, 1)[1].ravel() == np.arange(1001)).mean() >= 0.99


@pytest.mark.parametrize("n_threads", [None, 1])
def test_sharded_index_with_exact_base_equals_exact_search(vectors, n_threads):
    items, _, queries = vectors
    exclude = sp.random(len(queries), len(items), density=0.01, format="csr", random_state=0)
    exact = ExactIndex().fit(items)
    index = ShardedIndex(n_shards=5, base=ExactIndex(), n_threads=n_threads).fit(items)
    assert index.recall_ == 1.0
    for mask in (None, exclude):
        want = exact.query(queries, 25, exclude=mask)
        got = index.query(queries, 25, exclude=mask)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_allclose(got[0], want[0], atol=1e-6)


def test_sharded_index_with_fewer_items_than_shards():
    items = np.eye(3, dtype=np.float32)
    index = ShardedIndex(n_shards=8, base=HNSWIndex(random_state=0)).fit(items)
    assert index.n_shards_ == 3 and [shard.n_items_ for shard in index.shards_] == [1, 1, 1]
    assert sorted(index.query(items[[1]], 3)[1][0].tolist()) == [0, 1, 2]
    assert index.query(items[[1]], 3)[1][0, 0] == 1
    # Added items keep going round-robin over the shards that exist.
    index.add_items(-items)
    assert index.n_items_ == 6 and [shard.n_items_ for shard in index.shards_] == [2, 2, 2]
    np.testing.assert_array_equal(index.query(-items, 1)[1].ravel(), [3, 4, 5])


def test_sharded_index_parameters_clone_and_seeds(vectors):
    base = HNSWIndex(M=8)
    index = ShardedIndex(n_shards=2, base=base, random_state=0)
    params = index.get_params(deep=True)
    assert params["base__M"] == 8 and params["n_shards"] == 2
    index.set_params(base__M=12)
    assert base.M == 12  # set_params reaches the base object, as sklearn's nested params do
    items = vectors[0][:500]
    fitted = clone(index).fit(items)
    assert not hasattr(base, "index_")  # shards are clones: the parameter object stays unfitted
    assert [shard.M for shard in fitted.shards_] == [12, 12]
    seeds = [shard.random_state for shard in fitted.shards_]
    assert len(set(seeds)) == 2
    again = clone(index).fit(items)
    assert [shard.random_state for shard in again.shards_] == seeds
    for got, want in zip(again.query(vectors[2], 10), fitted.query(vectors[2], 10)):
        np.testing.assert_array_equal(got, want)
    # Without random_state every shard keeps the base's own.
    kept = ShardedIndex(n_shards=2, base=HNSWIndex(random_state=7)).fit(items)
    assert [shard.random_state for shard in kept.shards_] == [7, 7]
    with pytest.raises(ValueError, match="n_shards"):
        ShardedIndex(n_shards=0).fit(items)


# ---------------------------------------------------------------- make_index
def test_make_index_auto_uses_the_measured_crossover():
    assert isinstance(make_index("auto", EXACT_CROSSOVER - 1, M=8), ExactIndex)
    assert make_index("auto", EXACT_CROSSOVER, M=8).get_params()["M"] == 8
    assert isinstance(make_index("exact"), ExactIndex)
    with pytest.raises(ValueError, match=r"\['bogus'\] are not parameters of HNSWIndex"):
        make_index("hnsw", bogus=1)
    with pytest.raises(ValueError, match="must have 16 columns"):
        ExactIndex().fit(np.eye(16, dtype=np.float32)).query(np.ones((1, 3)), 1)
    with pytest.raises(ValueError, match="k = 20 and the index holds 16"):
        ExactIndex().fit(np.eye(16, dtype=np.float32)).query(np.ones((1, 16)), 20)


def test_make_index_returns_an_unfitted_clone_of_an_index_object(vectors):
    for given in (ExactIndex(), HNSWIndex(M=24), ShardedIndex(n_shards=2, base=HNSWIndex(M=8))):
        made = make_index(given, 10)
        assert type(made) is type(given) and made is not given
        assert made.get_params(deep=True).keys() == given.get_params(deep=True).keys()
        assert not hasattr(made, "n_items_")
    # A fitted object gives an unfitted clone; the small catalogue does not switch it to exact.
    fitted = HNSWIndex(M=24, random_state=0).fit(vectors[0][:200])
    made = make_index(fitted, 200)
    assert isinstance(made, HNSWIndex) and made.M == 24 and not hasattr(made, "index_")
    # index_params are set on the clone, nested ones included; the given object is untouched.
    given = ShardedIndex(base=HNSWIndex(M=8))
    made = make_index(given, 0, n_shards=2, base__M=32)
    assert (made.n_shards, made.base.M, given.n_shards, given.base.M) == (2, 32, 4, 8)
    with pytest.raises(ValueError, match=r"\['M'\] are not parameters of ShardedIndex"):
        make_index(ShardedIndex(), M=8)


@pytest.mark.parametrize("bad, error, message", [
    ("faiss", ValueError, "'auto', 'hnsw', 'exact' or an index object; got 'faiss'"),
    (HNSWIndex, TypeError, r"Pass an instance, HNSWIndex\(\), not the class"),
    (3, TypeError, "index object with fit and query methods"),
    (np.eye(3), TypeError, "index object with fit and query methods"),
])
def test_make_index_rejects_anything_else(bad, error, message):
    with pytest.raises(error, match=message):
        make_index(bad, 10)


# ----------------------------------------------------------------- estimators
@pytest.fixture(scope="module")
def interactions():
    frame = make_interactions(n_users=80, n_items=50, interactions_per_user=20,
                              random_state=0).frame
    return frame


@pytest.fixture(scope="module")
def retriever(interactions):
    positives = interactions[interactions["label"] == 1].drop(columns=["label", "rating"])
    model = TwoTowerRetriever(item_id_embedding=False, index="hnsw", random_state=0, **FAST)
    return model.fit(positives), positives


@pytest.fixture(scope="module")
def dssm(interactions):
    X = interactions.drop(columns=["label", "rating", "timestamp"])
    model = DSSMRecommender(index=HNSWIndex(M=8), random_state=0, **FAST)
    return model.fit(X, interactions["label"]), X


def test_retriever_serves_from_a_sharded_index(interactions):
    positives = interactions[interactions["label"] == 1].drop(columns=["label", "rating"])
    index = ShardedIndex(n_shards=3, base=HNSWIndex(M=8))
    model = TwoTowerRetriever(item_id_embedding=False, index=index, random_state=0, **FAST)
    model.fit(positives)
    assert isinstance(model.index_, ShardedIndex) and model.index_ is not index
    assert model.index_.n_shards_ == 3 and not hasattr(index, "shards_")
    users = model.user_ids_
    ids = model.predict_topk(users, k=10)
    seen = set(zip(positives["user_id"], positives["item_id"]))
    assert not any((u, i) in seen for u, row in zip(users, ids) for i in row)
    assert all(len(set(row)) == 10 for row in ids)
    # Against exact search over the same embeddings with the same seen items left out.
    _, truth = exact_topk(model.transform_users(users), model.item_embeddings_, 10,
                          model.seen_items_)
    positions = pd.Index(model.item_ids_).get_indexer(ids.ravel()).reshape(ids.shape)
    assert recall_against(positions, truth) >= 0.95
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict_topk(users, k=10), ids)


def test_kneighbors_follows_sklearn_conventions(retriever):
    model, _ = retriever
    users = model.user_ids_[:6]
    distances, indices = model.kneighbors(users, n_neighbors=4)
    assert distances.shape == indices.shape == (6, 4)
    assert (np.diff(distances, axis=1) >= -1e-6).all()
    cosine = model.transform_users(users) @ model.item_embeddings_.T
    np.testing.assert_allclose(distances, 1 - np.take_along_axis(cosine, indices, 1), atol=1e-5)
    np.testing.assert_array_equal(model.kneighbors(users, 4, return_distance=False), indices)
    assert model.index_.recall_ >= 0.99
    with pytest.raises(ValueError, match="n_neighbors = 500"):
        model.kneighbors(users, n_neighbors=500)


@pytest.mark.parametrize("which", ["retriever", "dssm"])
def test_exclude_seen_returns_k_unseen_items(request, which):
    model, X = request.getfixturevalue(which)
    users = model.user_ids_
    ids = model.predict_topk(users, k=10)
    seen = set(zip(X["user_id"], X["item_id"]))
    assert not any((u, i) in seen for u, row in zip(users, ids) for i in row)
    assert all(len(set(row)) == 10 for row in ids) and np.isin(ids, model.item_ids_).all()


@pytest.mark.parametrize("which", ["retriever", "dssm"])
def test_pickle_round_trip_carries_the_index(request, which, tmp_path):
    model, _ = request.getfixturevalue(which)
    users = model.user_ids_[:20]
    joblib.dump(model, tmp_path / "model.joblib")
    for restored in (pickle.loads(pickle.dumps(model)), joblib.load(tmp_path / "model.joblib")):
        assert isinstance(restored.index_, HNSWIndex)
        assert restored.index_.ef_search_ == model.index_.ef_search_
        np.testing.assert_array_equal(restored.predict_topk(users, k=5), model.predict_topk(users, k=5))


def test_index_items_makes_a_cold_start_item_retrievable(retriever, interactions):
    model, positives = retriever
    model = pickle.loads(pickle.dumps(model))  # keep the shared fixture untouched
    n_items = len(model.item_ids_)
    popular = positives["item_id"].value_counts().index[0]
    twin = positives[positives["item_id"] == popular].tail(1).assign(item_id=10_000)
    model.index_items(twin)
    assert model.item_ids_[-1] == 10_000 and len(model.item_ids_) == n_items + 1
    assert model.seen_items_.shape == (len(model.user_ids_), n_items + 1)
    # A content-only item tower gives the twin the popular item's embedding.
    position = list(model.item_ids_).index(popular)
    np.testing.assert_allclose(model.item_embeddings_[-1], model.item_embeddings_[position],
                               atol=1e-6)
    # Equal scores: wherever the popular item is in a top 5, its twin is in the top 6.
    top = model.predict_topk(model.user_ids_, k=6, exclude_seen=False)
    has_popular = (top[:, :5] == popular).any(1)
    assert has_popular.any() and (top[has_popular] == 10_000).any(1).all()
    # Changing a known item's features replaces its embedding in place.
    changed = twin.assign(item_id=popular, price=twin["price"] * 50)
    before = model.item_embeddings_[position].copy()
    model.index_items(changed)
    assert len(model.item_ids_) == n_items + 1
    assert not np.allclose(model.item_embeddings_[position], before)
    assert model.kneighbors(model.user_ids_[:3], n_neighbors=n_items + 1)[1].max() == n_items


@pytest.mark.parametrize("bad_id", ["5", 3.5, 2**63 + 5, "new-item"])
def test_index_items_refuses_ids_the_catalogue_cannot_hold(retriever, bad_id):
    model, positives = retriever
    model = pickle.loads(pickle.dumps(model))
    before = model.item_ids_.copy()
    row = positives.tail(1).assign(item_id=pd.Series([bad_id], dtype=object,
                                                     index=positives.index[-1:]))
    with pytest.raises(ValueError, match=rf"item id \('item_id'\) {re.escape(repr(bad_id))}.*"
                                         r"cannot hold it exactly"):
        model.index_items(row)
    np.testing.assert_array_equal(model.item_ids_, before)
    assert model.item_ids_.dtype == before.dtype and model.index_.n_items_ == len(before)
    model.transform_items([5])  # no duplicate id: lookups still work


def test_index_items_compares_ids_as_values(retriever):
    model, positives = retriever
    model = pickle.loads(pickle.dumps(model))
    n_items, known = len(model.item_ids_), model.item_ids_[0]
    # 3.0 is the int 3: a known id is replaced, not added twice.
    model.index_items(positives.tail(1).assign(item_id=float(known)))
    assert len(model.item_ids_) == n_items and model.item_ids_.dtype == np.int64
    model.index_items(positives.tail(1).assign(item_id=np.uint64(10_001)))
    assert model.item_ids_[-1] == 10_001 and model.item_ids_.dtype == np.int64
    assert pd.Index(model.item_ids_).is_unique
    top = model.predict_topk(model.user_ids_, k=10, exclude_seen=False)
    assert all(len(set(row)) == 10 for row in top)


def test_index_items_into_a_string_catalogue_needs_string_ids(interactions):
    positives = interactions[interactions["label"] == 1].drop(columns=["label", "rating"])
    positives = positives.assign(item_id="i" + positives["item_id"].astype(str))
    model = TwoTowerRetriever(item_id_embedding=False, random_state=0, **FAST).fit(positives)
    with pytest.raises(ValueError, match="item id.* 7 .*cannot hold it exactly"):
        model.index_items(positives.tail(1).assign(item_id=7))
    model.index_items(positives.tail(1).assign(item_id="new-item"))
    assert model.item_ids_[-1] == "new-item"


def test_mixed_type_id_lists_keep_known_users_and_warn_once(retriever):
    model, _ = retriever
    known = model.user_ids_[:2].tolist()
    expected = model.predict_topk(known, k=5)
    for extra in ("x", None):
        with pytest.warns(UserWarning, match=r"1 user id\(s\) are unknown .* another type") as got:
            mixed = model.predict_topk(known + [extra], k=5)
        assert len([w for w in got if "another type" in str(w.message)]) == 1
        np.testing.assert_array_equal(mixed[:2], expected)
    with pytest.warns(UserWarning, match=r"2 user id\(s\)"):
        as_strings = model.transform_users([str(u) for u in known])
    np.testing.assert_allclose(as_strings[0], as_strings[1])  # both out-of-vocabulary
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict_topk(known + [10**9], k=5)  # unknown but of the fitted type: no warning
