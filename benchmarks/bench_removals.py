"""Removed items under HNSW: recall and query speed as more of the catalogue is removed.

``remove_items`` marks items deleted in the hnswlib graph (they keep routing searches and are
never returned), and ``ef_search_`` stays the one tuned on the full catalogue. This measures what
that costs: one graph is built and tuned (recall@10 0.99 target) over clustered items as in
``bench_kneighbors.py``; then ever larger random shares of the items are removed, and at each
share recall@10 on fresh queries is measured against exact search over the items left, with the
median time of one batched query (single thread). The same is then done for exclusions passed
per query (``predict_topk``'s ``exclude_items``: the same random items excluded for every
query), which the index over-fetches instead.

Usage::

    PYTHONPATH=. OMP_NUM_THREADS=1 nice python benchmarks/bench_removals.py \\
        --n-items 50000 --dim 64 --queries 1000
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_removals.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(__file__))
from bench_kneighbors import K, clustered, median_timed  # noqa: E402

from skdssm.neighbors import HNSWIndex, exact_topk, recall_against  # noqa: E402

N_CENTRES = 1000


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-items", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.01, 0.1, 0.3, 0.5])
    parser.add_argument("--excluded", type=int, nargs="+", default=[0, 10, 100, 1000],
                        help="items excluded per query (the same for every query)")
    parser.add_argument("--quick", action="store_true", help="5,000 items, 300 queries")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.n_items, args.queries = 5000, 300
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((N_CENTRES, args.dim), dtype=np.float32)
    items = clustered(args.n_items, centres, rng)
    tuning, queries = clustered(2000, centres, rng), clustered(args.queries, centres, rng)
    index = HNSWIndex(random_state=args.seed).fit(items, queries=tuning, k=K)
    print(f"{args.n_items} items, d={args.dim}, {args.queries} queries; tuned ef_search_="
          f"{index.ef_search_}, recall@{K} on the tuning sample {index.recall_:.4f}")

    order = rng.permutation(args.n_items)
    print("\nremoved share | recall@10 vs exact over the items left | ms per batch")
    for share in sorted(args.shares):
        removed = order[: int(share * args.n_items)]
        index.remove_items(removed[~index.removed_[removed]])
        (_, found), seconds = median_timed(index.query, queries, K)
        _, truth = exact_topk(queries, items, K, removed=index.removed_)
        print(f"{share:>13.2f} | {recall_against(found, truth):.4f} | {1000 * seconds:.1f}")

    index.replace_items(order[: int(max(args.shares) * args.n_items)],
                        items[order[: int(max(args.shares) * args.n_items)]])
    assert not index.removed_.any()
    print("\nexcluded per query | recall@10 vs exact | ms per batch")
    for count in args.excluded:
        columns = np.tile(rng.choice(args.n_items, count, replace=False), len(queries))
        exclude = sp.csr_matrix(
            (np.ones(len(columns), dtype=bool), (np.repeat(np.arange(len(queries)), count),
                                                 columns)),
            shape=(len(queries), args.n_items))
        (_, found), seconds = median_timed(index.query, queries, K, exclude=exclude)
        _, truth = exact_topk(queries, items, K, exclude)
        print(f"{count:>18} | {recall_against(found, truth):.4f} | {1000 * seconds:.1f}")


if __name__ == "__main__":
    main()
