"""Training speed of TwoTowerRetriever's symmetric softmax against the one-way softmax.

Both fit the retriever defaults on the MovieLens-100K positives (rating >= 4) for a fixed number
of epochs without early stopping, one after the other in this process, and report seconds per
epoch (the best of ``--repeats``).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_symmetric.py --data-home ../shared/data
"""

from __future__ import annotations

import argparse
import time

from skdssm import TwoTowerRetriever
from skdssm.datasets import fetch_movielens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    frame = fetch_movielens("100k", data_home=args.data_home).frame
    X = frame.loc[frame["rating"] >= 4, ["user_id", "item_id", "gender", "age", "occupation",
                                         "genres", "timestamp"]]
    print(f"{len(X):,} positives, {args.epochs} epochs, best of {args.repeats}")
    print("| loss | seconds per epoch | rows/s |")
    print("| --- | --- | --- |")
    for symmetric in (False, True):
        times = []
        for _ in range(args.repeats):
            model = TwoTowerRetriever(symmetric=symmetric, early_stopping=False,
                                      max_epochs=args.epochs, random_state=0)
            start = time.perf_counter()
            model.fit(X)
            times.append((time.perf_counter() - start) / args.epochs)
        name = "symmetric (default)" if symmetric else "one-way"
        print(f"| {name} | {min(times):.2f} | {len(X) / min(times):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
