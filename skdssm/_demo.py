"""``python -m skdssm demo``: train a DSSMRecommender on MovieLens and show what it learned."""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split

from .datasets import fetch_movielens
from .estimators import DSSMRecommender

FEATURES = ["user_id", "item_id", "gender", "age", "occupation", "genres"]


def movielens_split(frame: pd.DataFrame, random_state: int = 0):
    """The project's protocol: label = rating >= 4, rows sorted by user, time, item, split 80/10/10."""
    frame = frame.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)
    X = frame[[c for c in FEATURES if c in frame.columns]]
    y = (frame["rating"] >= 4).astype(int).to_numpy()
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.2, random_state=random_state)
    X_valid, X_test, y_valid, y_test = train_test_split(X_rest, y_rest, test_size=0.5,
                                                        random_state=random_state)
    return frame, (X_train, y_train), (X_valid, y_valid), (X_test, y_test)


def _print_recommendations(model, frame, X_train, y_train, users, titles, k=10) -> None:
    recommended = model.predict_topk(users, k=k)
    liked = X_train.loc[y_train == 1, ["user_id", "item_id"]]
    ratings = frame.loc[liked.index, "rating"]
    for user, items in zip(users, recommended):
        favourites = liked[(liked["user_id"] == user)].assign(rating=ratings)
        favourites = favourites.sort_values("rating", ascending=False)["item_id"].head(5)
        print(f"\nUser {user}: rated highly (train)        | top-{k} recommended (unseen)")
        left = [titles.get(i, str(i)) for i in favourites]
        right = [titles.get(i, str(i)) for i in items]
        for row in range(k):
            a = left[row] if row < len(left) else ""
            print(f"  {a[:38]:38s} | {row + 1:2d}. {right[row][:48]}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m skdssm demo",
                                     description="Train a DSSMRecommender on MovieLens.")
    parser.add_argument("--data-home", default=None,
                        help="folder holding ml-100k/ etc. (default: $SKDSSM_DATA or ~/skdssm_data)")
    parser.add_argument("--dataset", default="100k", choices=["100k", "1m", "latest-small"])
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading")
    args = parser.parse_args(argv)

    data = fetch_movielens(args.dataset, data_home=args.data_home, download=not args.no_download)
    frame, (X_train, y_train), (X_valid, y_valid), (X_test, y_test) = movielens_split(
        data.frame, args.random_state)
    print(f"MovieLens-{args.dataset}: {len(frame):,} ratings, {frame['user_id'].nunique():,} users, "
          f"{frame['item_id'].nunique():,} items; features {list(X_train.columns)}")
    print(f"train {len(X_train):,} / valid {len(X_valid):,} / test {len(X_test):,} rows; "
          f"label = rating >= 4 ({y_train.mean():.1%} positive)\n")

    start = time.perf_counter()
    model = DSSMRecommender(verbose=1, random_state=args.random_state).fit(X_train, y_train)
    seconds = time.perf_counter() - start

    print(f"\nfit in {seconds:.0f} s, {len(model.history_)} epochs (early stopping on valid AUC)")
    for name, X, y in (("valid", X_valid, y_valid), ("test", X_test, y_test)):
        proba = model.predict_proba(X)[:, 1]
        print(f"{name:5s}  ROC AUC {roc_auc_score(y, proba):.4f}   accuracy "
              f"{accuracy_score(y, proba > 0.5):.4f}   log-loss {log_loss(y, proba):.4f}")

    titles = dict(zip(data["items"]["item_id"], data["items"]["title"]))
    users = np.asarray(model.user_ids_[:3])
    _print_recommendations(model, frame, X_train, y_train, users, titles)
