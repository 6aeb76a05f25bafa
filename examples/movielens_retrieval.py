"""
TwoTowerRetriever() on MovieLens, full ranking, against popularity, ALS and EASE
================================================================================

The retriever with its defaults. Protocol (issue 6): positives = rating >= 4; per user a random
20% of positives held out (users with >= 5 positives; ``UserHoldoutSplit(test_size=0.2,
min_interactions=5, random_state=0)``); every model ranks the whole catalogue, excluding the
user's training positives; metrics at k=10 are averaged over test users (Recall@10 = hits /
min(10, number held out for that user)).

References on the same split: popularity (:class:`skdssm.baselines.PopularityRecommender`),
implicit's ALS (when the ``implicit`` package is installed) and EASE (closed-form item-item
regression, written out below in numpy because no dependency provides it).

Usage::

    python examples/movielens_retrieval.py --data-home ../shared/data [--dataset 100k] [--seeds 0]
        [--split-seed 0]

Prints a table and saves ``examples/out/movielens_retrieval.png`` (Recall@k for k = 1..50;
``movielens_retrieval_split<N>.png`` for ``--split-seed N``). The defaults were tuned on split 0;
other split seeds check them on held-out sets they were not tuned on.

``--quick`` (about a minute) trains the retriever for 5 epochs instead of its default 50, so it
is under-trained and its row is not the measured result (that is in ``benchmarks/RESULTS.md``).
The documentation's gallery runs the quick mode (``SKDSSM_GALLERY=1``); ALS is skipped when
``implicit`` is not installed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from skdssm import TwoTowerRetriever
from skdssm.baselines import PopularityRecommender
from skdssm.datasets import fetch_movielens
from skdssm.metrics import hit_rate_at_k, ndcg_at_k, precision_at_k, recall_at_k
from skdssm.model_selection import UserHoldoutSplit
from skdssm.neighbors import exact_topk

FEATURES = ["user_id", "item_id", "gender", "age", "occupation", "genres", "timestamp"]
MAX_K = 50
QUICK_EPOCHS = 5
# sphinx-gallery runs the examples without arguments and without __file__; docs/conf.py sets
# SKDSSM_GALLERY=1 so that they take the quick path and find the shared data beside the checkout.
GALLERY = os.environ.get("SKDSSM_GALLERY") == "1"
HERE = Path(globals().get("__file__", sys.argv[0])).resolve().parent


def default_data_home() -> str | None:
    """None (fetch_movielens then reads $SKDSSM_DATA or ~/skdssm_data); in the gallery, when
    $SKDSSM_DATA is unset, ../shared/data beside the checkout."""
    if GALLERY and not os.environ.get("SKDSSM_DATA"):
        return str(HERE.parent.parent / "shared" / "data")
    return None


def interaction_matrix(train: pd.DataFrame, users: pd.Index, items: pd.Index) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(len(train), dtype=np.float32),
                          (users.get_indexer(train["user_id"]), items.get_indexer(train["item_id"]))),
                         shape=(len(users), len(items)))


def ease_topk(train: pd.DataFrame, test_users: np.ndarray, k: int, l2: float = 500.0):
    """EASE (Steck 2019): B = I - P diagMat(1 / diag(P)), P = (X^T X + l2 I)^-1, scores = X B."""
    users, items = pd.Index(np.unique(train["user_id"])), pd.Index(np.unique(train["item_id"]))
    X = interaction_matrix(train, users, items)
    gram = (X.T @ X).toarray() + l2 * np.eye(len(items), dtype=np.float32)
    P = np.linalg.inv(gram)
    B = -P / np.diag(P)
    np.fill_diagonal(B, 0.0)
    rows = X[users.get_indexer(test_users)]
    _, top = exact_topk(rows.toarray(), B.T, k, exclude=rows)   # scores = rows @ B
    return items.to_numpy()[top]


def als_topk(train: pd.DataFrame, test_users: np.ndarray, k: int, seed: int):
    """implicit's ALS: 64 factors, regularization 10, alpha 1, 15 iterations, the best of a
    36-point grid (factors 32-200, regularization 0.01-100, alpha 0.5-20) on a validation holdout
    carved from the training positives (never the test rows)."""
    from implicit.als import AlternatingLeastSquares

    users, items = pd.Index(np.unique(train["user_id"])), pd.Index(np.unique(train["item_id"]))
    X = interaction_matrix(train, users, items)
    model = AlternatingLeastSquares(factors=64, regularization=10.0, iterations=15, alpha=1.0,
                                    random_state=seed)
    model.fit(X, show_progress=False)
    positions = users.get_indexer(test_users)
    _, top = exact_topk(model.user_factors[positions], model.item_factors, k, exclude=X[positions])
    return items.to_numpy()[top]


def evaluate(name, top, test, users, seconds, table, predictions):
    table.append({"model": name,
                  "Recall@10": recall_at_k(test, top, users=users, k=10),
                  "Precision@10": precision_at_k(test, top, users=users, k=10),
                  "HitRate@10": hit_rate_at_k(test, top, users=users, k=10),
                  "NDCG@10": ndcg_at_k(test, top, users=users, k=10),
                  "Recall@50": recall_at_k(test, top, users=users, k=50),
                  "fit seconds": seconds})
    predictions[name] = top
    print(pd.DataFrame(table[-1:]).to_string(index=False, header=len(table) == 1,
                                             float_format="%.4f"), flush=True)


def markdown(table: pd.DataFrame) -> str:
    cells = table.map(lambda v: f"{v:.4f}" if isinstance(v, float) else str(v))
    lines = [list(table.columns), ["---"] * table.shape[1], *cells.to_numpy().tolist()]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().partition("\n")[0])
    parser.add_argument("--data-home", default=default_data_home(),
                        help="folder holding ml-100k/ (default: $SKDSSM_DATA, else ~/skdssm_data, "
                             "downloading on first use)")
    parser.add_argument("--dataset", default="100k", choices=["100k", "1m", "latest-small"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="random_state of TwoTowerRetriever")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="random_state of the UserHoldoutSplit (the defaults were tuned on 0)")
    parser.add_argument("--quick", action="store_true", default=GALLERY,
                        help=f"train the retriever for {QUICK_EPOCHS} epochs instead of 50 "
                             "(default when SKDSSM_GALLERY=1)")
    parser.add_argument("--out", default=str(HERE / "out"))
    args = parser.parse_args()
    retriever_params = {"max_epochs": QUICK_EPOCHS} if args.quick else {}
    if args.quick:
        print(f"--quick: TwoTowerRetriever(max_epochs={QUICK_EPOCHS}), under-trained\n")

    frame = fetch_movielens(args.dataset, data_home=args.data_home).frame
    positives = frame[frame["rating"] >= 4].reset_index(drop=True)
    positives = positives[[c for c in FEATURES if c in positives.columns]]
    train_rows, test_rows = next(UserHoldoutSplit(test_size=0.2, min_interactions=5,
                                                  random_state=args.split_seed).split(positives))
    train, test = positives.iloc[train_rows], positives.iloc[test_rows]
    users = np.sort(test["user_id"].unique())
    print(f"MovieLens-{args.dataset}, split seed {args.split_seed}: {len(train):,} training "
          f"positives, {len(test):,} held out for {len(users):,} users; full ranking of "
          f"{train['item_id'].nunique():,} items\n")

    table, predictions = [], {}
    start = time.perf_counter()
    popularity = PopularityRecommender().fit(train)
    evaluate("popularity", popularity.predict_topk(users, k=MAX_K), test, users,
             time.perf_counter() - start, table, predictions)
    try:
        start = time.perf_counter()
        top = als_topk(train, users, MAX_K, seed=0)
        evaluate("ALS (implicit)", top, test, users, time.perf_counter() - start, table,
                 predictions)
    except ImportError:
        print("(implicit is not installed: ALS skipped)")
    start = time.perf_counter()
    top = ease_topk(train, users, MAX_K)
    evaluate("EASE (l2=500)", top, test, users, time.perf_counter() - start, table,
             predictions)
    for seed in args.seeds:
        start = time.perf_counter()
        model = TwoTowerRetriever(random_state=seed, **retriever_params).fit(train)
        seconds = time.perf_counter() - start
        arguments = ", ".join(f"{key}={value}" for key, value in retriever_params.items())
        evaluate(f"TwoTowerRetriever({arguments}) seed {seed}", model.predict_topk(users, k=MAX_K),
                 test, users, seconds, table, predictions)

    print("\n" + markdown(pd.DataFrame(table)))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skdssm.plotting import MetricAtKDisplay

    fig, ax = plt.subplots(figsize=(7, 4.5))
    # From the recommendations: ALS and EASE are not skdssm estimators.
    MetricAtKDisplay.from_predictions(test, predictions, users=users, metric="recall", k=MAX_K,
                                      ax=ax)
    ax.set_title(f"MovieLens-{args.dataset}, full ranking")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = ("movielens_retrieval.png" if args.split_seed == 0
            else f"movielens_retrieval_split{args.split_seed}.png")
    fig.savefig(out / name, dpi=120, bbox_inches="tight")
    print(f"\nsaved {out / name}")


if __name__ == "__main__":
    main()
