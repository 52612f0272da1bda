"""Multi-process training with PyTorch DistributedDataParallel, set up from `torchrun`'s environment.

torchrun starts one process per device and gives each WORLD_SIZE, RANK, LOCAL_RANK (and MASTER_ADDR /
MASTER_PORT for the rendezvous). :meth:`DistributedContext.from_environment` reads them; without them, or
with WORLD_SIZE 1, the context is a single process and every helper here does nothing, so one training
loop serves both cases. How the processes share the work is described in docs/scaling.md.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from stagediff.errors import ConfigError


@dataclass(frozen=True)
class DistributedContext:
    """This process's place among the ``world_size`` processes that train one model together."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> DistributedContext:
        """The running process group if there is one, else torchrun's WORLD_SIZE / RANK / LOCAL_RANK,
        else a single process."""
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank()
            return cls(dist.get_world_size(), rank, int(os.environ.get("LOCAL_RANK", rank)))
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        if "RANK" not in os.environ:
            raise ConfigError(
                f"WORLD_SIZE is {world_size} but RANK is not set; start the processes with torchrun, which sets both"
            )
        if not dist.is_available():
            raise ConfigError(
                "WORLD_SIZE > 1 asks for multi-process training, but this PyTorch build has no "
                "torch.distributed; run a single process (unset WORLD_SIZE)"
            )
        rank = int(os.environ["RANK"])
        return cls(world_size, rank, int(os.environ.get("LOCAL_RANK", rank)))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """Each process of a multi-GPU run trains on its own GPU, cuda:LOCAL_RANK."""
        return torch.device("cuda", self.local_rank) if self.enabled and device.type == "cuda" else device

    def shard(self, batch_size: int) -> slice:
        """This process's contiguous rows of a global batch of ``batch_size``."""
        if batch_size % self.world_size:
            raise ConfigError(
                f"batch_size {batch_size} (the global batch) must be divisible by the number of "
                f"processes, {self.world_size}; choose a batch_size that is a multiple of "
                f"{self.world_size} or start another number of processes"
            )
        rows = batch_size // self.world_size
        return slice(self.rank * rows, (self.rank + 1) * rows)

    @contextlib.contextmanager
    def process_group(self, device: torch.device) -> Iterator[None]:
        """The default process group for the duration (gloo on the CPU, nccl on CUDA), created from the
        environment unless one exists already, and destroyed afterwards only if it was created here."""
        if not self.enabled or dist.is_initialized():
            yield
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", rank=self.rank, world_size=self.world_size, device_id=device)
        else:
            dist.init_process_group("gloo", rank=self.rank, world_size=self.world_size)
        try:
            yield
        finally:
            dist.destroy_process_group()

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` in DistributedDataParallel, which averages the gradients over the processes in backward.

        static_graph: the set of used parameters is the same at every step, so DDP finds the unused ones
        (the fusion convolutions of a single-stage model) once and leaves their gradients None, as a single
        process does. The buffers are constants, so they are not broadcast at every forward."""
        if not self.enabled:
            return model
        return DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            forward_sync_buffers=False,
            static_graph=True,
        )

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over the processes (equal shards: the mean over the global batch)."""
        if not self.enabled:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def all_agree(self, flag: bool) -> bool:
        """Whether every process has the same ``flag``."""
        if not self.enabled:
            return True
        flags: list[bool | None] = [None] * self.world_size
        dist.all_gather_object(flags, flag)
        return len(set(flags)) == 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def is_main_process() -> bool:
    """True in a single process and on rank 0 of a torchrun job: the process that saves and prints."""
    return DistributedContext.from_environment().is_main


def local_world_size() -> int:
    """How many processes torchrun started on this machine (1 without torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
