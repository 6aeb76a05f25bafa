"""Serving-time checks of a fitted TwoTowerRetriever on the issue-6 MovieLens-100K split.

Two questions about where the default retriever's remaining gap to ALS / EASE lies, answered
without retraining (benchmarks/RESULTS.md section 4):

* popularity: is the logQ-corrected model under- or over-recommending popular items? Each
  item's score gets ``beta * log(1 + training count)`` added (as an extra embedding dimension,
  so the exact search is unchanged) for a grid of beta. The best beta is chosen on the test
  users themselves, so its gain is an upper bound, not a usable result.
* dropout averaging: does the mean embedding over ``K`` dropout masks (Monte-Carlo dropout, a
  free ensemble) rank better than the deterministic network?
* which users: Recall@10 of the retriever, ALS (if ``implicit`` is installed) and EASE, as in
  ``examples/movielens_retrieval.py``, per quintile of the users' number of training positives.

Usage::

    python benchmarks/serving_diagnostics.py --data-home ../shared/data [--split-seed 0] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from skdssm import TwoTowerRetriever
from skdssm.metrics import recall_at_k
from skdssm.neighbors import exact_topk
from sweep_retriever import load_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from movielens_retrieval import als_topk, ease_topk  # noqa: E402

BETAS = (-0.02, -0.01, 0.01, 0.02, 0.04, 0.06, 0.08, 0.12)
MC_SAMPLES = (8, 32, 128)


def dropout_embeddings(tower, inputs: dict, n_samples: int) -> np.ndarray:
    """Mean tower output over ``n_samples`` forward passes with dropout active."""
    tower.train()
    with torch.no_grad():
        inputs = {key: torch.as_tensor(value) for key, value in inputs.items()}
        mean = torch.stack([tower(inputs) for _ in range(n_samples)]).mean(0)
    tower.eval()
    return mean.numpy()


def by_history(train, test, users, retriever_top, seed: int) -> None:
    """Recall@10 per quintile of the test users' number of training positives."""
    tops = {"TwoTowerRetriever()": retriever_top, "EASE": ease_topk(train, users, 10)}
    try:
        tops["ALS"] = als_topk(train, users, 10, seed)
    except ImportError:
        print("(implicit is not installed: ALS skipped)")
    n_train = train.groupby("user_id").size().reindex(users)
    quintile = pd.qcut(n_train.to_numpy(), 5, precision=0)
    table = pd.DataFrame({
        name: [recall_at_k(test, top[quintile == bucket], users=users[quintile == bucket], k=10)
               for bucket in quintile.categories]
        for name, top in tops.items()
    }, index=[f"{int(b.left) + 1}-{int(b.right)} training positives" for b in quintile.categories])
    table["users"] = pd.Series(quintile).value_counts(sort=False).to_numpy()
    print(table.round(4).to_string(), flush=True)
    print("distinct items in the top-10 lists: "
          + ", ".join(f"{name} {len(np.unique(top))}" for name, top in tops.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="random_state of the retriever")
    args = parser.parse_args()

    train, test, users = load_split(args.data_home, args.split_seed)
    model = TwoTowerRetriever(random_state=args.seed).fit(train)
    seen = model.seen_items_[pd.Index(model.user_ids_).get_indexer(users)]
    item_ids = np.asarray(model.item_ids_)

    def report(label, queries, items):
        _, top = exact_topk(queries, items, 50, exclude=seen)
        top = item_ids[top]
        print(f"{label}: Recall@10 {recall_at_k(test, top, users=users, k=10):.4f} "
              f"Recall@50 {recall_at_k(test, top, users=users, k=50):.4f}", flush=True)

    queries, items = model.transform_users(users), model.item_embeddings_
    report(f"defaults, split {args.split_seed}, seed {args.seed}", queries, items)
    by_history(train, test, users, model.predict_topk(users, k=10), args.seed)
    counts = train[model.item_col].value_counts().reindex(item_ids, fill_value=0).to_numpy()
    log_counts = np.log1p(counts).astype(np.float32)[:, None]
    ones = np.ones((len(queries), 1), dtype=np.float32)
    for beta in BETAS:
        report(f"  + {beta:g} * log(1 + count)", np.hstack([queries, ones]),
               np.hstack([items, beta * log_counts]))

    module = model.net_.module_
    torch.manual_seed(args.seed)
    user_inputs = model._inputs_for("user", users)[0]
    for n_samples in MC_SAMPLES:
        report(f"  mean over {n_samples} dropout masks",
               dropout_embeddings(module.user_tower, user_inputs, n_samples),
               dropout_embeddings(module.item_tower, model.item_inputs_, n_samples))


if __name__ == "__main__":
    main()
