from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_home() -> Path:
    env = os.environ.get("SKDSSM_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def movielens_home() -> Path:
    """The data home holding ``ml-100k/`` (GroupLens layout); real-data tests skip without it."""
    home = _shared_data_home()
    if not (home / "ml-100k" / "u.data").exists():
        pytest.skip(f"MovieLens-100K not found under {home} (set SKDSSM_DATA)")
    return home


def _plateau_lrs(scores, lr, higher_is_better):
    """The learning rate of each epoch under torch's ReduceLROnPlateau(patience=1, factor=0.5)
    stepped with ``scores``: the oracle for ``lr_schedule="plateau"``."""
    import torch

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max" if higher_is_better else "min", patience=1, factor=0.5)
    lrs = []
    for score in scores:
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step(score)
    return np.array(lrs)


@pytest.fixture
def plateau_lrs():
    """The expected learning rates of ``lr_schedule="plateau"`` for a monitored sequence."""
    return _plateau_lrs


@pytest.fixture
def single_thread():
    """Run torch on one thread: the real-data bars were measured that way, and float reductions
    (hence trained weights) depend on the thread count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
