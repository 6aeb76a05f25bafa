"""ShardedIndex benchmark: one HNSW graph vs the same items split over several graphs.

Data as in ``bench_kneighbors.py`` (whose generator this imports): 1,000 centres from N(0, I_d);
each item is its centre plus N(0, I_d) noise, L2-normalised; queries are drawn the same way and
never indexed. For each catalogue size and shard count, in a fresh subprocess (so that the memory
figure of one configuration is not flattered by memory another one freed):

- build: ``fit`` wall-clock and CPU seconds (graphs, per-shard ef tuning on 2,000 tuning queries
  and, for several shards, the merged recall measurement), with the same total thread count
  whatever the number of shards (``--build-threads``: one graph gets them all, shards are built
  that many at a time with one thread each);
- memory: bytes per item of the serialised graphs (hnswlib ``index_file_size``, summed over
  shards) and the growth of the process's resident memory during ``fit`` (graphs plus hnswlib's
  per-item locks and label table, plus fixed costs such as thread state);
- quality: the tuned ef of each shard, the merged recall@10 ``fit`` measured on the tuning queries,
  and recall@10 on fresh evaluation queries against exact search over all items;
- speed: queries/s and CPU milliseconds per query of one batch of all evaluation queries (median
  of 3), and the median and 99th percentile
  latency of single-query calls, each with 1 and with ``--query-threads`` threads (for one graph
  hnswlib's own threads over the batch; for shards one thread per shard at once).

Usage::

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_sharded_index.py \\
        --n-items 100000 1000000 --dim 64 --shards 1 4 --queries 2000 --output <file>
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_sharded_index.py --n-items 20000  # quick
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import multiprocessing
import os
import sys
import time

import numpy as np
import torch

from bench_kneighbors import K, clustered, timed
from skdssm.neighbors import HNSWIndex, ShardedIndex, exact_topk, recall_against

N_CENTRES = 1000
N_LATENCY_QUERIES = 300


def resident_bytes() -> int:
    """Current resident set size of this process (Linux /proc), after handing glibc's free
    arena memory back to the system: fitting shards in threads leaves freed tuning buffers in
    per-thread arenas, which would otherwise be counted as index memory."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def hnsw_file_bytes_per_item(M: int, dim: int) -> float:
    """hnswlib's serialised size per item: level-0 block (2M links of 4 bytes + a 4-byte count,
    the float32 vector, the 8-byte label), a 4-byte upper-level size, and upper-level links
    (M links + count, 4 bytes each) on 1 / (M - 1) levels on average (level j is reached with
    probability M**-j)."""
    return (2 * M * 4 + 4) + dim * 4 + 8 + 4 + (M * 4 + 4) / (M - 1)


def make_data(n_items: int, dim: int, n_tuning: int, n_queries: int):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((N_CENTRES, dim), dtype=np.float32)
    items = clustered(n_items, centres, rng)
    return items, clustered(n_tuning, centres, rng), clustered(n_queries, centres, rng)


def make(n_shards: int, M: int, ef_construction: int, threads: int):
    if n_shards == 1:
        return HNSWIndex(M=M, ef_construction=ef_construction, n_threads=threads, random_state=0)
    base = HNSWIndex(M=M, ef_construction=ef_construction, n_threads=1)
    return ShardedIndex(n_shards=n_shards, base=base, n_threads=threads, random_state=0)


def set_query_threads(index, threads: int) -> None:
    if isinstance(index, ShardedIndex):
        index.set_params(n_threads=threads)
        for shard in index.shards_:
            shard.set_params(n_threads=1)
    else:
        index.set_params(n_threads=threads)


def cpu_timed(function, *args, **kwargs):
    """Result, wall-clock seconds and CPU seconds of this process (all its threads). On a shared
    machine the CPU time is the robust measure of work: waiting for a core counts in the wall
    clock only."""
    cpu = time.process_time()
    result, seconds = timed(function, *args, **kwargs)
    return result, seconds, time.process_time() - cpu


def median_cpu_timed(function, *args, repeats=3, **kwargs):
    runs = [cpu_timed(function, *args, **kwargs) for _ in range(repeats)]
    return (runs[0][0], float(np.median([run[1] for run in runs])),
            float(np.median([run[2] for run in runs])))


def latencies_ms(index, queries) -> np.ndarray:
    seconds = []
    for row in range(len(queries)):
        _, elapsed = timed(index.query, queries[row:row + 1], K)
        seconds.append(elapsed)
    return 1e3 * np.array(seconds)


def run_config(n_items, n_shards, args) -> dict:
    """One configuration, measured in the calling (fresh) process."""
    torch.set_num_threads(1)
    items, tuning, queries = make_data(n_items, args.dim, args.tuning_queries, args.queries)
    _, truth = exact_topk(queries, items, K)
    gc.collect()
    before = resident_bytes()
    index, build_s, build_cpu = cpu_timed(
        make(n_shards, args.M, args.ef_construction, args.build_threads).fit, items,
        queries=tuning, k=K)
    gc.collect()
    grown = resident_bytes() - before
    shards = index.shards_ if isinstance(index, ShardedIndex) else [index]
    result = {
        "n_items": n_items, "n_shards": len(shards), "build_s": build_s, "build_cpu": build_cpu,
        "file_bytes": sum(shard.index_.index_file_size() for shard in shards) / n_items,
        "rss_mib": grown / 2**20, "ef": [shard.ef_search_ for shard in shards],
        "tuning_recall": index.recall_, "speed": {},
        "load": os.getloadavg()[0],
    }
    for threads in sorted({1, args.query_threads}):
        set_query_threads(index, threads)
        (_, found), batch_s, batch_cpu = median_cpu_timed(index.query, queries, K)
        latency = latencies_ms(index, queries[:N_LATENCY_QUERIES])
        result["recall"] = recall_against(found, truth)
        result["speed"][threads] = (len(queries) / batch_s, 1e3 * batch_cpu / len(queries),
                                    float(np.median(latency)), float(np.percentile(latency, 99)))
    return result


def row(result, args) -> list[str]:
    lines = []
    for threads, (qps, cpu_ms, p50, p99) in result["speed"].items():
        ef = result["ef"]
        lines.append(
            f"| {result['n_items']:,} | {result['n_shards']} | {threads} | {result['build_s']:.0f} | "
            f"{result['build_cpu']:.0f} | "
            f"{result['file_bytes']:.0f} | {result['rss_mib']:,.0f} | "
            f"{ef[0] if len(ef) == 1 else '/'.join(map(str, ef))} | "
            f"{result['tuning_recall']:.4f} | {result['recall']:.4f} | {qps:,.0f} | {cpu_ms:.3f} | "
            f"{p50:.3f} | "
            f"{p99:.3f} | {result['load']:.1f} |")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-items", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--queries", type=int, default=2000, help="evaluation queries")
    parser.add_argument("--tuning-queries", type=int, default=2000)
    parser.add_argument("--M", type=int, default=24, help="graph degree of every graph")
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--build-threads", type=int, default=2,
                        help="threads for fit in total, whatever the number of shards")
    parser.add_argument("--query-threads", type=int, default=2,
                        help="threads of the second speed measurement (the first uses one)")
    parser.add_argument("--output", default=None, help="also write the markdown here")
    args = parser.parse_args(argv)
    lines = ["# ShardedIndex benchmark", "",
             f"`OMP_NUM_THREADS=1 python benchmarks/bench_sharded_index.py {' '.join(sys.argv[1:])}`",
             "", f"d={args.dim}, {N_CENTRES:,} Gaussian centres, unit-variance noise, L2-normalised; "
             f"M={args.M}, ef_construction={args.ef_construction}, target_recall 0.99 per graph; "
             f"fit with {args.build_threads} thread(s) in total; {args.queries} evaluation queries; "
             f"latency over {N_LATENCY_QUERIES} single-query calls; torch {torch.__version__}, "
             f"{os.cpu_count()} CPUs. hnswlib formula for the serialised size: "
             f"{hnsw_file_bytes_per_item(args.M, args.dim):.0f} bytes/item.", "",
             "| n_items | shards | query threads | fit s | fit CPU s | file bytes/item "
             "| RSS growth MiB | tuned ef per shard | fit recall@10 | fresh recall@10 | batch q/s "
             "| batch CPU ms/query | p50 ms | p99 ms | load avg |", "|" + "---|" * 15]
    print("\n".join(lines), flush=True)
    context = multiprocessing.get_context("spawn")
    for n_items in args.n_items:
        for n_shards in args.shards:
            with context.Pool(1) as pool:
                result = pool.apply(run_config, (n_items, n_shards, args))
            lines += row(result, args)
            print("\n".join(row(result, args)), flush=True)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
