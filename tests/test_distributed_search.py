"""Model selection on a dask cluster: the same cv_results_ as a sequential search.

Skipped without the ``distributed`` extra (``pip install skdssm[distributed]``).
"""

import logging
import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_validate

import skdssm
from skdssm import DSSMRecommender, TwoTowerRetriever
from skdssm.datasets import make_interactions
from skdssm.metrics import make_topk_scorer
from skdssm.model_selection import UserHoldoutSplit
from skdssm.neighbors import HNSWIndex

distributed = pytest.importorskip("distributed")

SMALL = dict(hidden_dims=(16, 8), embedding_dim=8, batch_size=64, lr=1e-2, early_stopping=False,
             random_state=0)
SCORING = {"recall": make_topk_scorer("recall", k=10), "ndcg": make_topk_scorer("ndcg", k=10)}


def _set_torch_threads(n_threads):
    torch.set_num_threads(n_threads)
    return torch.get_num_threads()


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes; torch on one thread here too.

    The number of torch threads changes the order of float reductions (summing 10M floats on one
    and on two threads differed in the 4th decimal; a retriever's embeddings by 1e-7), so the
    sequential reference runs on as many threads as each worker: one, which dask's nanny already
    sets through OMP_NUM_THREADS=1 and which the fixture sets explicitly on both sides.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
                distributed.Client(cluster) as client:
            assert set(client.run(_set_torch_threads, 1).values()) == {1}
            yield client
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def interactions():
    return make_interactions(n_users=60, n_items=40, random_state=0).frame


def _searches(interactions):
    """(estimator, param grid, X, y) of the two searches compared."""
    positives = interactions[interactions["label"] == 1].drop(columns=["label", "rating"])
    retriever = TwoTowerRetriever(index=HNSWIndex(M=8), **SMALL)
    X = interactions.drop(columns=["label", "rating", "timestamp"])
    dssm = DSSMRecommender(**SMALL)
    return {
        "retriever": (retriever, {"max_epochs": [1, 2]},
                      positives.reset_index(drop=True), None),
        "dssm": (dssm, {"max_epochs": [1, 2]}, X, interactions["label"]),
    }


def _grid(estimator, grid, n_jobs):
    return GridSearchCV(estimator, grid, cv=UserHoldoutSplit(n_splits=2, random_state=0),
                        scoring=SCORING, refit="recall", n_jobs=n_jobs)


def test_workers_import_this_skdssm(client):
    # Each worker unpickles the estimators, so it must import the same skdssm as the client.
    assert set(client.run(lambda: skdssm.__file__).values()) == {skdssm.__file__}


@pytest.mark.parametrize("which", ["retriever", "dssm"])
def test_grid_search_on_dask_matches_the_sequential_search(client, interactions, which):
    estimator, grid, X, y = _searches(interactions)[which]
    sequential = _grid(estimator, grid, n_jobs=1).fit(X, y)
    with joblib.parallel_config(backend="dask"):
        on_dask = _grid(estimator, grid, n_jobs=-1).fit(X, y)
    assert on_dask.cv_results_["params"] == sequential.cv_results_["params"]
    keys = [key for key in sequential.cv_results_
            if key.startswith(("mean_test_", "std_test_", "split", "rank_test_"))]
    assert len(keys) == 2 * (3 + 2)  # per metric: mean, std, rank and both splits
    for key in keys:
        np.testing.assert_allclose(on_dask.cv_results_[key], sequential.cv_results_[key],
                                   rtol=1e-12, atol=0, err_msg=key)
    assert np.all(sequential.cv_results_["mean_test_recall"] > 0)
    assert on_dask.best_params_ == sequential.best_params_

    # The refitted best estimator pickles with its index and serves as the sequential one does.
    best = pickle.loads(pickle.dumps(on_dask.best_estimator_))
    users = sequential.best_estimator_.user_ids_
    np.testing.assert_array_equal(best.predict_topk(users, k=5),
                                  sequential.best_estimator_.predict_topk(users, k=5))


def test_estimators_fitted_on_workers_come_back_with_their_index(client, interactions):
    estimator, _, X, _ = _searches(interactions)["retriever"]
    estimator = clone(estimator).set_params(max_epochs=2)
    cv = UserHoldoutSplit(n_splits=2, random_state=0)
    local = cross_validate(estimator, X, cv=cv, scoring=SCORING, return_estimator=True)
    with joblib.parallel_config(backend="dask"):
        remote = cross_validate(estimator, X, cv=cv, scoring=SCORING, return_estimator=True,
                                n_jobs=-1)
    np.testing.assert_allclose(remote["test_recall"], local["test_recall"], rtol=1e-12, atol=0)
    for came_back, here in zip(remote["estimator"], local["estimator"]):
        again = pickle.loads(pickle.dumps(came_back))
        assert isinstance(again.index_, HNSWIndex)
        assert again.index_.ef_search_ == here.index_.ef_search_
        users = here.user_ids_
        np.testing.assert_array_equal(again.predict_topk(users, k=5), here.predict_topk(users, k=5))
        np.testing.assert_array_equal(again.kneighbors(users, 5)[1], here.kneighbors(users, 5)[1])
