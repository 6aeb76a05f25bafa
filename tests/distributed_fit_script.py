"""One rank of a data-parallel fit, launched by tests/test_distributed_training.py through
``python -m torch.distributed.run --standalone --nproc_per_node=2``.

Every rank fits both estimators with ``distributed=True`` on the same small synthetic frame and
writes what the test compares across ranks (weights, item embeddings, top-k lists, histories,
test Recall@10 and the number of rows the rank trained on per epoch) to ``<out>/rank<r>.npz``. Run without a launcher (``--single``) it fits the same
models with ``distributed=False`` and writes ``<out>/single.npz``: the one-process reference.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from skdssm import DSSMRecommender, TwoTowerRetriever
from skdssm.datasets import make_interactions
from skdssm.metrics import make_topk_scorer
from skdssm.model_selection import UserHoldoutSplit

RETRIEVER = dict(hidden_dims=(32, 16), embedding_dim=16, batch_size=128, lr=1e-2, max_epochs=6,
                 early_stopping=True, validation_fraction=0.1, n_iter_no_change=3,
                 negative_sampler="mixed", index="exact")
DSSM = dict(hidden_dims=(32, 16), embedding_dim=16, batch_size=128, lr=1e-2, max_epochs=4,
            early_stopping=True, n_iter_no_change=2, index="exact")


def frames():
    frame = make_interactions(n_users=300, n_items=120, interactions_per_user=30,
                              random_state=0).frame
    positives = frame[frame["label"] == 1].drop(columns=["label", "rating"])
    train, test = next(UserHoldoutSplit(test_size=0.2, random_state=0).split(positives))
    return frame, positives.iloc[train], positives.iloc[test]


def flat_weights(model) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in model.net_.module_.parameters()]).numpy()


def fit_all(distributed: bool, seed: int) -> dict:
    torch.set_num_threads(1)
    frame, train, test = frames()
    retriever = TwoTowerRetriever(distributed=distributed, random_state=seed, **RETRIEVER)
    retriever.fit(train)
    pairs = frame.drop(columns=["label", "rating", "timestamp"])
    dssm = DSSMRecommender(distributed=distributed, random_state=seed, **DSSM)
    dssm.fit(pairs, frame["label"])
    users = np.unique(test["user_id"])
    return {
        "retriever_weights": flat_weights(retriever),
        "retriever_items": retriever.item_embeddings_,
        "retriever_topk": retriever.predict_topk(users, k=10),
        "retriever_recall": make_topk_scorer("recall", k=10)(retriever, test),
        "retriever_train_loss": np.array(retriever.history_[:, "train_loss"]),
        "retriever_valid_recall": np.array(retriever.history_[:, "valid_recall_at_10"]),
        "retriever_best_epoch": retriever.best_epoch_,
        "retriever_rows_per_epoch": sum(retriever.history_[0, "batches", :, "train_batch_size"]),
        "dssm_weights": flat_weights(dssm),
        "dssm_items": dssm.item_embeddings_,
        "dssm_topk": dssm.predict_topk(users, k=10),
        "dssm_valid_auc": np.array(dssm.history_[:, "valid_auc"]),
        "dssm_best_epoch": dssm.best_epoch_,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder the results are written to")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--single", action="store_true", help="one process, distributed=False")
    args = parser.parse_args()
    name = "single" if args.single else f"rank{os.environ['RANK']}"
    np.savez(os.path.join(args.out, f"{name}.npz"), **fit_all(not args.single, args.seed))


if __name__ == "__main__":
    main()
