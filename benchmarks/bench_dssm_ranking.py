"""DSSMRecommender on MovieLens-100K: ROC AUC on labelled pairs and Recall@10 over the whole catalogue.

Two protocols, both with the features user_id, item_id, gender, age, occupation, genres:

- **C** (labelled pairs): label = rating >= 4; rows sorted by user, time, item; split 80/10/10 with
  ``train_test_split(random_state=split)``; the model sees the 80% training rows; test ROC AUC,
  accuracy and log-loss on the last 10%.
- **R-labelled** (ranking): per user with >= 5 positives (rating >= 4), a random 20% of the
  positives is held out as test (``user_holdout_rows``, ``random_state=split``); the model is fit on
  every other rating row, liked and disliked, with y = rating >= 4; every item is ranked for each
  test user, excluding every item the user rated in fit (``exclude_seen=True``); Recall@10 =
  hits / min(10, held out), NDCG@10 too. ``PopularityRecommender`` on the same fit rows (counting
  positive rows) is the reference.

Usage (``--set`` overrides DSSMRecommender parameters, JSON values)::

    OMP_NUM_THREADS=1 python benchmarks/bench_dssm_ranking.py --data-home ../shared/data \\
        --seeds 0 --splits 0 --set ranking_weight=0
"""

from __future__ import annotations

import argparse
import json
import time

from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from skdssm import DSSMRecommender
from skdssm._demo import movielens_split, ranking_split
from skdssm.baselines import PopularityRecommender
from skdssm.datasets import fetch_movielens
from skdssm.metrics import ndcg_at_k, recall_at_k


def ranking_scores(model, X, test, k=10):
    users = test["user_id"].unique()
    top = model.predict_topk(users, k=k)
    return (recall_at_k(test, top, users=users, k=k), ndcg_at_k(test, top, users=users, k=k))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="model random_state")
    parser.add_argument("--splits", type=int, nargs="+", default=[0], help="split random_state")
    parser.add_argument("--protocols", nargs="+", default=["C", "R"], choices=["C", "R"])
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=JSON",
                        help="DSSMRecommender parameters, e.g. ranking_weight=0 max_epochs=10")
    parser.add_argument("--popularity", action="store_true", help="also score popularity on R")
    args = parser.parse_args()
    params = {name: json.loads(value) for name, value in (s.split("=", 1) for s in args.set)}
    for name in ("hidden_dims",):
        if isinstance(params.get(name), list):
            params[name] = tuple(params[name])

    frame = fetch_movielens("100k", data_home=args.data_home, download=False).frame
    print(f"DSSMRecommender({', '.join(f'{k}={v!r}' for k, v in params.items())})")
    print("| protocol | split | seed | test ROC AUC | accuracy | log-loss | Recall@10 | NDCG@10 "
          "| epochs | fit s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for split in args.splits:
        if "C" in args.protocols:
            _, (X_train, y_train), _, (X_test, y_test) = movielens_split(frame, random_state=split)
            for seed in args.seeds:
                start = time.perf_counter()
                model = DSSMRecommender(random_state=seed, **params).fit(X_train, y_train)
                seconds = time.perf_counter() - start
                proba = model.predict_proba(X_test)[:, 1]
                print(f"| C | {split} | {seed} | {roc_auc_score(y_test, proba):.4f} | "
                      f"{accuracy_score(y_test, proba > 0.5):.4f} | {log_loss(y_test, proba):.4f} "
                      f"| | | {len(model.history_)} | {seconds:.0f} |", flush=True)
        if "R" in args.protocols:
            X, y, test = ranking_split(frame, split)
            if args.popularity:
                recall, ndcg = ranking_scores(PopularityRecommender().fit(X, y), X, test)
                print(f"| R popularity | {split} | | | | | {recall:.4f} | {ndcg:.4f} | | |")
            for seed in args.seeds:
                start = time.perf_counter()
                model = DSSMRecommender(random_state=seed, **params).fit(X, y)
                seconds = time.perf_counter() - start
                recall, ndcg = ranking_scores(model, X, test)
                print(f"| R | {split} | {seed} | | | | {recall:.4f} | {ndcg:.4f} | "
                      f"{len(model.history_)} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
