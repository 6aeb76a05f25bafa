"""Model selection through Ray's joblib backend: the same cv_results_ as a sequential search.

Skipped without ``ray`` (not part of any extra; see docs/scaling.md). Mirrors
tests/test_distributed_search.py on a local Ray runtime of two single-threaded workers.
"""

import joblib
import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV

import skdssm
from skdssm import TwoTowerRetriever
from skdssm.datasets import make_interactions
from skdssm.metrics import make_topk_scorer
from skdssm.model_selection import UserHoldoutSplit
from skdssm.neighbors import HNSWIndex

ray = pytest.importorskip("ray")
ray_joblib = pytest.importorskip("ray.util.joblib")

SMALL = dict(hidden_dims=(16, 8), embedding_dim=8, batch_size=64, lr=1e-2, early_stopping=False,
             random_state=0)
SCORING = {"recall": make_topk_scorer("recall", k=10), "ndcg": make_topk_scorer("ndcg", k=10)}


@ray.remote(num_cpus=1)
def _worker_state():
    return skdssm.__file__, torch.get_num_threads()


@pytest.fixture(scope="module")
def ray_runtime():
    """A local Ray runtime of two CPUs; torch on one thread here, as on its workers (Ray sets
    OMP_NUM_THREADS=1 for a one-CPU task), so float reductions run in the same order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_joblib.register_ray()
    try:
        yield
    finally:
        ray.shutdown()
        torch.set_num_threads(threads)


def test_grid_search_on_ray_matches_the_sequential_search(ray_runtime):
    assert ray.get(_worker_state.remote()) == (skdssm.__file__, 1)
    interactions = make_interactions(n_users=60, n_items=40, random_state=0).frame
    positives = interactions[interactions["label"] == 1].drop(columns=["label", "rating"])
    positives = positives.reset_index(drop=True)

    def search(n_jobs):
        return GridSearchCV(TwoTowerRetriever(index=HNSWIndex(M=8), **SMALL),
                            {"max_epochs": [1, 2]}, scoring=SCORING, refit="recall",
                            cv=UserHoldoutSplit(n_splits=2, random_state=0), n_jobs=n_jobs)

    sequential = search(n_jobs=1).fit(positives)
    with joblib.parallel_config(backend="ray"):
        on_ray = search(n_jobs=2).fit(positives)
    keys = [key for key in sequential.cv_results_
            if key.startswith(("mean_test_", "std_test_", "split", "rank_test_"))]
    assert len(keys) == 2 * (3 + 2)
    for key in keys:
        np.testing.assert_allclose(on_ray.cv_results_[key], sequential.cv_results_[key],
                                   rtol=1e-12, atol=0, err_msg=key)
    assert np.all(sequential.cv_results_["mean_test_recall"] > 0)
    users = sequential.best_estimator_.user_ids_
    np.testing.assert_array_equal(on_ray.best_estimator_.predict_topk(users, k=5),
                                  sequential.best_estimator_.predict_topk(users, k=5))
