"""Training throughput of DSSMRecommender.fit (skorch underneath) against a plain PyTorch loop.

Both train the same TwoTowerModule (same schema, same hyper-parameters) on the same encoded
tensors of MovieLens-100K for the same number of epochs, BCE loss, no validation. The plain loop
is the minimum a hand-written trainer does per batch: slice tensors, forward, loss, backward, step.

Usage::

    python benchmarks/bench_fit_throughput.py --data-home ../shared/data [--epochs 3] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from skdssm import DSSMRecommender
from skdssm.datasets import fetch_movielens
from skdssm.losses import binary_cross_entropy
from skdssm.nn import TwoTowerModule


def plain_loop(module_params: dict, arrays: dict, y: np.ndarray, *, epochs: int, batch_size: int,
               lr: float, seed: int) -> float:
    """Seconds to train a fresh module with a hand-written loop."""
    torch.manual_seed(seed)
    module = TwoTowerModule(**module_params)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    tensors = {k: torch.as_tensor(v) for k, v in arrays.items()}
    target = torch.as_tensor(y)
    generator = torch.Generator().manual_seed(seed)
    n = len(target)
    start = time.perf_counter()
    module.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for begin in range(0, n, batch_size):
            index = order[begin:begin + batch_size]
            logits, *_ = module(**{k: v[index] for k, v in tensors.items()})
            loss = binary_cross_entropy(logits, target[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 keeps the comparison stable on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    frame = fetch_movielens("100k", data_home=args.data_home).frame
    X = frame[["user_id", "item_id", "gender", "age", "occupation", "genres"]]
    y = (frame["rating"] >= 4).astype(np.float32).to_numpy()
    params = dict(max_epochs=args.epochs, early_stopping=False, random_state=0)

    skorch_times, plain_times = [], []
    for _ in range(args.repeats):
        model = DSSMRecommender(**params).fit(X, y)
        skorch_times.append(sum(model.history_[:, "dur"]))
        arrays = model._encode_pairs(X)
        plain_times.append(plain_loop(model._module_params(), arrays, y, epochs=args.epochs,
                                      batch_size=model.batch_size, lr=model.lr, seed=0))
    n = len(y) * args.epochs
    skorch_rate, plain_rate = n / min(skorch_times), n / min(plain_times)
    print(f"rows={len(y)} epochs={args.epochs} batch_size={model.batch_size} (best of {args.repeats})")
    print(f"DSSMRecommender.fit (skorch): {skorch_rate:,.0f} samples/s")
    print(f"plain torch loop:            {plain_rate:,.0f} samples/s")
    print(f"ratio: {skorch_rate / plain_rate:.2f}x")


if __name__ == "__main__":
    main()
