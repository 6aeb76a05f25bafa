"""``python -m skdssm demo``: train a DSSMRecommender on MovieLens and show what it learned.

One fit on a user holdout, judged twice on the held-out ratings: as a classifier of rated
pairs (ROC AUC, accuracy, log-loss) and as a recommender ranking the whole catalogue
(Recall@10, next to the popularity baseline).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split

from .baselines import PopularityRecommender
from .datasets import fetch_movielens
from .estimators import DSSMRecommender
from .metrics import make_topk_scorer
from .model_selection import UserHoldoutSplit, user_holdout_rows

FEATURES = ["user_id", "item_id", "gender", "age", "occupation", "genres"]
# An epoch over MovieLens-100K takes about 5 s on one thread, so 8 keep the first command near a
# minute; what the full default fit adds is in benchmarks/RESULTS.md section 8.
DEMO_EPOCHS = 8


def movielens_split(frame: pd.DataFrame, random_state: int = 0):
    """The project's protocol: label = rating >= 4, rows sorted by user, time, item, split 80/10/10."""
    frame = frame.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)
    X = frame[[c for c in FEATURES if c in frame.columns]]
    y = (frame["rating"] >= 4).astype(int).to_numpy()
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.2, random_state=random_state)
    X_valid, X_test, y_valid, y_test = train_test_split(X_rest, y_rest, test_size=0.5,
                                                        random_state=random_state)
    return frame, (X_train, y_train), (X_valid, y_valid), (X_test, y_test)


def user_holdout(frame: pd.DataFrame, random_state: int = 0):
    """Label = rating >= 4; a random 20% of each user's ratings (users with >= 5) held out."""
    X = frame[[c for c in FEATURES if c in frame.columns]]
    y = (frame["rating"] >= 4).astype(int).to_numpy()
    train, test = next(UserHoldoutSplit(test_size=0.2, random_state=random_state).split(X))
    return (X.iloc[train], y[train]), (X.iloc[test], y[test])


def ranking_split(frame: pd.DataFrame, random_state: int = 0):
    """The ranking protocol on labelled data: per user with >= 5 positives (rating >= 4), a random
    20% of the positives held out; fit on every other rating row with y = rating >= 4. Returns
    (X_fit, y_fit, held-out positive (user, item) rows whose item is in the fit rows)."""
    frame = frame.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)
    positive = np.flatnonzero(frame["rating"].to_numpy() >= 4)
    codes = pd.factorize(frame["user_id"].to_numpy()[positive])[0]
    _, held = user_holdout_rows(codes, 0.2, np.random.default_rng(random_state), 5)
    test_rows = positive[held]
    fit = frame.drop(index=test_rows)
    test = frame.loc[test_rows, ["user_id", "item_id"]]
    test = test[test["item_id"].isin(fit["item_id"])]
    X = fit[[c for c in FEATURES if c in fit.columns]]
    return X, (fit["rating"] >= 4).astype(int).to_numpy(), test


def _print_recommendations(model, frame, X_train, y_train, users, titles, k=10) -> None:
    """Each user's best-rated training films next to their top-k, with training rating counts."""
    recommended = model.predict_topk(users, k=k)
    n_ratings = X_train["item_id"].value_counts()
    train = frame.loc[X_train.index, ["user_id", "item_id", "rating"]]

    def label(item) -> str:
        return f"{titles.get(item, str(item))[:40]} ({n_ratings.get(item, 0)})"

    for user, items in zip(users, recommended):
        liked = train[(train["user_id"] == user) & (y_train == 1)]
        favourites = liked.sort_values("rating", ascending=False, kind="stable")["item_id"]
        left = [label(item) for item in favourites.head(k)]
        right = [label(item) for item in items]
        print(f"\nUser {user}: rated highly in training         | top-{k} recommended (unseen)")
        for row in range(k):
            print(f"  {left[row] if row < len(left) else '':46s} | {row + 1:2d}. {right[row]}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m skdssm demo",
        description="Train a DSSMRecommender on MovieLens, score it as a classifier of rated "
                    "pairs and as a recommender against popularity, and show what it recommends.")
    parser.add_argument("--data-home", default=None,
                        help="folder holding ml-100k/ etc. (default: $SKDSSM_DATA or ~/skdssm_data)")
    parser.add_argument("--dataset", default="100k", choices=["100k", "1m", "latest-small"])
    parser.add_argument("--max-epochs", type=int, default=DEMO_EPOCHS,
                        help=f"training epochs (default {DEMO_EPOCHS}, about a minute on one "
                             f"thread for 100k; DSSMRecommender's own default is "
                             f"{DSSMRecommender().max_epochs} with early stopping)")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading")
    args = parser.parse_args(argv)

    data = fetch_movielens(args.dataset, data_home=args.data_home, download=not args.no_download)
    frame = data.frame
    (X_train, y_train), (X_test, y_test) = user_holdout(frame, args.random_state)
    print(f"MovieLens-{args.dataset}: {len(frame):,} ratings, {frame['user_id'].nunique():,} users, "
          f"{frame['item_id'].nunique():,} items; features {list(X_train.columns)}")
    print(f"label = rating >= 4; user holdout: 20% of each user's ratings held out "
          f"(train {len(X_train):,} / test {len(X_test):,} rows, {y_train.mean():.1%} positive)")

    model = DSSMRecommender(max_epochs=args.max_epochs, verbose=1, random_state=args.random_state)
    budget = (f"a {args.max_epochs}-epoch budget, so that a first run takes about a minute "
              f"(--max-epochs {DSSMRecommender().max_epochs} for the default budget)"
              if args.max_epochs == DEMO_EPOCHS else f"a {args.max_epochs}-epoch budget")
    print(f"\nDSSMRecommender(max_epochs={args.max_epochs}, random_state={args.random_state}): "
          f"the library defaults (loss={model.loss!r} plus a ranking term with "
          f"ranking_weight={model.ranking_weight}, id_biases={model.id_biases}, "
          f"batch_size={model.batch_size}, early "
          f"stopping on a {model.validation_fraction:.0%} validation split) with {budget}.\n")
    start = time.perf_counter()
    model.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    print(f"\nfit in {seconds:.0f} s, {len(model.history_)} epochs")

    proba = model.predict_proba(X_test)[:, 1]
    print(f"\nHeld-out ratings as labelled pairs (did the user like the film they rated?):\n"
          f"  ROC AUC {roc_auc_score(y_test, proba):.4f}   accuracy "
          f"{accuracy_score(y_test, proba > 0.5):.4f}   log-loss {log_loss(y_test, proba):.4f}")

    recall = make_topk_scorer("recall", k=10)
    popularity = PopularityRecommender().fit(X_train)
    print("Held-out liked films found in the top 10 of the whole catalogue (items rated in "
          "training excluded):\n"
          f"  Recall@10 DSSMRecommender {recall(model, X_test, y_test):.4f}   "
          f"PopularityRecommender {recall(popularity, X_test, y_test):.4f}")

    titles = dict(zip(data["items"]["item_id"], data["items"]["title"]))
    users = np.asarray(model.user_ids_[:3])
    print("\n(n) = number of ratings of the film in the training rows")
    _print_recommendations(model, frame, X_train, y_train, users, titles)
