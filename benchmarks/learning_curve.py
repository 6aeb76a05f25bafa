"""Test Recall@10 of a TwoTowerRetriever after every epoch, on the issue-6 MovieLens-100K split.

A diagnostic behind benchmarks/RESULTS.md section 4: how many epochs the model needs and whether
it over-fits later. After each epoch a skorch callback ranks the whole catalogue for the test
users with the current towers (excluding their training positives, as at serving time) and
records ``test_recall_at_10`` in the history; nothing is chosen with it. Each argument is a JSON
object of TwoTowerRetriever parameters, as in ``sweep_retriever.py`` (``seed`` sets
``random_state``). With early stopping on, the validation recall is printed too. Without early
stopping, epoch n's value is what ``max_epochs=n`` serves (the callback draws no random numbers).

Usage::

    python benchmarks/learning_curve.py --data-home ../shared/data [--split-seed 0] \\
        '{"max_epochs": 60}' '{"user_representation": "id", "max_epochs": 60}'
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from skorch.callbacks import Callback

from skdssm import TwoTowerRetriever
from skdssm._base import embed  # the towers' batched, no-grad, eval-mode forward pass
from skdssm.metrics import recall_at_k
from skdssm.neighbors import exact_topk
from sweep_retriever import load_split, retriever_from_spec, spec_parser


class TestRecall(Callback):
    """Record the full-ranking Recall@k of the test users after each epoch."""

    def __init__(self, model: TwoTowerRetriever, test: pd.DataFrame, users: np.ndarray, k=10):
        self.model, self.test, self.users, self.k = model, test, users, k

    def on_epoch_end(self, net, **kwargs):
        # predict_topk needs a finished fit: rank with the inputs the estimator has stored by
        # now (under early stopping, bags built from its training rows) and the current towers.
        model = self.model
        net.module_.eval()  # serving's mode (no dropout); the next training step switches back
        # The users' stored inputs completed by the batch transform that gathers their
        # histories (bags, sequences or profiles), as serving does.
        inputs, rows, transform, _ = model._user_queries(self.users)
        queries = embed(net.module_.user_tower, inputs, net.device, transform)
        items = embed(net.module_.item_tower, model.item_inputs_, net.device)
        _, top = exact_topk(queries, items, self.k, exclude=model.seen_items_[rows])
        top = np.asarray(model.item_ids_)[top]
        net.history.record(f"test_recall_at_{self.k}",
                           recall_at_k(self.test, top, users=self.users, k=self.k))


def summary(values: np.ndarray, width: int = 10) -> str:
    """Mean [min, max] over consecutive windows of ``width`` epochs."""
    return "  ".join(f"{start + 1}-{start + len(chunk)}: {chunk.mean():.4f} "
                     f"[{chunk.min():.4f}, {chunk.max():.4f}]"
                     for start in range(0, len(values), width)
                     for chunk in [values[start:start + width]])


def main() -> None:
    args = spec_parser(__doc__.splitlines()[0], '{"max_epochs": 60}').parse_args()

    train, test, users = load_split(args.data_home, args.split_seed)
    for spec in args.specs:
        model = retriever_from_spec(spec)
        seed = model.random_state
        model.set_params(callbacks=[*(model.callbacks or []),
                                    ("test_recall", TestRecall(model, test, users))])
        start = time.perf_counter()
        model.fit(train)
        history = model.validation_history_ or model.history_
        curve = np.asarray(history[:, "test_recall_at_10"])
        print(f"{spec} seed={seed} split={args.split_seed}: fit {time.perf_counter() - start:.0f} s, "
              f"best epoch {model.best_epoch_}", flush=True)
        print(f"  test Recall@10 by epoch: {' '.join(f'{v:.4f}' for v in curve)}")
        print(f"  by 10 epochs: {summary(curve)}")
        if model.early_stopping:
            valid = np.asarray(history[:, "valid_recall_at_10"])
            print(f"  validation Recall@10 by epoch: {' '.join(f'{v:.4f}' for v in valid)}")


if __name__ == "__main__":
    main()
