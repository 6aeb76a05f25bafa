"""The exported ONNX towers against the PyTorch towers: export time, file size, parity, latency.

MovieLens-100K positives (rating >= 4) of the issue-6 split's training rows; a
``TwoTowerRetriever`` with its default towers (training length barely matters here: only the
weights' values change). The towers are exported with ``export_onnx``; the user tower is run on
``encode_users`` of batches of users, by PyTorch (``torch.no_grad``, eval mode) and by
onnxruntime (CPU, one intra-op thread), each the median of ``--repeats`` runs.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_onnx_towers.py --data-home ../shared/data \
        [--representation bag] [--max-epochs 2] [--repeats 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from skdssm import TwoTowerRetriever

from sweep_retriever import load_split

BATCHES = (1, 64, None)  # None: every user


def median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--representation", default="bag")
    parser.add_argument("--max-epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, _, _ = load_split(args.data_home)
    model = TwoTowerRetriever(user_representation=args.representation,
                              max_epochs=args.max_epochs, random_state=0).fit(train)
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        start = time.perf_counter()
        model.export_onnx(directory)
        print(f"export_onnx: {time.perf_counter() - start:.1f} s; " + ", ".join(
            f"{path.name} {path.stat().st_size / 1e6:.2f} MB" for path in sorted(directory.iterdir())))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(directory / "user_tower.onnx"), options)

    users = model.user_ids_
    inputs = model.encode_users(users)
    difference = np.abs(session.run(None, inputs)[0] - model.transform_users(users)).max()
    print(f"max |onnx - transform_users| over {len(users)} users: {difference:.2e}")
    tower = model.net_.module_.user_tower.eval()
    print("| users per call | PyTorch tower ms | onnxruntime ms |")
    print("| ---: | ---: | ---: |")
    for batch in BATCHES:
        batch = len(users) if batch is None else batch
        encoded = model.encode_users(users[:batch])
        tensors = {key: torch.from_numpy(value) for key, value in encoded.items()}

        def run_torch():
            with torch.no_grad():
                tower(tensors)

        torch_ms = 1000 * median_seconds(run_torch, args.repeats)
        onnx_ms = 1000 * median_seconds(lambda: session.run(None, encoded), args.repeats)
        print(f"| {batch} | {torch_ms:.2f} | {onnx_ms:.2f} |")


if __name__ == "__main__":
    main()
