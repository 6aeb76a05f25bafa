"""Nearest-neighbour indexes and their use by the estimators."""

import pickle

import joblib
import numpy as np
import pytest
import scipy.sparse as sp

from skdssm import DSSMRecommender, TwoTowerRetriever
from skdssm.datasets import make_interactions
from skdssm.neighbors import (
    EXACT_CROSSOVER,
    ExactIndex,
    HNSWIndex,
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


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_excluded_items_are_never_returned_and_rows_stay_full(vectors, hnsw, kind):
    items, _, queries = vectors
    index = hnsw if kind == "hnsw" else ExactIndex().fit(items)
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


@pytest.mark.parametrize("index", [ExactIndex(), HNSWIndex(random_state=0)])
def test_rows_with_too_few_eligible_items_get_minus_one_and_inf(index):
    items = np.eye(4, dtype=np.float32)
    index.fit(items, k=3)
    exclude = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 0, 0]]))
    distances, found = index.query(items[:2], 3, exclude=exclude)
    assert found[0, :2].tolist() == [2, 3] or found[0, :2].tolist() == [3, 2]
    assert found[0, 2] == -1 and np.isinf(distances[0, 2])
    assert found[1, 0] == 1 and (found[1] >= 0).all()


@pytest.mark.parametrize("make", [ExactIndex, lambda: HNSWIndex(random_state=0)])
def test_add_and_replace_items(vectors, make):
    items, _, queries = vectors
    index = make().fit(items[:1000])
    index.add_items(-queries[:3])
    assert index.n_items_ == 1003
    np.testing.assert_array_equal(index.query(-queries[:3], 1)[1].ravel(), [1000, 1001, 1002])
    index.replace_items(np.array([5]), queries[[7]])
    assert index.query(queries[[7]], 1)[1][0, 0] == 5
    with pytest.raises(ValueError, match="positions must lie in"):
        index.replace_items(np.array([5000]), queries[[7]])


@pytest.mark.parametrize("make", [ExactIndex, lambda: HNSWIndex(random_state=0)])
def test_save_load_and_pickle_give_identical_answers(vectors, make, tmp_path):
    items, _, queries = vectors
    index = make().fit(items)
    expected = index.query(queries, 10)
    index.save(tmp_path / "index.pkl")
    for restored in (type(index).load(tmp_path / "index.pkl"), pickle.loads(pickle.dumps(index))):
        for got, want in zip(restored.query(queries, 10), expected):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match="not a"):
        (HNSWIndex if isinstance(index, ExactIndex) else ExactIndex).load(tmp_path / "index.pkl")


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
