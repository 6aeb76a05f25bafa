"""A fitted model serves many threads at once, and fits in threads do not share randomness."""

import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from joblib import parallel_backend
from sklearn.model_selection import GridSearchCV
from skorch.callbacks import Callback

from skdssm import DSSMRecommender, TwoTowerRetriever
from skdssm.datasets import make_interactions
from skdssm.neighbors import HNSWIndex
from skdssm.nn import SequenceEncoder, Tower, training_generator
from skdssm._features import TowerSchema

FAST = dict(hidden_dims=(32, 16), embedding_dim=8, max_epochs=3, batch_size=64, lr=1e-2,
            early_stopping=False, dropout=0.4, id_dropout=0.2)


@pytest.fixture(scope="module")
def positives():
    frame = make_interactions(n_users=80, n_items=60, interactions_per_user=20,
                              random_state=0).frame
    return frame[frame["label"] == 1].drop(columns=["label", "rating"])


def in_threads(calls, n_threads=4):
    """Run every ``call`` (no arguments) on a pool of ``n_threads``; their results in order."""
    with ThreadPoolExecutor(n_threads) as pool:
        return list(pool.map(lambda call: call(), calls))


class Lockstep(Callback):
    """Two fits wait for each other before every batch, so their training steps interleave."""

    def __init__(self, barrier):
        self.barrier = barrier

    def on_batch_begin(self, net, **kwargs):
        self.barrier.wait(timeout=60)


def test_fit_leaves_the_module_in_evaluation_mode_and_serving_keeps_it(positives):
    model = TwoTowerRetriever(random_state=0, **FAST).fit(positives)
    assert not any(module.training for module in model.net_.module_.modules())
    first = model.transform_users(model.user_ids_[:5])
    model.predict_topk(model.user_ids_[:5], k=3)
    assert not any(module.training for module in model.net_.module_.modules())
    np.testing.assert_array_equal(model.transform_users(model.user_ids_[:5]), first)


def test_a_model_pickled_in_training_mode_is_loaded_in_evaluation_mode(positives):
    model = TwoTowerRetriever(random_state=0, **FAST).fit(positives)
    expected = model.transform_users(model.user_ids_[:5])
    model.net_.module_.train()  # as fit left the towers before, and old pickles hold them
    restored = pickle.loads(pickle.dumps(model))
    assert not any(module.training for module in restored.net_.module_.modules())
    np.testing.assert_array_equal(restored.transform_users(restored.user_ids_[:5]), expected)


def test_hnsw_queries_from_threads_at_mixed_k_equal_the_serial_answers():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((3000, 16)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    queries = items[:200] + 0.3 * rng.standard_normal((200, 16)).astype(np.float32)
    index = HNSWIndex(M=4, ef_construction=20, target_recall=0.9, random_state=0).fit(items, k=5)
    ks = [5, 200, 20, 100] * 10
    serial = [index.query(queries, k) for k in ks]
    threaded = in_threads([lambda k=k: index.query(queries, k) for k in ks])
    for (dist, ind), (dist_t, ind_t) in zip(serial, threaded):
        np.testing.assert_array_equal(ind_t, ind)
        np.testing.assert_array_equal(dist_t, dist)


def test_predict_topk_from_threads_at_mixed_k_equals_the_serial_answers():
    frame = make_interactions(n_users=100, n_items=800, interactions_per_user=20,
                              random_state=0).frame
    positives = frame[frame["label"] == 1].drop(columns=["label", "rating"])
    model = TwoTowerRetriever(index=HNSWIndex(M=4, ef_construction=10, target_recall=0.8),
                              random_state=0, **FAST).fit(positives)
    users = model.user_ids_
    ks = [3, 100, 10, 50] * 5
    serial = [model.predict_topk(users, k=k, return_scores=True) for k in ks]
    threaded = in_threads([lambda k=k: model.predict_topk(users, k=k, return_scores=True)
                           for k in ks])
    for (ids, scores), (ids_t, scores_t) in zip(serial, threaded):
        np.testing.assert_array_equal(ids_t, ids)
        np.testing.assert_array_equal(scores_t, scores)


@pytest.mark.parametrize("params", [
    dict(),
    dict(user_representation="sequence", gradient_checkpointing=True),
], ids=["bag", "sequence-checkpointed"])
def test_same_seed_fits_in_threads_equal_a_fit_alone(positives, params):
    alone = TwoTowerRetriever(random_state=0, **FAST, **params).fit(positives)
    barrier = threading.Barrier(2)
    models = [TwoTowerRetriever(random_state=0, callbacks=[("lockstep", Lockstep(barrier))],
                                **FAST, **params) for _ in range(2)]
    in_threads([lambda model=model: model.fit(positives) for model in models], n_threads=2)
    for model in models:
        np.testing.assert_array_equal(model.item_embeddings_, alone.item_embeddings_)
        np.testing.assert_array_equal(model.transform_users(model.user_ids_),
                                      alone.transform_users(alone.user_ids_))


def test_grid_search_with_threads_equals_one_job():
    frame = make_interactions(n_users=40, n_items=30, interactions_per_user=12,
                              random_state=0).frame
    X, y = frame.drop(columns=["label", "rating", "timestamp"]), frame["label"]
    model = DSSMRecommender(hidden_dims=(16, 8), embedding_dim=8, max_epochs=3, batch_size=32,
                            early_stopping=False, random_state=0)
    grid = {"dropout": [0.2, 0.5], "id_dropout": [0.0, 0.3]}
    one_job = GridSearchCV(model, grid, cv=2, scoring="roc_auc", n_jobs=1).fit(X, y)
    with parallel_backend("threading", n_jobs=4):
        threads = GridSearchCV(model, grid, cv=2, scoring="roc_auc", n_jobs=4).fit(X, y)
    for key in ("split0_test_score", "split1_test_score"):
        np.testing.assert_array_equal(threads.cv_results_[key], one_job.cv_results_[key])


def test_checkpointed_recomputation_replays_the_training_generator():
    schema = TowerSchema(categorical={"item_id": 20}, ids=("item_id",))
    inputs = {"item:item_id": torch.arange(2, 18)}
    grads = []
    for checkpointed in (False, True):
        torch.manual_seed(0)
        tower = Tower(schema, "item", embedding_dim=8, hidden_dims=(16, 8), dropout=0.5,
                      id_dropout=0.3, gradient_checkpointing=checkpointed)
        with training_generator(torch.Generator().manual_seed(1)):
            tower(inputs).sum().backward()
        grads.append([p.grad.clone() for p in tower.parameters() if p.grad is not None])
    for plain, checkpointed in zip(*grads):
        torch.testing.assert_close(checkpointed, plain)


def test_attention_dropout_draws_from_the_training_generator():
    torch.manual_seed(0)
    encoder = SequenceEncoder(30, 6, 8, n_heads=2, dropout=0.3).train()
    codes = torch.tensor([[0, 0, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]])
    outputs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed + 100)  # the default generator must not matter
        with training_generator(torch.Generator().manual_seed(seed)):
            outputs.append(encoder(codes))
    torch.testing.assert_close(outputs[0], outputs[1])
    assert not torch.allclose(outputs[0], outputs[2])
    # With (almost) no dropout the training path computes torch's attention.
    for attention in encoder.attention:
        attention.dropout = 1e-12
    trained = encoder(codes)
    torch.testing.assert_close(trained, encoder.eval()(codes), atol=1e-5, rtol=1e-5)
