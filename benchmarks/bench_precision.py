"""Peak memory and speed of TwoTowerRetriever training with mixed precision and gradient checkpointing.

Every configuration trains the same model (self-attention over 50-item histories, wide MLP towers,
large batches: activations dominate memory) in a fresh subprocess, so the peak resident memory
(CPU) or the peak allocated CUDA memory belongs to that configuration alone.

Usage::

    python benchmarks/bench_precision.py --data-home ../shared/data [--device cpu|cuda] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CONFIGS = {
    "fp32": dict(mixed_precision=None, gradient_checkpointing=False),
    "bf16": dict(mixed_precision="bf16", gradient_checkpointing=False),
    "checkpointing": dict(mixed_precision=None, gradient_checkpointing=True),
    "bf16+checkpointing": dict(mixed_precision="bf16", gradient_checkpointing=True),
}
CUDA_ONLY = {
    "fp16": dict(mixed_precision="fp16", gradient_checkpointing=False),
    "fp16+checkpointing": dict(mixed_precision="fp16", gradient_checkpointing=True),
}
MODEL = dict(user_representation="sequence", max_sequence_length=50, embedding_dim=64,
             n_heads=4, n_attention_layers=2, hidden_dims=(1024, 1024, 256), batch_size=4096,
             early_stopping=False, random_state=0)


def run_one(name: str, data_home: str | None, device: str, epochs: int) -> dict:
    import numpy as np
    import torch

    from skdssm import TwoTowerRetriever
    from skdssm.datasets import fetch_movielens

    frame = fetch_movielens("100k", data_home=data_home).frame
    X = frame.loc[frame["rating"] >= 4, ["user_id", "item_id", "timestamp", "genres"]]
    params = {**MODEL, **{**CONFIGS, **CUDA_ONLY}[name], "device": device, "max_epochs": epochs}
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model = TwoTowerRetriever(**params).fit(X)
    seconds = time.perf_counter() - start
    train_seconds = float(sum(model.history_[:, "dur"]))
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) / 1024)
    return {"config": name, "rows_per_s": len(X) * epochs / train_seconds,
            "fit_s": seconds, "peak_mib": peak, "final_loss": float(model.history_[-1, "train_loss"]),
            "finite": bool(np.isfinite(model.history_[:, "train_loss"]).all())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.data_home, args.device, args.epochs)))
        return
    names = list(CONFIGS) + (list(CUDA_ONLY) if args.device == "cuda" else [])
    rows = []
    for name in names:
        command = [sys.executable, __file__, "--one", name, "--device", args.device,
                   "--epochs", str(args.epochs)] + (["--data-home", args.data_home] if args.data_home else [])
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    kind = "peak CUDA allocated" if args.device == "cuda" else "peak RSS increase during fit"
    print(f"device={args.device}, epochs={args.epochs}, model={MODEL}")
    print(f"{'config':22s} {'rows/s':>9s} {'fit s':>7s} {kind + ' (MiB)':>34s} {'last loss':>10s}")
    for row in rows:
        print(f"{row['config']:22s} {row['rows_per_s']:9.0f} {row['fit_s']:7.1f} "
              f"{row['peak_mib']:34.0f} {row['final_loss']:10.4f}" + ("" if row["finite"] else "  NOT FINITE"))


if __name__ == "__main__":
    main()
