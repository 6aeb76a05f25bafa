"""DSSMRecommender() with its defaults on the MovieLens protocol: test AUC, accuracy, log-loss, fit time.

Protocol (issue 3): label = rating >= 4; frame sorted by user, time, item; rows split 80/10/10 with
``train_test_split(random_state=0)``; features user_id, item_id, gender, age, occupation, genres.
The estimator sees only the 80% training rows (its own early-stopping split is taken from them).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_movielens_dssm.py --data-home ../shared/data --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time

from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from skdssm import DSSMRecommender
from skdssm._demo import movielens_split
from skdssm.datasets import fetch_movielens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--dataset", default="100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()

    frame = fetch_movielens(args.dataset, data_home=args.data_home, download=False).frame
    _, (X_train, y_train), _, (X_test, y_test) = movielens_split(frame, random_state=0)
    print(f"MovieLens-{args.dataset}: train {len(X_train):,} rows, test {len(X_test):,} rows")
    print("| seed | test ROC AUC | accuracy | log-loss | epochs | fit seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for seed in args.seeds:
        start = time.perf_counter()
        model = DSSMRecommender(random_state=seed).fit(X_train, y_train)
        seconds = time.perf_counter() - start
        proba = model.predict_proba(X_test)[:, 1]
        print(f"| {seed} | {roc_auc_score(y_test, proba):.4f} | "
              f"{accuracy_score(y_test, proba > 0.5):.4f} | {log_loss(y_test, proba):.4f} | "
              f"{len(model.history_)} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
