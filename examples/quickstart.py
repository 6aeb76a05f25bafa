"""
Quickstart: the three lines of skdssm's mission
===============================================

On synthetic data with planted clusters (``make_interactions``):

1. ``DSSMRecommender().fit(X, y)``: a two-tower classifier of (user, item) pairs.
2. ``GridSearchCV(pipe, {...}, scoring="roc_auc").fit(X, y)``: preprocessing and model tuned
   together, every fold refitting the vocabularies.
3. ``search.predict_topk(users, k=10)``: the tuned pipeline recommends from a frame of users
   (user columns only; the item-side padding is skipped for them). skdssm's ``GridSearchCV``
   is scikit-learn's, plus the recommender verbs of ``best_estimator_``.

Run ``OMP_NUM_THREADS=1 python examples/quickstart.py`` (about two minutes on one thread: the
grid has 32 candidates), or add ``--quick`` for a 2-candidate grid, 2 folds and 5 epochs (seconds).
The documentation's gallery runs the quick mode (``SKDSSM_GALLERY=1``).
"""

from __future__ import annotations

import argparse
import os

from skdssm import DSSMRecommender
from skdssm.datasets import make_interactions
from skdssm.model_selection import GridSearchCV
from skdssm.pipeline import make_pipeline
from skdssm.preprocessing import MultiHotPadder

PARAM_GRID = {
    "dssmrecommender__hidden_dims": [(32, 16), (64, 64, 32)],
    "dssmrecommender__activation": ["relu", "tanh"],
    "dssmrecommender__batch_norm": [False, True],
    "dssmrecommender__dropout_position": ["after", "before"],
    "multihotpadder__max_len": [3, 6],
}
QUICK_GRID = {"dssmrecommender__hidden_dims": [(32, 16), (64, 64, 32)],
              "multihotpadder__max_len": [3]}


def main(param_grid: dict = PARAM_GRID, cv: int = 3, max_epochs: int = 10):
    """Run the three lines; return the recommendations of step 3 (3 users x 10 item ids)."""
    data = make_interactions(n_users=100, n_items=50, interactions_per_user=15, random_state=0)
    X, y = data.frame.drop(columns=["label", "rating", "timestamp"]), data.frame["label"]
    users = data.users.head(3)  # user_id, segment, age_group, activity: no item column

    model = DSSMRecommender().fit(X, y)
    print(f"1. DSSMRecommender().fit(X, y): {len(model.history_)} epochs")

    pipe = make_pipeline(MultiHotPadder(columns=["tags"]),
                         DSSMRecommender(max_epochs=max_epochs, random_state=0))
    search = GridSearchCV(pipe, param_grid, scoring="roc_auc", cv=cv).fit(X, y)
    print(f"2. GridSearchCV: best ROC AUC {search.best_score_:.3f} with {search.best_params_}")

    recommended = search.predict_topk(users, k=10)  # the refitted best pipeline's
    print(f"3. search.predict_topk(users, k=10):\n{recommended}")
    return recommended


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.strip().partition("\n")[0])
    # sphinx-gallery runs the examples without arguments; docs/conf.py sets SKDSSM_GALLERY=1.
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("SKDSSM_GALLERY") == "1",
                        help="2 grid candidates, 2 folds, 5 epochs instead of 32, 3 and 10 "
                             "(default when SKDSSM_GALLERY=1)")
    args = parser.parse_args()
    if args.quick:
        print(f"--quick: grid {QUICK_GRID}, cv=2, max_epochs=5\n")
        main(QUICK_GRID, cv=2, max_epochs=5)
    else:
        main()
