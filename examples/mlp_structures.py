"""
Which tower MLP works best on MovieLens-100K?
=============================================

Four structures compared by GridSearchCV. A ``MultiHotPadder`` on the
genres feeds a ``DSSMRecommender`` in a ``RecommenderPipeline``; ``GridSearchCV`` scores four MLP
structures on the protocol's fixed validation split (``PredefinedSplit``), then each structure,
trained on the training rows, is evaluated on the test rows. Everything not listed below stays at
the DSSMRecommender defaults.

Run (about 1.5-3 minutes per fit on one CPU thread; 8 fits, about 17 minutes)::

    OMP_NUM_THREADS=1 python examples/mlp_structures.py --data-home /path/to/data

``--quick`` (about a minute) keeps the ratings of 300 random users and trains at most 3 epochs
per fit: the numbers then only show that the comparison runs, not which structure wins. The
documentation's gallery runs the quick mode (``SKDSSM_GALLERY=1``).

The table is printed; a figure (test metrics, per-epoch validation AUC from ``history_`` with
``skdssm.plotting.TrainingHistoryDisplay``, and the search's candidates with
``SearchResultsDisplay``) is written to ``examples/out/mlp_structures.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score  # noqa: E402
from sklearn.model_selection import GridSearchCV, PredefinedSplit  # noqa: E402

from skdssm import DSSMRecommender  # noqa: E402
from skdssm._demo import movielens_split  # noqa: E402
from skdssm.datasets import fetch_movielens  # noqa: E402
from skdssm.pipeline import RecommenderPipeline  # noqa: E402
from skdssm.plotting import SearchResultsDisplay, TrainingHistoryDisplay  # noqa: E402
from skdssm.preprocessing import MultiHotPadder  # noqa: E402

STRUCTURES = {
    "ReLU [300,300,128]": {"model__activation": ["relu"], "model__hidden_dims": [(300, 300, 128)]},
    "Tanh [256,256,256]": {"model__activation": ["tanh"], "model__hidden_dims": [(256, 256, 256)]},
    "Tanh+BN+xavier, dropout after": {
        "model__activation": ["tanh"], "model__hidden_dims": [(256, 256, 256)],
        "model__batch_norm": [True], "model__init": ["xavier_normal"],
        "model__dropout_position": ["after"],
    },
    "Tanh+BN+xavier, dropout before": {
        "model__activation": ["tanh"], "model__hidden_dims": [(256, 256, 256)],
        "model__batch_norm": [True], "model__init": ["xavier_normal"],
        "model__dropout_position": ["before"],
    },
}
SCORING = {"roc_auc": "roc_auc", "accuracy": "accuracy", "neg_log_loss": "neg_log_loss"}
QUICK_USERS, QUICK_EPOCHS = 300, 3
# sphinx-gallery runs the examples without arguments and without __file__; docs/conf.py sets
# SKDSSM_GALLERY=1 so that they take the quick path and find the shared data beside the checkout.
GALLERY = os.environ.get("SKDSSM_GALLERY") == "1"
HERE = Path(globals().get("__file__", sys.argv[0])).resolve().parent


def default_data_home() -> str | None:
    """$SKDSSM_DATA; in the gallery, when it is unset, ../shared/data beside the checkout."""
    if GALLERY and not os.environ.get("SKDSSM_DATA"):
        return str(HERE.parent.parent / "shared" / "data")
    return os.environ.get("SKDSSM_DATA")


def structure_name(params: dict) -> str:
    """The STRUCTURES key whose grid is the single combination ``params``."""
    for name, grid in STRUCTURES.items():
        if params == {key: values[0] for key, values in grid.items()}:
            return name
    raise KeyError(params)


def test_metrics(model, X, y) -> dict:
    proba = model.predict_proba(X)[:, 1]
    return {"test AUC": roc_auc_score(y, proba), "test accuracy": accuracy_score(y, proba > 0.5),
            "test log-loss": log_loss(y, proba)}


def plot(table: pd.DataFrame, models: dict, search, path: Path) -> None:
    fig, (bars, curves, candidates) = plt.subplots(1, 3, figsize=(19, 4.5))
    table[["test AUC", "test accuracy", "test log-loss"]].T.plot.bar(ax=bars, rot=0)
    bars.set_title("Test metrics per MLP structure")
    bars.legend(fontsize=8)
    for name, model in models.items():
        TrainingHistoryDisplay.from_estimator(model, name=name, ax=curves, keys=["valid_auc"])
    curves.set(title="Validation AUC per epoch (early-stopping hold-out)", ylabel="ROC AUC")
    SearchResultsDisplay.from_estimator(
        search, metric="roc_auc", ax=candidates,
        labels=[structure_name(params) for params in search.cv_results_["params"]])
    candidates.set_title("GridSearchCV: validation ROC AUC")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().partition("\n")[0])
    parser.add_argument("--data-home", default=default_data_home(),
                        help="folder holding ml-100k/ (default: $SKDSSM_DATA)")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--quick", action="store_true", default=GALLERY,
                        help=f"{QUICK_USERS} random users, at most {QUICK_EPOCHS} epochs per fit "
                             "(default when SKDSSM_GALLERY=1)")
    parser.add_argument("--out", default=str(HERE / "out" / "mlp_structures.png"))
    args = parser.parse_args(argv)

    frame = fetch_movielens("100k", data_home=args.data_home, download=False).frame
    model = DSSMRecommender(random_state=args.random_state)
    if args.quick:
        users = np.random.default_rng(args.random_state).choice(
            frame["user_id"].unique(), QUICK_USERS, replace=False)
        frame = frame[frame["user_id"].isin(users)]
        model.set_params(max_epochs=QUICK_EPOCHS)
        print(f"--quick: {QUICK_USERS} random users ({len(frame):,} ratings), "
              f"max_epochs={QUICK_EPOCHS}\n")
    _, (X_train, y_train), (X_valid, y_valid), (X_test, y_test) = movielens_split(
        frame, args.random_state)
    pipe = RecommenderPipeline([("padder", MultiHotPadder(columns=["genres"])), ("model", model)])

    # One fold: fit on the training rows, score on the validation rows.
    X_search = pd.concat([X_train, X_valid], ignore_index=True)
    y_search = np.concatenate([y_train, y_valid])
    fold = PredefinedSplit(np.r_[np.full(len(X_train), -1), np.zeros(len(X_valid), dtype=int)])
    search = GridSearchCV(pipe, list(STRUCTURES.values()), scoring=SCORING, refit=False, cv=fold,
                          n_jobs=1)
    start = time.perf_counter()
    search.fit(X_search, y_search)
    print(f"GridSearchCV over {len(STRUCTURES)} structures: {time.perf_counter() - start:.0f} s")

    rows, models = {}, {}
    results = pd.DataFrame(search.cv_results_)
    for position, params in enumerate(search.cv_results_["params"]):
        name = structure_name(params)
        model = clone(pipe).set_params(**params)
        start = time.perf_counter()
        models[name] = model.fit(X_train, y_train)
        rows[name] = {
            "valid AUC": results.loc[position, "mean_test_roc_auc"],
            "valid accuracy": results.loc[position, "mean_test_accuracy"],
            "valid log-loss": -results.loc[position, "mean_test_neg_log_loss"],
            **test_metrics(model, X_test, y_test),
            "epochs": len(model.named_steps["model"].history_),
            "fit s": time.perf_counter() - start,
        }
    table = pd.DataFrame.from_dict(rows, orient="index").astype({"epochs": int})
    best = np.argmax(search.cv_results_["mean_test_roc_auc"])
    print(f"\nBest on validation: {structure_name(search.cv_results_['params'][best])}\n")
    print(table.to_markdown(floatfmt=".4f"))
    plot(table, models, search, Path(args.out))
    print(f"\nFigure: {args.out}")


if __name__ == "__main__":
    main()
