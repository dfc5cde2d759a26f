"""Data-parallel training under ``torchrun``: process group, batch shards, per-rank seeds.

``torchrun`` starts one process per device and tells each where it stands through
environment variables: ``RANK`` (0..WORLD_SIZE-1 over all nodes), ``WORLD_SIZE``,
``LOCAL_RANK`` (index on this node; picks the GPU) and ``MASTER_ADDR``/``MASTER_PORT``
(the rendezvous). :func:`init_distributed` turns them into a :class:`DistContext`.

The training engine (:func:`mitodet.engine.train.train`) keeps the single-process data
stream: iteration ``it`` uses global crops ``pos * B + j`` for ``j < B`` (B = the global
``batch_size``); rank ``r`` of ``W`` takes the contiguous share
``j in [r * B / W, (r + 1) * B / W)`` (:func:`rank_batch_indices`), so the union over ranks
is exactly the single-process batch. See ``docs/distributed.md``.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel job.

    Attributes:
        rank: global rank, 0..world_size-1; rank 0 writes every file.
        world_size: number of processes (all nodes).
        local_rank: rank on this node (selects the GPU).
        device: where this rank computes (``cuda:LOCAL_RANK`` or ``cpu``).
        backend: ``nccl`` (GPU) or ``gloo`` (CPU).
        owns_group: True when :func:`init_distributed` created the process group (and so
            :meth:`close` destroys it); False when the caller had initialised it.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str
    owns_group: bool = True

    distributed = True  # (SingleProcess: False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.backend == "nccl":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def all_gather_object(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """``obj`` of rank 0, on every rank."""
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def close(self) -> None:
        """Leave the group: every rank first waits for the others (so none tears down its
        gloo pairs while a peer is still in the last collective: seen as a SIGABRT,
        "terminate called without an active exception", at exit), then destroys it while
        the interpreter is fully alive (pytorch#179291)."""
        import gc

        import torch.distributed as dist

        if self.owns_group and dist.is_initialized():
            try:
                self.barrier()
            finally:
                gc.collect()  # drop DDP reducers and pending work objects before their group goes
                dist.destroy_process_group()


@dataclass(frozen=True)
class SingleProcess:
    """One process as a world of size one: the :class:`DistContext` interface, with every
    collective the identity, so that the training loop has one path for both.

    ``distributed`` is False: no DistributedDataParallel wrapper and no per-rank reseeding, so
    a single-process run draws exactly the random numbers it always has."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed = False

    @property
    def is_main(self) -> bool:
        return True

    def barrier(self) -> None:
        pass

    def all_gather_object(self, obj: Any) -> list[Any]:
        return [obj]

    def broadcast_object(self, obj: Any) -> Any:
        return obj

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def close(self) -> None:
        pass


def distributed_requested() -> bool:
    """True when launched by torchrun (or alike) with more than one process."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def resolve_device(device: str | None, distributed: bool, local_rank: int = 0) -> torch.device:
    """``None``/``"auto"``: a single process trains on the CPU (as it always has), a
    distributed one on ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.
    ``"cuda"`` (no index) means ``cuda:LOCAL_RANK``."""
    if device in (None, "auto"):
        if distributed and torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device {device!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available here; use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    return dev


def init_distributed(device: str | None = None, timeout_s: float = 1800.0) -> DistContext:
    """Join (or adopt) the process group that torchrun's environment describes.

    Uses ``nccl`` when this rank computes on a GPU and ``gloo`` on the CPU. When a process
    group already exists (the caller initialised it) it is used as it is.

    Raises:
        ValueError: not launched by torchrun (no ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``...),
            or a bad ``device``.
    """
    import torch.distributed as dist

    if not dist.is_available():
        raise ValueError("this torch build has no torch.distributed; install a standard torch wheel")
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        dev = resolve_device(device, True, local)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return DistContext(rank, world, local, dev, dist.get_backend(), owns_group=False)
    missing = [v for v in ENV_VARS if v not in os.environ]
    if missing:
        raise ValueError(
            f"distributed training needs torchrun's environment, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set; launch with "
            "`torchrun --nproc-per-node N -m mitodet.cli train ...` (see docs/distributed.md)"
        )
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    dev = resolve_device(device, True, local)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # before the first collective: NCCL binds to the current device
    dist.init_process_group(
        backend=backend,
        timeout=datetime.timedelta(seconds=timeout_s),
        **({"device_id": dev} if dev.type == "cuda" else {}),
    )
    return DistContext(rank, world, local, dev, backend, owns_group=True)


def check_batch_split(batch_size: int, world_size: int) -> int:
    """Images per rank; the global batch must split evenly (a clear error names the fix)."""
    if batch_size % world_size:
        lo = max(world_size, batch_size // world_size * world_size)
        raise ValueError(
            f"batch_size {batch_size} is the global batch and must be divisible by the number of processes "
            f"{world_size}; use --batch-size {lo} or {lo + world_size}, or a process count that divides {batch_size}"
        )
    return batch_size // world_size


def rank_batch_indices(
    it: int, batch_size: int, per_epoch: int, rank: int = 0, world_size: int = 1
) -> tuple[int, list[int]]:
    """(epoch, dataset indices) of this rank's share of the global batch of iteration ``it``.

    With ``world_size == 1`` this is the single-process batch ``pos * B + j``, ``j < B``;
    rank ``r`` takes ``j in [r * B / W, (r + 1) * B / W)``, so the ranks' shares are
    disjoint and together equal the single-process batch.
    """
    share = check_batch_split(batch_size, world_size)
    epoch, pos = divmod(it, per_epoch)
    return epoch, [pos * batch_size + j for j in range(rank * share, (rank + 1) * share)]


def rank_iteration_seed(seed: int, rank: int, it: int) -> int:
    """The torch seed of (seed, rank, iteration) in distributed mode (32 bits).

    The RPN and RoI heads draw their anchor/proposal samples from the global torch RNG.
    Re-seeding it from (seed, rank, it) at every iteration gives each rank its own
    stream, and makes a resumed run draw exactly what an uninterrupted one would, whatever
    the checkpoint (which holds one RNG state, rank 0's) and whatever the world size.
    """
    return int(np.random.SeedSequence([seed, rank, it, 0x6D69746F]).generate_state(1)[0])


def has_running_stats(model: torch.nn.Module) -> bool:
    """True when the model holds BatchNorm layers that update running statistics (``norm='bn'``)."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
