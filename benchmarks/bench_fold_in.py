"""Users served from their history at query time (``history=``) against the same users trained in.

MovieLens-100K, positives = rating >= 4, ``UserHoldoutSplit(test_size=0.2, min_interactions=5,
random_state=split_seed)`` (the split of ``sweep_retriever.py``). One test user in five (every
fifth of the sorted test users) is left out of fit entirely: the model is fitted on the other
users' training positives, and the left-out users are ranked with ``predict_topk(users_frame,
history=their training positives)``, the history items excluded. The same users' Recall@10 when
they are trained in (a model fitted on every training positive, same parameters and seed) and
under popularity are printed beside it, and the other test users' Recall@10 under both models
(trained in by both: the left-out model's deficit there is what fitting on fewer users costs).

``--folds 0 1 2 3 4`` repeats this for each fifth of the test users in turn (fold ``k`` leaves out
``test_users[k::5]``; the default, fold 0, is every fifth starting with the first), one left-out
model per fold against the one trained-in model of the seed, and then prints the Recall@10 of
every left-out user pooled over the folds: each fold is the protocol above, and together they
serve every test user once from ``history=``, so the pooled gap does not depend on which fifth
was chosen and is measured on five times as many users.

Usage::

    python benchmarks/bench_fold_in.py --data-home ../shared/data [--split-seed 0] [--seeds 0 1 2] \
        [--folds 0 1 2 3 4] ['{}']
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
    parser.add_argument("--folds", type=int, nargs="+", default=[0], choices=range(5),
                        help="which fifths of the test users to leave out, one at a time")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train, test, test_users = load_split(args.data_home, args.split_seed)
    popularity = PopularityRecommender().fit(train)
    folds = []
    for fold in args.folds:
        left_out = test_users[fold::5]
        outside = train["user_id"].isin(left_out)
        history = train[outside]
        users = history.drop_duplicates("user_id").set_index("user_id").loc[left_out]
        users = users.reset_index()[USER_COLUMNS]
        popular = popularity.predict_topk(left_out, k=10)
        print(f"fold {fold}: {len(left_out)} left-out users with {len(history)} history rows; "
              f"popularity Recall@10 {recall_at_k(test, popular, users=left_out, k=10):.4f}")
        folds.append((fold, left_out, outside, history, users))
    for seed in args.seeds:
        params = dict(json.loads(args.spec), random_state=seed)
        start = time.perf_counter()
        trained_model = TwoTowerRetriever(**params).fit(train)
        trained_seconds = time.perf_counter() - start
        # Test users are sorted, so a fold's rows are those of its users in this one ranking.
        trained_top = trained_model.predict_topk(test_users, k=10)
        served_all, trained_all, users_all = [], [], []
        for fold, left_out, outside, history, users in folds:
            start = time.perf_counter()
            folded_model = TwoTowerRetriever(**params).fit(train[~outside])
            folded_seconds = time.perf_counter() - start
            folded = folded_model.predict_topk(users, k=10, history=history)
            inside = np.isin(test_users, left_out)
            trained = trained_top[inside]
            served_all.append(folded)
            trained_all.append(trained)
            users_all.append(left_out)
            # The other test users are trained in by both models: the difference there is what
            # fitting on 20% fewer users costs, apart from serving from history=.
            both = np.setdiff1d(test_users, left_out)
            folded_both = recall_at_k(test, folded_model.predict_topk(both, k=10), users=both,
                                      k=10)
            trained_both = recall_at_k(test, trained_top[~inside], users=both, k=10)
            print(f"seed {seed} fold {fold}: served from history= Recall@10 "
                  f"{recall_at_k(test, folded, users=left_out, k=10):.4f} (fit "
                  f"{folded_seconds:.0f} s), trained in "
                  f"{recall_at_k(test, trained, users=left_out, k=10):.4f} (fit "
                  f"{trained_seconds:.0f} s); the other {len(both)} test users: "
                  f"{folded_both:.4f} with the left-out model, {trained_both:.4f} with the full one",
                  flush=True)
        if len(folds) > 1:
            users_all = np.concatenate(users_all)
            served = recall_at_k(test, np.vstack(served_all), users=users_all, k=10)
            trained = recall_at_k(test, np.vstack(trained_all), users=users_all, k=10)
            print(f"seed {seed}, folds {' '.join(str(f[0]) for f in folds)} pooled "
                  f"({len(users_all)} users): served from history= Recall@10 {served:.4f}, "
                  f"trained in {trained:.4f}, gap {trained - served:.4f}", flush=True)


if __name__ == "__main__":
    main()
