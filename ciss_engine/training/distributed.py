"""Data-parallel base training across the processes ``torchrun`` starts (one per GPU, or CPU shares).

torchrun tells each process where it stands through ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``. A run
without them is rank 0 of 1: every method here then returns at once without a torch.distributed call,
so a plain run stays bit-identical to one made before this module existed. Torch is imported inside the
functions because the CLI reads the launch before it loads torch.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from ..errors import InputError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

# How long a rank waits in a collective. The longest wait is the other ranks' while rank 0 computes the
# prototypes and writes the bundle (minutes on a large CPU cohort); torch's defaults (10 min NCCL,
# 30 min gloo) could end a healthy run. A rank that fails is stopped sooner by torchrun itself.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


@dataclasses.dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a torchrun launch; the default is a plain, single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> DistributedContext:
        return cls(rank=int(os.environ.get("RANK", 0)), world_size=int(os.environ.get("WORLD_SIZE", 1)), local_rank=int(os.environ.get("LOCAL_RANK", 0)))

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints and the bundle and reports events."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def rank_seed(self, seed: int) -> int:
        """This rank's sampling seed: rank 0 keeps ``seed`` (a 1-process run draws today's patches), the
        others get independent streams so no two ranks train on the same patches."""
        if self.rank == 0:
            return seed
        import numpy as np

        return int(np.random.SeedSequence(seed, spawn_key=(self.rank,)).generate_state(1)[0])

    def wrap(self, network: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``network`` in DistributedDataParallel (gradients averaged over the ranks during backward) when
        there are several ranks; the network itself otherwise."""
        if not self.is_distributed:
            return network
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)

    def any_rank(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on any: ranks that decide together (to stop on cancel)
        leave none of them waiting in a collective the others no longer reach."""
        if not self.is_distributed:
            return flag
        import torch
        import torch.distributed as dist

        votes = torch.tensor([int(flag)], device=device)
        dist.all_reduce(votes, op=dist.ReduceOp.MAX)
        return bool(votes.item())

    def run_on_main(self, work: Callable[[], T]) -> T:
        """``work()`` on rank 0 alone, its result handed to every rank: one process writes a file, the others
        wait until it is there."""
        if not self.is_distributed:
            return work()
        import torch.distributed as dist

        result = [work() if self.is_main else None]
        dist.broadcast_object_list(result, src=0)
        return result[0]  # type: ignore[return-value]


@contextlib.contextmanager
def process_group(context: DistributedContext, device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group for the block (gloo on CPU, NCCL on CUDA) and leave it afterwards;
    yields this rank's device (``cuda:LOCAL_RANK`` on CUDA). A plain run yields ``device`` untouched."""
    if not context.is_distributed:
        yield device
        return
    import torch
    import torch.distributed as dist

    if device.type == "cuda":
        if context.local_rank >= torch.cuda.device_count():
            raise InputError(
                f"torchrun started local rank {context.local_rank} but this node has {torch.cuda.device_count()} GPU(s)",
                "pass --nproc_per_node at most the number of GPUs of each node",
            )
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    try:
        yield device
    finally:
        dist.destroy_process_group()
