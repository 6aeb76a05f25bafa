"""Where one training epoch of TwoTowerRetriever goes: gathering, sampling, forward, backward, step.

Fits the model for one epoch (so the net, its loader transforms and optimizer exist), then runs one
more epoch over the same loader by hand, timing each phase of every step: slicing the batch and
each of the loader's transforms (gathering the users' histories, ``UserInputs``; drawing
negatives with their log q and masks, ``DrawCandidates``), the forward pass with the loss, the
backward pass and the optimizer step.

Usage::

    python benchmarks/profile_epoch.py --data-home ../shared/data [--threads 1] ['{"batch_size": 1024}']
    python benchmarks/profile_epoch.py --synthetic 1000000 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import torch

from skdssm import TwoTowerRetriever
from skdssm.datasets import make_implicit_interactions
from skdssm._skorch import BatchLoader, InteractionDataset
from skorch.callbacks import Callback

from sweep_retriever import load_split


PHASES = {"UserInputs": "gather histories", "DrawCandidates": "sample negatives"}


class Capture(Callback):
    """Keeps the training arrays skorch is given (the estimator does not store them)."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.X, self.y = X, y


def profile(model: TwoTowerRetriever, train) -> dict:
    capture = Capture()
    model.set_params(max_epochs=1, callbacks=[("capture", capture)]).fit(train)
    net = model.net_
    transforms = net.get_params()["iterator_train__transform"].transforms
    loader = BatchLoader(InteractionDataset(capture.X, capture.y), batch_size=model.batch_size,
                         shuffle=True, seed=0)
    module, criterion, optimizer = net.module_, net.criterion_, net.optimizer_
    module.train()
    seconds = defaultdict(float)
    clock = time.perf_counter
    start = clock()
    for batch, target in loader:
        seconds["slice rows"] += clock() - start
        for transform in transforms:
            start = clock()
            batch = transform(batch)
            seconds[PHASES.get(type(transform).__name__, type(transform).__name__)] += (
                clock() - start)
        start = clock()
        optimizer.zero_grad()
        loss = criterion(module(**batch), target, batch, module)
        seconds["forward + loss"] += clock() - start
        start = clock()
        loss.backward()
        seconds["backward"] += clock() - start
        start = clock()
        optimizer.step()
        seconds["optimizer step"] += clock() - start
        start = clock()
    return dict(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default="{}",
                        help="JSON object of TwoTowerRetriever parameters")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--synthetic", type=int, default=0,
                        help="profile on make_implicit_interactions(N) instead of MovieLens")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.synthetic:
        train = make_implicit_interactions(args.synthetic, random_state=0).frame
    else:
        train, _, _ = load_split(args.data_home)
    seconds = profile(TwoTowerRetriever(random_state=0, **json.loads(args.spec)), train)
    total = sum(seconds.values())
    print("| phase | seconds | share |\n|---|---|---|")
    for phase, value in seconds.items():
        print(f"| {phase} | {value:.2f} | {value / total:.0%} |")
    print(f"| total | {total:.2f} | |")


if __name__ == "__main__":
    main()
