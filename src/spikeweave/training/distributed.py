"""Multi-process data-parallel training through ``torch.distributed`` (launched by torchrun).

``torchrun --standalone --nproc_per_node N $(which spikeweave) train ...`` starts N processes
with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; the
trainer sees them and:

- places this process (:func:`choose_placement`, a pure function of the requested device,
  ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and the GPUs torch sees): on GPUs, one process per GPU,
  ``cuda:LOCAL_RANK``, with NCCL when every process of the node has its own GPU; gloo on the
  CPU, or when processes share a GPU;
- joins that process group with a timeout, so a killed rank ends the job with an error
  instead of a hang (on NCCL, ``TORCH_NCCL_BLOCKING_WAIT=1`` unless set: a timed-out
  collective raises in the training thread, where the CLI turns it into one line, instead of
  NCCL's watchdog aborting the process);
- wraps the model in ``DistributedDataParallel`` (gradients averaged across processes), with
  BatchNorm converted to ``SyncBatchNorm`` first when ``sync_batchnorm`` is on;
- shards each epoch's data with a ``DistributedSampler`` seeded from ``(seed, epoch)``: the
  global batch ``batch_size`` is split evenly, ``batch_size / N`` samples per process, and
  the union of the processes' k-th batches is the k-th batch a one-process run of the same
  sampler takes;
- all-reduces the running loss and metric sums, and evaluates each process's share of the
  test set before all-reducing the sums;
- writes run files (metrics, checkpoints, summary, plots) from rank 0 only.

Without ``sync_batchnorm``, BatchNorm statistics stay per process, as in plain DDP, so a model
with BatchNorm trained by N processes differs from one process's. torch's ``SyncBatchNorm``
runs only on GPUs, so the option is refused on CPU processes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..errors import ConfigError

__all__ = [
    "Distributed",
    "from_environment",
    "choose_placement",
    "sync_batchnorm",
    "TIMEOUT_S",
]

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
    device: str = ""
    """This process's device (``cpu`` or ``cuda:N``) in a torchrun job; empty: the run's own
    choice (one process)."""
    backend: str = "gloo"

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run files and prints progress."""
        return self.rank == 0

    def all_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all processes (float64)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process (any picklable object made by this code)."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self._comm_device)
        return box[0]

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.active:
            self._barrier()

    @property
    def _comm_device(self) -> torch.device:
        """Where collectives' tensors live: NCCL takes only CUDA tensors, gloo CPU ones."""
        return torch.device(self.device if self.backend == "nccl" else "cpu")

    def _barrier(self) -> None:
        if self.backend == "nccl":  # name the GPU, or NCCL guesses one from the rank
            dist.barrier(device_ids=[torch.device(self.device).index or 0])
        else:
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
            self._barrier()
        dist.destroy_process_group()


def choose_placement(
    requested: str, local_rank: int, local_world: int, cuda_devices: int, nccl_available: bool
) -> tuple[str, str]:
    """``(backend, device)`` for one process of a torchrun job; pure, so testable anywhere.

    Args:
        requested: ``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu``, ``cuda`` or
            ``cuda:N``.
        local_rank, local_world: this process's index among the node's processes, and their
            number (torchrun's ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``).
        cuda_devices: GPUs this process sees (``torch.cuda.device_count()``).
        nccl_available: torch was built with NCCL.

    ``auto``/``cuda`` give process ``i`` the GPU ``cuda:i`` (``i mod GPUs`` when there are more
    processes than GPUs); ``cuda:N`` puts every process of the node on GPU N. NCCL needs each
    process on a GPU of its own; otherwise (CPU, or processes sharing a GPU) the backend is
    gloo. Every node of a multi-node job must have as many GPUs as processes, or none of them.
    Raises :class:`ConfigError` for CUDA without a GPU or an unknown device name.
    """
    name = requested.strip().lower()
    if name == "cpu" or (name == "auto" and cuda_devices == 0):
        return "gloo", "cpu"
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if name != "auto" and match is None:
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {requested!r}")
    if cuda_devices == 0:
        raise ConfigError(
            f"device {requested!r} asks for CUDA, but torch sees no GPU in this process; "
            "use --device cpu (or auto)"
        )
    if match is not None and match.group(1) is not None:
        index = int(match.group(1))
        if index >= cuda_devices:
            raise ConfigError(
                f"device {requested!r} does not exist: torch sees {cuda_devices} GPU(s), "
                f"cuda:0 to cuda:{cuda_devices - 1}"
            )
        own = local_world == 1
    else:
        index, own = local_rank % cuda_devices, local_world <= cuda_devices
    return ("nccl" if own and nccl_available else "gloo"), f"cuda:{index}"


def sync_batchnorm(model: torch.nn.Module, placed: Distributed) -> torch.nn.Module:
    """``model`` with every BatchNorm converted to ``SyncBatchNorm`` (statistics over the
    global batch), for a job whose processes are on GPUs. The parameters and buffers are the
    same tensor objects, so an optimizer built over ``model`` keeps working. Raises
    :class:`ConfigError` on a CPU process: torch's ``SyncBatchNorm`` runs only on GPUs."""
    if not placed.device.startswith("cuda"):
        raise ConfigError(
            "sync_batchnorm needs one GPU per process (torch's SyncBatchNorm has no CPU "
            "implementation); turn it off, or train with --device cuda"
        )
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _env_int(env: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(env.get(key, default))
    except ValueError:
        raise ConfigError(f"{key} must be an integer (set by torchrun)") from None


def from_environment(timeout_s: float = TIMEOUT_S, device: str = "cpu") -> Distributed:
    """Join the process group torchrun describes in the environment, or a one-process
    :class:`Distributed` when there is none. ``device`` is the run's request
    (its ``device``); the process's own device and backend come from
    :func:`choose_placement`, and a CUDA process makes its GPU the current one."""
    env = os.environ
    if "WORLD_SIZE" not in env:
        return Distributed()
    missing = [k for k in _ENV if k not in env]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE is set but {', '.join(missing)} are not; launch with torchrun "
            "(e.g. torchrun --standalone --nproc_per_node 2 $(which spikeweave) train ...)"
        )
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    except ValueError:
        raise ConfigError("RANK and WORLD_SIZE must be integers (set by torchrun)") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK {rank} is not in [0, WORLD_SIZE={world})")
    # Launched by hand without LOCAL_*: one node, so the global rank is the local one.
    local_rank, local_world = (
        _env_int(env, "LOCAL_RANK", rank),
        _env_int(env, "LOCAL_WORLD_SIZE", world),
    )
    if local_world < 1 or not 0 <= local_rank < local_world:
        raise ConfigError(f"LOCAL_RANK {local_rank} is not in [0, LOCAL_WORLD_SIZE={local_world})")
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    backend, where = choose_placement(
        device, local_rank, local_world, cuda, dist.is_nccl_available()
    )
    if where.startswith("cuda"):
        torch.cuda.set_device(torch.device(where))
    if backend == "nccl":
        # A dead peer then raises in this thread after the timeout (one line from the CLI)
        # instead of NCCL's watchdog aborting the process with a C++ trace.
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return Distributed(rank, world, active=True, device=where, backend=backend)
