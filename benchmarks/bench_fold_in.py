"""Users served from their history at query time (``history=``) against the same users trained in.

MovieLens-100K, positives = rating >= 4, ``UserHoldoutSplit(test_size=0.2, min_interactions=5,
random_state=split_seed)`` (the split of ``sweep_retriever.py``). One test user in five (every
fifth of the sorted test users) is left out of fit entirely: the model is fitted on the other
users' training positives, and the left-out users are ranked with ``predict_topk(users_frame,
history=their training positives)``, the history items excluded. The same users' Recall@10 when
they are trained in (a model fitted on every training positive, same parameters and seed) and
under popularity are printed beside it, and the other test users' Recall@10 under both models
(trained in by both: the left-out model's deficit there is what fitting on fewer users costs).

Usage::

    python benchmarks/bench_fold_in.py --data-home ../shared/data [--split-seed 0] [--seeds 0 1 2] ['{}']
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from skdssm import TwoTowerRetriever
from skdssm.baselines import PopularityRecommender
from skdssm.metrics import recall_at_k

from sweep_retriever import load_split

USER_COLUMNS = ["user_id", "gender", "age", "occupation"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default="{}",
                        help="JSON object of TwoTowerRetriever parameters")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train, test, test_users = load_split(args.data_home, args.split_seed)
    left_out = test_users[::5]
    outside = train["user_id"].isin(left_out)
    history = train[outside]
    users = history.drop_duplicates("user_id").set_index("user_id").loc[left_out].reset_index()
    users = users[USER_COLUMNS]
    popular = PopularityRecommender().fit(train).predict_topk(left_out, k=10)
    print(f"{len(left_out)} left-out users with {len(history)} history rows; "
          f"popularity Recall@10 {recall_at_k(test, popular, users=left_out, k=10):.4f}")
    for seed in args.seeds:
        params = dict(json.loads(args.spec), random_state=seed)
        start = time.perf_counter()
        folded_model = TwoTowerRetriever(**params).fit(train[~outside])
        folded_seconds = time.perf_counter() - start
        start = time.perf_counter()
        trained_model = TwoTowerRetriever(**params).fit(train)
        trained_seconds = time.perf_counter() - start
        folded = folded_model.predict_topk(users, k=10, history=history)
        trained = trained_model.predict_topk(left_out, k=10)
        # The other test users are trained in by both models: the difference there is what
        # fitting on 20% fewer users costs, apart from serving from history=.
        both = np.setdiff1d(test_users, left_out)
        folded_both = recall_at_k(test, folded_model.predict_topk(both, k=10), users=both, k=10)
        trained_both = recall_at_k(test, trained_model.predict_topk(both, k=10), users=both, k=10)
        print(f"seed {seed}: served from history= Recall@10 "
              f"{recall_at_k(test, folded, users=left_out, k=10):.4f} (fit {folded_seconds:.0f} s)"
              f", trained in {recall_at_k(test, trained, users=left_out, k=10):.4f} "
              f"(fit {trained_seconds:.0f} s); the other {len(both)} test users: "
              f"{folded_both:.4f} with the left-out model, {trained_both:.4f} with the full one",
              flush=True)


if __name__ == "__main__":
    main()
