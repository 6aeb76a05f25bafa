from __future__ import annotations

import os
from pathlib import Path

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


@pytest.fixture
def single_thread():
    """Run torch on one thread: the real-data bars were measured that way, and float reductions
    (hence trained weights) depend on the thread count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
