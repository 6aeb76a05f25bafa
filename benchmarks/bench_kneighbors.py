"""kneighbors benchmark: HNSW (tuned ef_search) vs exact search on clustered unit vectors.

Data: 1,000 centres from N(0, I_d); each item is its centre plus N(0, I_d) noise, L2-normalised;
queries are drawn the same way (never from the indexed set). Queries run single-threaded
(set OMP_NUM_THREADS=1 so exact search's torch matmul is single-threaded too).

Sections (markdown on stdout, and in --output):

1. Per catalogue size and graph degree M: build time (graph + ef tuning), bytes per item of the
   serialised graph, tuned ef_search and its recall (and 95% lower bound) on the tuning queries,
   then recall@10 and queries/s of HNSW on separate evaluation queries vs exact search (batched
   torch matmul + topk), plus an ef sweep. HNSW timings are the median of 3 repeats.
2. Crossover: queries/s of exact vs tuned HNSW over small catalogues, for ``index="auto"``.
3. Exclusions: over-fetching ``k + n_excluded`` and dropping vs hnswlib's ``filter`` callable.

Usage::

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_kneighbors.py --sizes 100000 1000000 \\
        --build-threads 2 --output benchmarks/results_kneighbors.md
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_kneighbors.py --sizes 100000  # quick
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_kneighbors.py --sizes 1000000 \
        --M 24 32 --ef-construction 200 --build-threads 2 --skip-crossover --skip-exclusions
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch

from skdssm.neighbors import ExactIndex, HNSWIndex, exact_topk, recall_against

K = 10
SWEEP_EF = (20, 40, 60, 80, 100, 120, 160)


def clustered(n: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    points = centres[rng.integers(len(centres), size=n)]
    points = points + rng.standard_normal(points.shape, dtype=np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def median_timed(function, *args, repeats=3, **kwargs):
    """Result and median seconds of ``repeats`` calls (short timings on a shared machine)."""
    runs = [timed(function, *args, **kwargs) for _ in range(repeats)]
    return runs[0][0], float(np.median([seconds for _, seconds in runs]))


def build(items, tuning_queries, threads, seed, M=16, ef_construction=200, **params):
    index = HNSWIndex(M=M, ef_construction=ef_construction, n_threads=threads, random_state=seed,
                      **params)
    index, seconds = timed(index.fit, items, queries=tuning_queries, k=K)
    index.set_params(n_threads=1)  # queries are always single-threaded
    return index, seconds


def section_sizes(sizes, degrees, ef_construction, centres, rng, n_queries, n_tuning, threads,
                  lines):
    lines += ["## HNSW vs exact, recall@10 and single-threaded queries/s", "",
              f"{n_queries} evaluation queries (batched), tuning on {n_tuning:,} other queries; "
              f"ef_construction={ef_construction}, target_recall=0.99 (95% lower bound); graph "
              f"built with {threads} thread(s); HNSW q/s the median of 3 runs.", "",
              "| n_items | M | build+tune s | bytes/item | tuned ef | tuning recall (lower) "
              "| HNSW recall@10 | HNSW q/s | exact q/s | speed-up |", "|" + "---|" * 10]
    sweeps = []
    for n in sizes:
        items = clustered(n, centres, rng)
        tuning, queries = clustered(n_tuning, centres, rng), clustered(n_queries, centres, rng)
        exact = ExactIndex().fit(items)
        (_, truth), exact_s = timed(exact.query, queries, K)
        for M in degrees:
            index, build_s = build(items, tuning, threads, 0, M=M, ef_construction=ef_construction)
            (_, found), hnsw_s = median_timed(index.query, queries, K)
            bytes_per_item = index.index_.index_file_size() / n
            lines.append(f"| {n:,} | {M} | {build_s:.1f} | {bytes_per_item:.0f} | "
                         f"{index.ef_search_} | {index.recall_:.4f} ({index.recall_lower_:.4f}) | "
                         f"{recall_against(found, truth):.4f} | {n_queries / hnsw_s:,.0f} | "
                         f"{n_queries / exact_s:,.0f} | {exact_s / hnsw_s:.0f}x |")
            print(lines[-1], file=sys.stderr, flush=True)
            for ef in SWEEP_EF:
                index.set_params(ef_search=ef)
                index.ef_search_ = ef
                (_, found), seconds = median_timed(index.query, queries, K)
                sweeps.append(f"| {n:,} | {M} | {ef} | {recall_against(found, truth):.4f} | "
                              f"{n_queries / seconds:,.0f} | {exact_s / seconds:.0f}x |")
                print(sweeps[-1], file=sys.stderr, flush=True)
            del index
    lines += ["", "ef_search sweep (same queries):", "",
              "| n_items | M | ef_search | recall@10 | HNSW q/s | speed-up vs exact |",
              "|---|---|---|---|---|---|", *sweeps, ""]


def section_crossover(centres, rng, n_queries, lines):
    lines += ["## Crossover for index=\"auto\"", "",
              f"{n_queries} batched single-threaded queries, HNSW at its tuned ef (recall 0.99).",
              "", "| n_items | tuned ef | HNSW q/s | exact q/s | HNSW/exact |", "|---|---|---|---|---|"]
    for n in (1_000, 2_000, 5_000, 10_000, 20_000, 50_000):
        items = clustered(n, centres, rng)
        index, _ = build(items, clustered(1000, centres, rng), 1, 0)
        queries = clustered(n_queries, centres, rng)
        exact = ExactIndex().fit(items)
        _, exact_s = timed(exact.query, queries, K)
        _, hnsw_s = timed(index.query, queries, K)
        lines.append(f"| {n:,} | {index.ef_search_} | {n_queries / hnsw_s:,.0f} | "
                     f"{n_queries / exact_s:,.0f} | {exact_s / hnsw_s:.2f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    lines.append("")


def section_exclusions(centres, rng, n, n_queries, n_excluded, lines):
    """Each query excludes ``n_excluded`` items drawn from its own top 200 (seen items sit near
    the user, which is the hard case for over-fetching)."""
    items = clustered(n, centres, rng)
    index, _ = build(items, clustered(1000, centres, rng), 1, 0)
    queries = clustered(n_queries, centres, rng)
    _, near = exact_topk(queries, items, 200)
    picks = np.argsort(rng.random(near.shape), axis=1)[:, :n_excluded]
    cols = np.take_along_axis(near, picks, axis=1)
    exclude = sp.csr_matrix((np.ones(cols.size, bool), (np.repeat(np.arange(n_queries), n_excluded),
                                                        cols.ravel())), shape=(n_queries, n))
    _, truth = exact_topk(queries, items, K, exclude)
    (_, over), over_s = timed(index.query, queries, K, exclude=exclude)

    def filtered():
        # hnswlib's filter is one callable for the whole call, so per-user exclusions need one
        # call per query; ef is set as the index would for the same over-fetch.
        graph, out = index.index_, np.empty((n_queries, K), dtype=np.int64)
        graph.set_ef(max(index.ef_search_, K))
        for row in range(n_queries):
            banned = set(exclude.indices[exclude.indptr[row]:exclude.indptr[row + 1]].tolist())
            labels, _ = graph.knn_query(queries[row:row + 1], k=K, num_threads=1,
                                        filter=lambda label: label not in banned)
            out[row] = labels[0]
        return out

    filt, filter_s = timed(filtered)
    lines += ["## Excluding seen items: over-fetch vs hnswlib filter", "",
              f"{n:,} items, {n_queries} queries, {n_excluded} excluded items per query drawn from "
              "its exact top 200; recall@10 against exact search with the same exclusions.", "",
              "| method | recall@10 | q/s |", "|---|---|---|",
              f"| over-fetch k + n_excluded, drop (HNSWIndex.query) | {recall_against(over, truth):.4f} "
              f"| {n_queries / over_s:,.0f} |",
              f"| hnswlib filter callable, one call per query | {recall_against(filt, truth):.4f} "
              f"| {n_queries / filter_s:,.0f} |", ""]
    print("\n".join(lines[-4:]), file=sys.stderr, flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--tuning-queries", type=int, default=2000)
    parser.add_argument("--M", type=int, nargs="+", default=[16],
                        help="graph degrees to build for the first section, one graph each")
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--build-threads", type=int, default=1,
                        help="threads for graph construction only (queries use one)")
    parser.add_argument("--skip-crossover", action="store_true")
    parser.add_argument("--skip-exclusions", action="store_true")
    parser.add_argument("--output", default=None, help="also write the markdown here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, args.dim), dtype=np.float32)
    lines = ["# kneighbors benchmark", "",
             f"`OMP_NUM_THREADS=1 python benchmarks/bench_kneighbors.py {' '.join(sys.argv[1:])}`",
             "", f"d={args.dim}, 1,000 Gaussian centres, unit-variance noise, L2-normalised; "
             f"torch {torch.__version__}, torch threads {torch.get_num_threads()}.", ""]
    section_sizes(args.sizes, args.M, args.ef_construction, centres, rng, args.queries,
                  args.tuning_queries, args.build_threads, lines)
    if not args.skip_crossover:
        section_crossover(centres, rng, args.queries, lines)
    if not args.skip_exclusions:
        section_exclusions(centres, rng, 100_000, 500, 50, lines)
    text = "\n".join(lines)
    print(text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
