"""make_implicit_interactions: heavy tails, distinct pairs, planted clusters, retriever fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from skdssm import TwoTowerRetriever
from skdssm.baselines import PopularityRecommender
from skdssm.datasets import make_implicit_interactions
from skdssm.datasets._base import interaction_bunch
from skdssm.metrics import recall_at_k


@pytest.fixture(scope="module")
def million():
    return make_implicit_interactions(1_000_000, random_state=0)


@pytest.fixture(scope="module")
def hundred_k():
    return make_implicit_interactions(100_000, random_state=0)


def _with_codes(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as their codes (pandas compares categoricals element by element)."""
    return frame.apply(lambda column: column.cat.codes if column.dtype == "category" else column)


def test_layout_matches_interaction_bunch(hundred_k):
    data = hundred_k
    assert data.interactions.dtypes.astype(str).to_dict() == {
        "user_id": "int32", "item_id": "int32", "timestamp": "int64",
    }  # fmt: skip
    assert data["users"].dtypes.astype(str).to_dict() == {
        "user_id": "int32", "segment": "category", "device": "category",
    }  # fmt: skip
    assert data["items"].dtypes.astype(str).to_dict() == {
        "item_id": "int32", "category": "category", "brand": "category", "price": "float32",
    }  # fmt: skip
    n_users, n_items = len(data["users"]), len(data["items"])
    assert data["users"]["user_id"].tolist() == list(range(1, n_users + 1))
    assert data["items"]["item_id"].tolist() == list(range(1, n_items + 1))
    # The positional gathers build exactly what the two merges of interaction_bunch build.
    merged = interaction_bunch(data.interactions, data["users"], data["items"]).frame
    assert data.frame.dtypes.to_dict() == merged.dtypes.to_dict()  # categories included
    pd.testing.assert_frame_equal(_with_codes(data.frame), _with_codes(merged))
    assert data.user_cluster.shape == (n_users,) and data.item_cluster.shape == (n_items,)
    assert data.item_popularity.sum() == pytest.approx(1.0)


def test_defaults_scale_users_and_items_with_the_rows(hundred_k):
    # Median history of 20 items: 100k / (20 exp(1.2^2 / 2)) users; one item per 50 rows.
    assert len(hundred_k["users"]) == round(100_000 / (20 * np.exp(0.72)))
    assert len(hundred_k["items"]) == 2_000
    assert hundred_k.interactions.groupby("user_id").size().median() == pytest.approx(20, abs=2)


def test_without_features_only_ids_and_time():
    data = make_implicit_interactions(5_000, with_features=False, random_state=0)
    assert data.frame.columns.tolist() == ["user_id", "item_id", "timestamp"]
    assert data["users"].columns.tolist() == ["user_id"]
    assert data["items"].columns.tolist() == ["item_id"]


def test_is_determined_by_random_state():
    first = make_implicit_interactions(20_000, random_state=3)
    again = make_implicit_interactions(20_000, random_state=3)
    other = make_implicit_interactions(20_000, random_state=4)
    pd.testing.assert_frame_equal(first.frame, again.frame)
    np.testing.assert_array_equal(first.user_cluster, again.user_cluster)
    assert not first.interactions.equals(other.interactions)


@settings(max_examples=30, deadline=None)
@given(
    n_interactions=st.integers(1, 3_000),
    n_users=st.integers(1, 60),
    n_items=st.integers(2, 200),
    history_sigma=st.floats(0, 3),
    item_zipf=st.floats(0, 2),
    cluster_affinity=st.floats(0, 1),
    seed=st.integers(0, 2**31 - 1),
)
def test_invariants(n_interactions, n_users, n_items, history_sigma, item_zipf,
                    cluster_affinity, seed):
    n_interactions = min(n_interactions, n_users * (n_items // 2))
    data = make_implicit_interactions(
        n_interactions, n_users=n_users, n_items=n_items, history_sigma=history_sigma,
        item_zipf=item_zipf, n_clusters=min(3, n_users, n_items),
        cluster_affinity=cluster_affinity, random_state=seed,
    )
    frame = data.frame
    assert not frame.duplicated(["user_id", "item_id"]).any()
    assert frame["user_id"].between(1, n_users).all() and frame["item_id"].between(1, n_items).all()
    # Every user is present, rows sorted by user, times strictly increasing within a user.
    assert frame["user_id"].nunique() == n_users
    assert frame["user_id"].is_monotonic_increasing
    assert (frame.groupby("user_id")["timestamp"].diff().dropna() > 0).all()
    assert frame.groupby("user_id").size().max() <= max(1, n_items // 2)
    for key, columns in (("user_id", ["segment", "device"]),
                         ("item_id", ["category", "brand", "price"])):
        assert (frame.groupby(key, observed=True)[columns].nunique() == 1).all().all()
    assert len(frame) + data.n_dropped_duplicates <= n_interactions + n_users


@pytest.mark.parametrize("fixture, tolerance", [("hundred_k", 0.05), ("million", 0.01)])
def test_row_count_is_close_to_the_target(request, fixture, tolerance):
    data = request.getfixturevalue(fixture)
    target = 100_000 if fixture == "hundred_k" else 1_000_000
    assert target * (1 - tolerance) <= len(data.interactions) <= target
    # What is missing is what the report says was dropped (up to random rounding).
    assert len(data.interactions) + data.n_dropped_duplicates == pytest.approx(target, rel=0.002)


def test_history_lengths_are_heavy_tailed(million):
    lengths = million.interactions.groupby("user_id").size()
    assert lengths.median() == pytest.approx(20, abs=2)
    assert lengths.max() > 50 * lengths.median()
    assert (lengths > 1000).sum() >= 3
    assert (lengths <= 5).mean() > 0.1  # and many users have only a handful

    flat = make_implicit_interactions(100_000, history_sigma=0, item_zipf=0, random_state=0)
    flat_lengths = flat.interactions.groupby("user_id").size()
    assert flat_lengths.max() - flat_lengths.min() <= 1


def test_item_counts_are_zipf_like(million):
    counts = np.sort(np.bincount(million.interactions["item_id"] - 1,
                                 minlength=len(million["items"])))[::-1]
    top_share = counts[: len(counts) // 100].sum() / counts.sum()
    assert top_share > 0.3
    # Beyond the head (capped at one interaction per user) the counts follow rank ** -1.1.
    rank = np.arange(1, len(counts) + 1)
    tail = (rank >= 1_000) & (rank <= 10_000)
    slope = np.polyfit(np.log(rank[tail]), np.log(counts[tail]), 1)[0]
    assert slope == pytest.approx(-1.1, abs=0.15)

    uniform = make_implicit_interactions(100_000, item_zipf=0, random_state=0)
    counts = np.sort(np.bincount(uniform.interactions["item_id"] - 1))[::-1]
    assert counts[: len(counts) // 100].sum() / counts.sum() < 0.03


def test_features_reveal_the_clusters_partly(hundred_k):
    segment = hundred_k["users"]["segment"].cat.codes.to_numpy()
    category = hundred_k["items"]["category"].cat.codes.to_numpy()
    # A random replacement (20%) hits the true cluster 1/20 of the time: 0.8 + 0.2 / 20.
    assert (segment == hundred_k.user_cluster).mean() == pytest.approx(0.81, abs=0.03)
    assert (category == hundred_k.item_cluster).mean() == pytest.approx(0.81, abs=0.03)
    brand_categories = hundred_k["items"].groupby("brand", observed=True)["category"].nunique()
    assert (brand_categories == 1).all()  # brands nest in categories


def _leave_last_out(data):
    inter = data.interactions
    last = inter.groupby("user_id").cumcount(ascending=False) == 0
    return inter[~last], inter[last]


def _top_k_unseen(scores: np.ndarray, train: pd.DataFrame, users: np.ndarray, k: int):
    """Item ids (1-based) of the k best scores per row, the user's training items excluded."""
    rows = pd.Index(users).get_indexer(train["user_id"])
    seen = sp.csr_matrix((np.ones(len(train)), (rows, train["item_id"] - 1)), shape=scores.shape)
    scores = scores.copy()
    scores[seen.nonzero()] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k] + 1


def _recalls(data, k=10):
    """Recall@k of the last item per user: popularity, the planted-probability oracle, and the
    most popular training items among users of the same ``segment``."""
    train, test = _leave_last_out(data)
    users = test["user_id"].to_numpy()
    popularity = PopularityRecommender().fit(train).predict_topk(users, k=k)

    cluster = data.user_cluster[users - 1]
    p = data.item_popularity
    within = p / np.bincount(data.item_cluster, weights=p)[data.item_cluster]
    same = data.item_cluster[None, :] == cluster[:, None]
    oracle = (1 - data.cluster_affinity) * p + data.cluster_affinity * same * within

    segment = data["users"]["segment"].cat.codes.to_numpy()
    by_segment = np.zeros((segment.max() + 1, len(data["items"])))
    np.add.at(by_segment, (segment[train["user_id"] - 1], train["item_id"] - 1), 1)
    return {
        name: recall_at_k(test, top, users=users)
        for name, top in [
            ("popularity", popularity),
            ("oracle", _top_k_unseen(oracle, train, users, k)),
            ("segment", _top_k_unseen(by_segment[segment[users - 1]], train, users, k)),
        ]
    }


def test_planted_structure_beats_popularity(hundred_k):
    recall = _recalls(hundred_k)
    assert recall["oracle"] > 1.3 * recall["popularity"]
    # Learnable from data: counting items per segment (a feature) recovers most of the gain.
    assert recall["segment"] > 1.15 * recall["popularity"]


def test_without_affinity_popularity_is_all_there_is():
    recall = _recalls(make_implicit_interactions(100_000, cluster_affinity=0, random_state=0))
    assert recall["oracle"] == pytest.approx(recall["popularity"], abs=0.01)
    assert recall["segment"] < recall["popularity"] + 0.01


def test_two_tower_retriever_fits_a_sample():
    frame = make_implicit_interactions(20_000, random_state=0).frame
    model = TwoTowerRetriever(max_epochs=1, hidden_dims=(32, 16), user_representation="id",
                              random_state=0).fit(frame)
    sides = {f.name: f.side for f in model.feature_encoder_.features_}
    assert {k: sides[k] for k in ("segment", "device", "category", "brand", "price")} == {
        "segment": "user", "device": "user", "category": "item", "brand": "item", "price": "item",
    }  # fmt: skip
    assert "timestamp" not in sides
    users = frame["user_id"].unique()
    user_embeddings = model.transform_users(users)
    assert user_embeddings.shape == (len(users), 16)
    assert model.item_embeddings_.shape == (frame["item_id"].nunique(), 16)
    for embeddings in (user_embeddings, model.item_embeddings_):
        assert np.isfinite(embeddings).all()
        np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-4)
    assert np.isfinite(model.history_[-1, "train_loss"])


def test_rejects_bad_parameters():
    with pytest.raises(ValueError, match="n_items // 2 = 5 items each"):
        make_implicit_interactions(1_000, n_users=10, n_items=10, n_clusters=2)
    with pytest.raises(ValueError, match="cluster_affinity"):
        make_implicit_interactions(1_000, cluster_affinity=1.5)
    with pytest.raises(ValueError, match=r"n_clusters=11 must not exceed .* of items \(10\)"):
        make_implicit_interactions(1_000, n_items=10, n_users=500, n_clusters=11)
    with pytest.raises(ValueError, match=r"number of users \(12\)"):
        make_implicit_interactions(500)  # 12 users by default: fewer than 20 clusters
    with pytest.raises(TypeError, match="n_interactions"):
        make_implicit_interactions(1e6)
