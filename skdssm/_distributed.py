"""Data-parallel training under ``torch.distributed``: environment checks and process group.

The launcher (``torchrun`` / ``python -m torch.distributed.run``) starts one process per rank and
sets the environment read here; every process runs the same script and calls ``fit`` on the same
frame. Everything built from the frame (vocabularies, samplers, histories, the validation split)
is then identical on every rank, and only the training rows are sharded (see
:class:`~skdssm._skorch.BatchLoader`).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

# What torch.distributed's env:// initialisation reads; the launcher sets all of them.
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def check_environment() -> None:
    """Raise a ValueError naming the variables a launcher would have set, when some are absent
    (and no process group exists yet)."""
    if dist.is_available() and dist.is_initialized():
        return
    if not dist.is_available():
        raise ValueError("distributed=True needs torch.distributed, which this torch build "
                         "lacks; use distributed=False.")
    missing = [name for name in LAUNCHER_VARIABLES if name not in os.environ]
    if missing:
        raise ValueError(
            f"distributed=True trains one shard of the rows per process, but the environment "
            f"variables {missing} that a torch.distributed launcher sets are missing. Launch the "
            "script with `torchrun --nproc_per_node=N script.py` (or `python -m "
            "torch.distributed.run ...`), initialise a process group yourself, or use "
            "distributed=False."
        )


def local_rank() -> int:
    """This process's device number on its machine (``LOCAL_RANK``, 0 if unset)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def init_process_group(device: str) -> tuple[int, int]:
    """``(rank, world_size)``, creating the default process group if there is none: NCCL for a
    CUDA device, gloo otherwise. A group the script created is used as it is, and the group is
    left in place after ``fit`` (the script may fit again, or call
    ``torch.distributed.destroy_process_group``)."""
    check_environment()
    if not dist.is_initialized():
        device = torch.device(device)
        if device.type == "cuda":
            # NCCL's collectives run on the current device: make it this process's GPU.
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def rank_seed(seed: int) -> int:
    """A seed for this rank's own randomness (dropout, sampled negatives): ``seed`` on rank 0
    and outside a process group, a different one on every other rank, so ranks do not draw the
    same masks and negatives for different rows. Weights need no such care: the data-parallel
    wrapper gives every rank rank 0's initial weights."""
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    return (seed + rank) % 2**32


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over all ranks (the same value on every rank)."""
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()
