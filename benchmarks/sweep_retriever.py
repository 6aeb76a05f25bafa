"""Recall@10 / Recall@50 of TwoTowerRetriever variants on the issue-6 MovieLens-100K protocol.

The sweep behind the tables of benchmarks/RESULTS.md section 4: each argument is a JSON object of
TwoTowerRetriever parameters that differ from the defaults (``seed`` sets ``random_state``), fitted
on the training positives of ``UserHoldoutSplit(test_size=0.2, min_interactions=5,
random_state=split_seed)`` and scored by full ranking, as in ``examples/movielens_retrieval.py``
(which also runs the baselines). Two extra features can be derived from the raw columns:
``year`` (release year parsed from the title, (year - 1990) / 10 as a float) and ``zip_prefix``
(first character of the zip code: the US region). With ``--average`` it also reports, after each
run, the Recall@k of the sum of the cosine scores of the runs so far (an ensemble).

Usage::

    python benchmarks/sweep_retriever.py --data-home ../shared/data [--split-seed 0] \\
        [--extra year --extra zip_prefix] [--average] '{}' '{"hidden_dims": [512, 256, 128], "seed": 1}'
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from skdssm import TwoTowerRetriever
from skdssm.datasets import fetch_movielens
from skdssm.metrics import recall_at_k
from skdssm.model_selection import UserHoldoutSplit
from skdssm.neighbors import exact_topk

FEATURES = ["user_id", "item_id", "gender", "age", "occupation", "genres", "timestamp"]


def derived_features(frame: pd.DataFrame) -> pd.DataFrame:
    year = frame["title"].str.extract(r"\((\d{4})\)\s*$")[0].astype(float)
    return pd.DataFrame({
        "year": ((year.fillna(year.median()) - 1990) / 10).astype("float32"),
        "zip_prefix": frame["zip_code"].str[0],
    }, index=frame.index)


def load_split(data_home, split_seed: int = 0, extra=()):
    """Training positives, held-out positives and the sorted test users of the issue-6 split."""
    frame = fetch_movielens("100k", data_home=data_home).frame
    positives = frame[frame["rating"] >= 4].reset_index(drop=True)
    positives = positives[FEATURES].join(derived_features(positives)[list(extra)])
    train_rows, test_rows = next(UserHoldoutSplit(test_size=0.2, min_interactions=5,
                                                  random_state=split_seed).split(positives))
    train, test = positives.iloc[train_rows], positives.iloc[test_rows]
    return train, test, np.sort(test["user_id"].unique())


def spec_parser(description: str, default_spec: str = "{}") -> argparse.ArgumentParser:
    """The arguments every MovieLens retriever script shares: specs, data home and split seed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("specs", nargs="*", default=[default_spec],
                        help="JSON objects of parameters that differ from the defaults")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--split-seed", type=int, default=0)
    return parser


def retriever_from_spec(spec: str) -> TwoTowerRetriever:
    """A TwoTowerRetriever from a JSON object of parameters (``seed`` sets ``random_state``)."""
    params = json.loads(spec)
    return TwoTowerRetriever(random_state=params.pop("seed", 0), **params)


def main() -> None:
    parser = spec_parser(__doc__.splitlines()[0])
    parser.add_argument("--extra", action="append", default=[], choices=["year", "zip_prefix"],
                        help="a derived feature added to every run (repeat for both)")
    parser.add_argument("--average", action="store_true",
                        help="also score the sum of the runs' cosine scores (an ensemble)")
    args = parser.parse_args()

    train, test, users = load_split(args.data_home, args.split_seed, args.extra)
    user_parts, item_parts = [], []
    for n_runs, spec in enumerate(args.specs, start=1):
        model = retriever_from_spec(spec)
        seed = model.random_state
        start = time.perf_counter()
        model.fit(train)
        seconds = time.perf_counter() - start
        top = model.predict_topk(users, k=50)
        # With refit=True the served model's history has no validation columns; without early
        # stopping there are none at all.
        history = model.validation_history_ or model.history_
        valid = history[:, "valid_recall_at_10"] if "valid_recall_at_10" in history[-1] else [np.nan]
        print(f"{spec} seed={seed} split={args.split_seed} extra={args.extra}: "
              f"Recall@10 {recall_at_k(test, top, users=users, k=10):.4f} "
              f"Recall@50 {recall_at_k(test, top, users=users, k=50):.4f} "
              f"epochs {len(model.history_)} best valid {max(valid):.4f} fit {seconds:.0f} s",
              flush=True)
        if args.average:
            # Every run fits the same rows, so ids, their order and the seen items agree.
            user_parts.append(model.transform_users(users))
            item_parts.append(model.item_embeddings_)
            seen = model.seen_items_[pd.Index(model.user_ids_).get_indexer(users)]
            # Concatenated embeddings score the sum of the runs' cosines: the ensemble is itself
            # a two-tower model.
            _, top = exact_topk(np.hstack(user_parts), np.hstack(item_parts), 50, exclude=seen)
            top = np.asarray(model.item_ids_)[top]
            print(f"  average of the {n_runs} run(s) so far: "
                  f"Recall@10 {recall_at_k(test, top, users=users, k=10):.4f} "
                  f"Recall@50 {recall_at_k(test, top, users=users, k=50):.4f}", flush=True)


if __name__ == "__main__":
    main()
