"""Recall@10 of TwoTowerRetriever trained data-parallel (``distributed=True``) against one process.

The MovieLens-100K protocol of RESULTS.md section 4 (``sweep_retriever.load_split``: positives
rating >= 4, per-user 20% holdout, full ranking without the training positives). Run without a
launcher it fits with ``distributed=False`` in one process; under ``torch.distributed.run`` every
rank fits with ``distributed=True`` and rank 0 reports. ``batch_size`` is the global batch in both
cases, so both take the same optimizer steps over the same shuffled global batches; with N ranks
each rank's softmax sees its own ``batch_size / N`` rows (and their sampled negatives). Each
argument is a JSON object of parameters that differ from the defaults (``seed`` sets
``random_state``). Prints one markdown row per argument: ranks, spec, Recall@10, NDCG@10, fit
wall-clock and CPU seconds of the reporting process.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_distributed_training.py --data-home ../shared/data '{"seed": 0}'
    OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc_per_node=2 \\
        benchmarks/bench_distributed_training.py --data-home ../shared/data '{"seed": 0}'
"""

from __future__ import annotations

import json
import os
import time

import torch

from skdssm.metrics import make_topk_scorer
from sweep_retriever import load_split, retriever_from_spec, spec_parser


def main() -> None:
    parser = spec_parser(__doc__.splitlines()[0], default_spec='{"seed": 0}')
    parser.add_argument("--output", default=None, help="also append the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    distributed = "RANK" in os.environ
    ranks = int(os.environ.get("WORLD_SIZE", 1))
    train, test, _ = load_split(args.data_home, args.split_seed)
    for spec in args.specs:
        model = retriever_from_spec(spec).set_params(distributed=distributed, index="exact")
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(train)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        recall = make_topk_scorer("recall", k=10)(model, test)
        ndcg = make_topk_scorer("ndcg", k=10)(model, test)
        if int(os.environ.get("RANK", 0)) == 0:
            line = (f"| {ranks} | `{json.dumps(json.loads(spec))}` | {recall:.4f} | {ndcg:.4f} | "
                    f"{wall:.0f} | {cpu:.0f} |")
            print(line, flush=True)
            if args.output:
                with open(args.output, "a") as handle:
                    handle.write(line + "\n")


if __name__ == "__main__":
    main()
