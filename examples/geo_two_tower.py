"""
A content-only two-tower model over OSM-like geo features
=========================================================

Restaurants are described by heavy-tailed counts, lengths and areas of POIs, roads, buildings...
within 100/200/500 m (``make_geo_interactions``). The pipeline scales them with sklearn's own
``StandardScaler`` inside a ``ColumnTransformer``; the user tower is the profile of the user (mean
of the scaled features of the items they rated positively), the item tower sees only the item's
features (``item_id_embedding=False``), ratings are centered (rating - 2: ratings 1-2 become
explicit negatives for BCE and are dropped for BPR). BCE and BPR are compared with a popularity
baseline and with the same BCE model fed unscaled features, by full-ranking Recall / Precision /
HitRate / NDCG@10 on held-out positives (rating >= 4).

Usage::

    python examples/geo_two_tower.py [--n-users 1000] [--n-items 800] [--random-state 0]

``--quick`` (well under a minute) uses 500 users, 400 restaurants and at most 20 epochs per
model. The documentation's gallery runs the quick mode (``SKDSSM_GALLERY=1``).

Prints a table and saves ``examples/out/geo_two_tower.png`` (Recall@k and NDCG@k for k = 1..20,
drawn by ``skdssm.plotting.MetricAtKDisplay``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import StandardScaler

from skdssm import TwoTowerRetriever
from skdssm.baselines import PopularityRecommender
from skdssm.datasets import make_geo_interactions
from skdssm.metrics import hit_rate_at_k, ndcg_at_k, precision_at_k, recall_at_k
from skdssm.model_selection import UserHoldoutSplit
from skdssm.pipeline import make_pipeline

METRICS = {"Recall@10": recall_at_k, "Precision@10": precision_at_k,
           "HitRate@10": hit_rate_at_k, "NDCG@10": ndcg_at_k}
FULL = {"n_users": 1000, "n_items": 800, "max_epochs": 40}
QUICK = {"n_users": 500, "n_items": 400, "max_epochs": 20}
# sphinx-gallery runs the examples without arguments and without __file__; docs/conf.py sets
# SKDSSM_GALLERY=1 so that they take the quick path.
GALLERY = os.environ.get("SKDSSM_GALLERY") == "1"
HERE = Path(globals().get("__file__", sys.argv[0])).resolve().parent


def retriever(loss: str, seed: int, max_epochs: int = 40) -> TwoTowerRetriever:
    return TwoTowerRetriever(user_representation="profile", item_id_embedding=False,
                             rating_transform="center", loss=loss, negative_sampler="uniform",
                             hidden_dims=(64, 32), embedding_dim=16,
                             temperature=0.1, lr=3e-3, max_epochs=max_epochs, early_stopping=True,
                             random_state=seed)


def scaled(model) -> object:
    geo = ColumnTransformer([("geo", StandardScaler(), make_column_list)],
                            remainder="passthrough", verbose_feature_names_out=False)
    return make_pipeline(geo.set_output(transform="pandas"), model)


def make_column_list(frame: pd.DataFrame) -> list:
    """The geo columns: every float feature of the item table."""
    return [c for c in frame.columns if c not in ("user_id", "item_id", "timestamp")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().partition("\n")[0])
    parser.add_argument("--n-users", type=int, default=None,
                        help=f"default {FULL['n_users']} ({QUICK['n_users']} with --quick)")
    parser.add_argument("--n-items", type=int, default=None,
                        help=f"default {FULL['n_items']} ({QUICK['n_items']} with --quick)")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--quick", action="store_true", default=GALLERY,
                        help=f"at most {QUICK['max_epochs']} epochs instead of "
                             f"{FULL['max_epochs']}, smaller data (default when SKDSSM_GALLERY=1)")
    parser.add_argument("--out", default=str(HERE / "out"))
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    n_users, n_items = args.n_users or sizes["n_users"], args.n_items or sizes["n_items"]
    max_epochs = sizes["max_epochs"]
    if args.quick:
        print(f"--quick: n_users={n_users}, n_items={n_items}, max_epochs={max_epochs}\n")

    data = make_geo_interactions(n_users=n_users, n_items=n_items, random_state=args.random_state)
    frame = data.frame
    train_rows, test_rows = next(UserHoldoutSplit(test_size=0.2, random_state=0).split(frame))
    train, test = frame.iloc[train_rows], frame.iloc[test_rows]
    test = test[test["rating"] >= 4]
    users = np.sort(test["user_id"].unique())
    X_train, ratings = train.drop(columns="rating"), train["rating"].to_numpy()
    print(f"{len(train):,} training ratings, {len(test):,} held-out positives of {len(users):,} "
          f"users; {frame['item_id'].nunique():,} restaurants, "
          f"{len(make_column_list(X_train))} geo features\n")

    models = {
        "popularity": PopularityRecommender(),
        "BCE, scaled": scaled(retriever("bce", args.random_state, max_epochs)),
        "BPR, scaled": scaled(retriever("bpr", args.random_state, max_epochs)),
        "BCE, unscaled": retriever("bce", args.random_state, max_epochs),
    }
    rows = []
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(X_train, ratings)
        seconds = time.perf_counter() - start
        top = model.predict_topk(users, k=10)
        rows.append({"model": name, **{metric: function(test, top, users=users, k=10)
                                       for metric, function in METRICS.items()},
                     "fit seconds": seconds})
        print(f"{name}: Recall@10 {rows[-1]['Recall@10']:.4f} ({seconds:.1f} s)", flush=True)

    table = pd.DataFrame(rows).set_index("model")
    print("\n" + table.to_string(float_format="%.4f"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skdssm.plotting import MetricAtKDisplay

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric in zip(axes, ("recall", "ndcg")):
        MetricAtKDisplay.from_estimator(models, test, users=users, metric=metric, k=20, ax=ax)
    fig.suptitle("Geo two-tower, full ranking, held-out positives")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "geo_two_tower.png", dpi=120, bbox_inches="tight")
    print(f"\nsaved {out / 'geo_two_tower.png'}")


if __name__ == "__main__":
    main()
