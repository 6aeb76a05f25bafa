"""Data-parallel training (``distributed=True``) under torch.distributed's launcher, on CPU (gloo).

The launch test starts two ranks with ``python -m torch.distributed.run --standalone
--nproc_per_node=2 tests/distributed_fit_script.py``; each writes its fitted models' weights,
embeddings, top-k lists and histories, which must agree exactly across ranks.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from skdssm import DSSMRecommender, TwoTowerRetriever
from skdssm._skorch import BatchLoader, InteractionDataset
from skdssm.datasets import make_interactions

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "tests" / "distributed_fit_script.py"
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# Test Recall@10 of the script's one-process retriever over random_state 0..5: mean 0.318,
# standard deviation SEED_STD (measured with the script's settings).
SEED_STD = 0.011

needs_gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available")


@pytest.mark.parametrize("estimator", [DSSMRecommender, TwoTowerRetriever])
def test_distributed_without_launcher_names_the_missing_variables(estimator, monkeypatch):
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    frame = make_interactions(n_users=20, n_items=30, random_state=0).frame
    X, y = frame.drop(columns=["label", "rating", "timestamp"]), frame["label"]
    model = estimator(hidden_dims=(8,), max_epochs=1, distributed=True)
    with pytest.raises(ValueError, match=r"'RANK', 'WORLD_SIZE'.*torchrun"):
        model.fit(X, y)


def test_each_process_trains_on_the_gpu_its_local_rank_names(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert TwoTowerRetriever(distributed=True, device="cuda")._device() == "cuda:1"
    # A device the user numbered, and a fit without distributed, are left as given.
    assert TwoTowerRetriever(distributed=True, device="cuda:0")._device() == "cuda:0"
    assert TwoTowerRetriever(device="cuda")._device() == "cuda"
    assert DSSMRecommender(distributed=True, device="cpu")._device() == "cpu"


def _batches(world_size, rank, n_rows=23, batch_size=8):
    dataset = InteractionDataset({"row": np.arange(n_rows)})
    loader = BatchLoader(dataset, batch_size=batch_size, shuffle=True, seed=3, rank=rank,
                         world_size=world_size)
    return [batch["row"].numpy() for batch, _ in loader], len(loader)


def test_batch_loader_gives_each_rank_its_share_of_the_same_global_batches():
    whole, n_whole = _batches(world_size=1, rank=0)
    shares = [_batches(world_size=3, rank=rank) for rank in range(3)]
    # 23 rows in batches of 8: two full global batches and a tail of 7 rows, split 3/2/2.
    assert n_whole == 3 and all(n == 3 and len(batches) == 3 for batches, n in shares)
    for step, global_batch in enumerate(whole):
        parts = [batches[step] for batches, _ in shares]
        np.testing.assert_array_equal(np.concatenate(parts), global_batch)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_batch_loader_drops_a_tail_too_small_to_share():
    # 17 rows in batches of 8 leave one row: four ranks cannot all get a row of it.
    whole, _ = _batches(world_size=1, rank=0, n_rows=17)
    batches, n_batches = _batches(world_size=4, rank=3, n_rows=17)
    assert n_batches == len(batches) == 2
    np.testing.assert_array_equal(batches[1], np.array_split(whole[1], 4)[3])


def _load_script():
    spec = importlib.util.spec_from_file_location("distributed_fit_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_gloo
def test_two_ranks_end_with_identical_models_and_one_process_recall(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get(
        "PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    for name in LAUNCHER_VARIABLES:
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", str(SCRIPT), str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (np.load(tmp_path / f"rank{rank}.npz") for rank in (0, 1))
    shared = [key for key in rank0.files if key != "retriever_rows_per_epoch"]
    for key in shared:
        np.testing.assert_array_equal(rank0[key], rank1[key], err_msg=key)
    single = _load_script().fit_all(distributed=False, seed=0)
    # The ranks shared the training rows (each row of an epoch on exactly one rank, halves of
    # every batch on each).
    rows = [int(rank["retriever_rows_per_epoch"]) for rank in (rank0, rank1)]
    assert sum(rows) == single["retriever_rows_per_epoch"] and abs(rows[0] - rows[1]) <= 30
    assert abs(float(rank0["retriever_recall"]) - single["retriever_recall"]) <= 3 * SEED_STD
