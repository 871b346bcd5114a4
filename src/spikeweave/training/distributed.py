"""Multi-process data-parallel training through ``torch.distributed`` (launched by torchrun).

``torchrun --standalone --nproc_per_node N $(which spikeweave) train ...`` starts N processes
with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; the
trainer sees them and:

- joins one gloo process group (the trainer runs on the CPU), with a timeout so a killed rank
  ends the job with an error instead of a hang;
- wraps the model in ``DistributedDataParallel`` (gradients averaged across processes);
- shards each epoch's data with a ``DistributedSampler`` seeded from ``(seed, epoch)``: the
  global batch ``batch_size`` is split evenly, ``batch_size / N`` samples per process, and
  the union of the processes' k-th batches is the k-th batch a one-process run of the same
  sampler takes;
- all-reduces the running loss and metric sums, and evaluates each process's share of the
  test set before all-reducing the sums;
- writes run files (metrics, checkpoints, summary, plots) from rank 0 only.

BatchNorm statistics stay per process, as in plain DDP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..errors import ConfigError

__all__ = ["Distributed", "from_environment", "TIMEOUT_S"]

TIMEOUT_S = 120
"""Seconds a collective waits for the other processes before the job fails."""

_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job (``rank`` of ``world``); a one-process run has
    ``world == 1`` and ``active`` False."""

    rank: int = 0
    world: int = 1
    active: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run files and prints progress."""
        return self.rank == 0

    def all_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all processes (float64)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process (any picklable object made by this code)."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.active:
            dist.barrier()

    def close(self, wait: bool = True) -> None:
        """Leave the process group: with ``wait``, first meet the other processes, so none
        tears its side down while another still talks to it (rank 0 hosts the rendezvous
        store); then destroy the group while the interpreter is fully alive. Gloo's threads
        left to interpreter shutdown can abort the process after a successful run. Pass
        ``wait=False`` on an error path, where another process may never arrive."""
        if not (self.active and dist.is_initialized()):
            return
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def from_environment(timeout_s: float = TIMEOUT_S) -> Distributed:
    """Join the process group torchrun describes in the environment, or a one-process
    :class:`Distributed` when there is none."""
    if "WORLD_SIZE" not in os.environ:
        return Distributed()
    missing = [k for k in _ENV if k not in os.environ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE is set but {', '.join(missing)} are not; launch with torchrun "
            "(e.g. torchrun --standalone --nproc_per_node 2 $(which spikeweave) train ...)"
        )
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except ValueError:
        raise ConfigError("RANK and WORLD_SIZE must be integers (set by torchrun)") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK {rank} is not in [0, WORLD_SIZE={world})")
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
    return Distributed(rank, world, active=True)
