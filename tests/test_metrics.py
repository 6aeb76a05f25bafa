"""Ranking metrics: hand-computed values, properties, and the scorer inside GridSearchCV."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.model_selection import GridSearchCV

from skdssm import DSSMRecommender, TwoTowerRetriever
from skdssm.datasets import make_interactions
from skdssm.metrics import (
    catalog_coverage,
    hit_rate_at_k,
    make_topk_scorer,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from skdssm.model_selection import UserHoldoutSplit

RANKING = [recall_at_k, precision_at_k, hit_rate_at_k, ndcg_at_k, mrr_at_k]

TRUTH = pd.DataFrame({"user_id": [1, 1, 1, 2, 3, 9], "item_id": ["a", "b", "c", "x", "q", "a"]})
PRED = np.array([["a", "z", "b"], ["y", "x", None], ["q", "r", "s"], ["a", "b", "c"]], dtype=object)
USERS = [1, 2, 3, 4]  # user 4 has no relevant item and is skipped; user 9 was not recommended


def test_hand_computed_values():
    log = np.log2
    assert recall_at_k(TRUTH, PRED, users=USERS) == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert precision_at_k(TRUTH, PRED, users=USERS) == pytest.approx((2 / 3 + 1 / 3 + 1 / 3) / 3)
    assert hit_rate_at_k(TRUTH, PRED, users=USERS) == 1.0
    ndcg_1 = (1 + 1 / log(4)) / (1 + 1 / log(3) + 1 / log(4))
    assert ndcg_at_k(TRUTH, PRED, users=USERS) == pytest.approx((ndcg_1 + 1 / log(3) + 1) / 3)
    assert mrr_at_k(TRUTH, PRED, users=USERS) == pytest.approx((1 + 1 / 2 + 1) / 3)
    assert recall_at_k(TRUTH, PRED, users=USERS, k=1) == pytest.approx(2 / 3)
    assert catalog_coverage(PRED, list("abcxyzqrst")) == pytest.approx(0.9)  # all but "t"
    assert catalog_coverage([[0, 1], [1, 5]], 4) == 0.5


def test_recall_divides_by_min_k_and_n_relevant():
    truth = sp.csr_matrix(np.array([[1, 1, 1, 1, 0, 0]]))
    assert recall_at_k(truth, np.array([[0, 1]])) == 1.0
    assert recall_at_k(truth, np.array([[0, 5]])) == 0.5
    assert ndcg_at_k(truth, np.array([[5, 0]])) == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))


def test_sparse_and_frame_inputs_agree():
    items = np.array(["a", "b", "c", "q", "r", "s", "x", "y", "z"], dtype=object)
    rows = pd.Index(USERS).get_indexer(TRUTH["user_id"])
    keep = rows >= 0
    matrix = sp.csr_matrix((np.ones(keep.sum()), (rows[keep],
                                                  pd.Index(items).get_indexer(TRUTH["item_id"][keep]))),
                           shape=(4, len(items)))
    for metric in RANKING:
        assert metric(matrix, PRED, items=items) == pytest.approx(metric(TRUTH, PRED, users=USERS))


def test_no_relevant_user_warns_and_errors_name_the_input():
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(recall_at_k(TRUTH.iloc[:0], PRED, users=USERS))
    with pytest.raises(ValueError, match="users must give the user id"):
        recall_at_k(TRUTH, PRED)
    with pytest.raises(ValueError, match="Column 'item_id' is missing from y_true"):
        recall_at_k(TRUTH.rename(columns={"item_id": "movie"}), PRED, users=USERS)
    with pytest.raises(ValueError, match="metric must be one of"):
        make_topk_scorer("auc")


@st.composite
def rankings(draw):
    n_users = draw(st.integers(1, 8))
    n_items = draw(st.integers(3, 12))
    k = draw(st.integers(1, n_items))
    relevant = np.array(draw(st.lists(st.lists(st.booleans(), min_size=n_items, max_size=n_items),
                                      min_size=n_users, max_size=n_users)))
    seed = draw(st.integers(0, 2**16))
    order = np.argsort(np.random.default_rng(seed).random((n_users, n_items)), axis=1)[:, :k]
    return sp.csr_matrix(relevant), order, k


@settings(max_examples=60, deadline=None)
@given(rankings())
def test_metrics_lie_in_unit_interval_and_are_permutation_invariant(case):
    truth, ranking, _ = case
    if truth.nnz == 0:
        return
    permutation = np.random.default_rng(0).permutation(truth.shape[0])
    for metric in RANKING:
        value = metric(truth, ranking)
        assert 0.0 <= value <= 1.0
        assert metric(truth[permutation], ranking[permutation]) == pytest.approx(value)


@settings(max_examples=60, deadline=None)
@given(rankings())
def test_a_perfect_ranking_scores_one(case):
    truth, _, k = case
    dense = truth.toarray()
    # Relevant items first, in any order: every metric but precision reaches 1.
    perfect = np.argsort(~dense, axis=1, kind="stable")[:, :k]
    has = dense.any(1)
    if not has.any():
        return
    truth, perfect = truth[has], perfect[has]
    for metric in (recall_at_k, hit_rate_at_k, ndcg_at_k, mrr_at_k):
        assert metric(truth, perfect) == pytest.approx(1.0)
    expected_precision = np.mean(np.minimum(dense[has].sum(1), k) / k)
    assert precision_at_k(truth, perfect) == pytest.approx(expected_precision)


def test_scorer_in_grid_search_with_user_holdout():
    frame = make_interactions(n_users=60, n_items=40, interactions_per_user=20, random_state=0).frame
    positives = frame[frame["label"] == 1].drop(columns=["label", "rating"]).reset_index(drop=True)
    model = TwoTowerRetriever(hidden_dims=(16, 8), embedding_dim=8, batch_size=64, lr=1e-2,
                              early_stopping=False, random_state=0)
    search = GridSearchCV(model, {"max_epochs": [1, 6]}, cv=UserHoldoutSplit(random_state=0),
                          scoring={"recall": make_topk_scorer("recall", k=10),
                                   "ndcg": make_topk_scorer("ndcg", k=10)}, refit="recall")
    search.fit(positives)
    scores = search.cv_results_["mean_test_recall"]
    assert np.all((scores > 0) & (scores <= 1))
    assert search.best_params_ == {"max_epochs": 6}

    # The held-out rows are the ground truth, training rows are excluded from the ranking.
    train, test = next(UserHoldoutSplit(random_state=0).split(positives))
    fitted = model.set_params(max_epochs=2).fit(positives.iloc[train])
    scorer = make_topk_scorer("hit_rate", k=5)
    truth = positives.iloc[test]
    users = pd.unique(truth["user_id"])
    expected = hit_rate_at_k(truth, fitted.predict_topk(users, k=5), users=users)
    assert scorer(fitted, truth) == pytest.approx(expected)
    labels = np.where(np.arange(len(truth)) % 2 == 0, 1, 0)
    only_positive = truth[labels > 0]
    assert scorer(fitted, truth, labels) == pytest.approx(
        hit_rate_at_k(only_positive, fitted.predict_topk(pd.unique(only_positive["user_id"]), k=5),
                      users=pd.unique(only_positive["user_id"])))


def test_scorer_with_string_ids_and_labels_matches_the_integer_model():
    frame = make_interactions(n_users=40, n_items=30, random_state=0).frame
    X, y = frame.drop(columns=["label", "rating", "timestamp"]), frame["label"].to_numpy()
    # Zero-padded, so the string ids sort like the integers: both models learn the same weights.
    named = X.assign(user_id="u" + X["user_id"].astype(str).str.zfill(3),
                     item_id="i" + X["item_id"].astype(str).str.zfill(3))
    liked = np.where(y == 1, "liked", "disliked")  # classes_ == ["disliked", "liked"]
    train, test = next(UserHoldoutSplit(random_state=0).split(X))
    scorer = make_topk_scorer("ndcg", k=5)

    def dssm():
        return DSSMRecommender(embedding_dim=4, hidden_dims=(8,), max_epochs=1, batch_size=64,
                               random_state=0)

    by_int = scorer(dssm().fit(X.iloc[train], y[train]), X.iloc[test], y[test])
    by_name = scorer(dssm().fit(named.iloc[train], liked[train]), named.iloc[test], liked[test])
    assert 0 < by_int <= 1 and by_name == pytest.approx(by_int)

    def retriever():
        return TwoTowerRetriever(embedding_dim=4, hidden_dims=(8,), max_epochs=1, batch_size=64,
                                 random_state=0)

    by_int = scorer(retriever().fit(X.iloc[train]), X.iloc[test])
    assert 0 < by_int <= 1
    assert scorer(retriever().fit(named.iloc[train]), named.iloc[test]) == pytest.approx(by_int)


def test_scorer_rejects_non_numeric_labels_without_classes():
    frame = make_interactions(n_users=20, n_items=25, random_state=0).frame
    X = frame.drop(columns=["label", "rating", "timestamp"])
    model = TwoTowerRetriever(embedding_dim=4, hidden_dims=(8,), max_epochs=1, random_state=0)
    model.fit(X)
    with pytest.raises(ValueError, match="non-numeric labels .* TwoTowerRetriever has no two"):
        make_topk_scorer("recall")(model, X, np.where(frame["label"] == 1, "yes", "no"))
    with pytest.raises(ValueError, match="one label per row of X; got shape \\(3,\\)"):
        make_topk_scorer("recall")(model, X, [1, 0, 1])
