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
    """The learning rates torch's ReduceLROnPlateau(patience=1, factor=0.5) gives, epoch by
    epoch, for a sequence of monitored values (its default relative threshold of 1e-4)."""
    sign = 1.0 if higher_is_better else -1.0
    best, bad, lrs = -np.inf, 0, []
    for score in sign * np.asarray(scores):
        lrs.append(lr)
        improved = score > best + abs(best) * 1e-4 if np.isfinite(best) else True
        best, bad = (score, 0) if improved else (best, bad + 1)
        if bad > 1:
            lr, bad = lr / 2, 0
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
