"""torch.distributed helpers: one process per device under ``torchrun``, a plain process otherwise.

kgzsl scales past one machine with the standard engine only: ``torchrun`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables, :func:`init_distributed` joins the
process group (NCCL on GPUs, gloo on CPU) and every command shards its work by
:attr:`DistContext.rank`. Without ``torchrun`` nothing changes: ``world_size`` is 1 and no
process group is created.

Example:
    >>> ctx = init_distributed("auto")           # under torchrun --nproc_per_node 2: rank 0 or 1
    >>> mine = shard_indices(10, ctx)            # rank 0: [0, 2, 4, 6, 8]; rank 1: [1, 3, 5, 7, 9]
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from kgzsl.errors import InputError
from kgzsl.utils.device import resolve_device

__all__ = ["DistContext", "init_distributed", "shard_indices", "gather_objects", "barrier", "broadcast_object",
           "gather_tensors", "close_distributed", "all_ranks_agree"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly one-process) job.

    Attributes:
        rank: Global rank, 0 without torchrun.
        world_size: Number of processes, 1 without torchrun.
        local_rank: Rank on this node (picks the GPU).
        device: The device this process computes on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that prints and writes shared results (rank 0)."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(f"environment variable {name}={value!r} is not an integer; launch with "
                         "`torchrun --nproc_per_node N -m kgzsl ...` or unset it") from None


def init_distributed(device: str | torch.device = "auto") -> DistContext:
    """Join the torchrun process group if there is one, and pick this process's device.

    Reads ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (set by ``torchrun``). With more than one
    process the default group is initialised once (``nccl`` when the device is CUDA, ``gloo``
    otherwise) and each process takes GPU ``LOCAL_RANK``. Calling it again returns the same context.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...; under torchrun ``"cuda"`` becomes
            ``cuda:<LOCAL_RANK>``.

    Returns:
        The :class:`DistContext` of this process.

    Raises:
        ValueError: If the torchrun variables are malformed or ``RANK`` is not below ``WORLD_SIZE``.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"RANK={rank} and WORLD_SIZE={world} do not describe a valid job; launch with torchrun")
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local % max(1, torch.cuda.device_count()))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"backend": backend}
        if backend == "nccl":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
        logger.info("rank %d of %d joined the %s process group on %s", rank, world, backend, dev)
    return DistContext(rank=rank, world_size=world, local_rank=local, device=dev)


def shard_indices(n: int, ctx: DistContext) -> list[int]:
    """This rank's items of ``n``: a strided, disjoint split covering every item exactly once.

    Unlike ``DistributedSampler`` it never pads by repeating items, so ``n`` need not divide by
    the world size and no image is counted twice.
    """
    return list(range(ctx.rank, n, ctx.world_size))


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` in rank order (a one-item list without torchrun).

    Objects travel pickled between the processes of one job (torch's ``all_gather_object``); they
    are never read from files.
    """
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op without torchrun)."""
    if ctx.distributed:
        dist.barrier()


def all_ranks_agree(obj: Any, ctx: DistContext) -> bool:
    """True when every rank holds an equal ``obj`` (compared by a digest of its ``repr``, item by item for a list).

    Every rank gets the same answer, so all can raise together, e.g. when a folder changed between
    the ranks' listings of it. Always True without torchrun.
    """
    if not ctx.distributed:
        return True
    digest = hashlib.sha256()
    for item in obj if isinstance(obj, (list, tuple)) else [obj]:  # millions of paths: no giant string
        digest.update(repr(item).encode("utf-8", "surrogateescape") + b"\0")
    return len(set(gather_objects(digest.hexdigest(), ctx))) == 1


def close_distributed(ctx: DistContext) -> None:
    """Leave the process group at the end of a command (no-op without torchrun).

    A gloo or NCCL group still alive at interpreter exit can abort the process from its C++
    threads ("terminate called without an active exception"), so commands call this last.
    """
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj: Any, ctx: DistContext, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself without torchrun).

    Like :func:`gather_objects`, the object travels pickled between the processes of one job only.
    """
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_tensors(tensor: torch.Tensor, ctx: DistContext, dst: int = 0,
                   chunk_bytes: int = 64 << 20) -> list[torch.Tensor] | None:
    """Every rank's ``tensor`` on rank ``dst``, in rank order; the first dimension may differ by rank.

    The rows travel in rounds of at most ``chunk_bytes`` per rank (padded to the longest rank's
    rows, padding dropped on arrival), so neither the device nor the sender holds a second copy
    of a large feature matrix. Every rank must call it, with tensors of the same dtype and the same
    trailing dimensions.

    Args:
        tensor: This rank's ``[n_rank, ...]`` tensor (any device; sent from :attr:`DistContext.device`).
        ctx: The job, from :func:`init_distributed`.
        dst: The rank that receives.
        chunk_bytes: Upper bound on the bytes one rank sends per round.

    Returns:
        On ``dst``, the ``world_size`` tensors on the CPU; on the other ranks None. Without
        torchrun, ``[tensor]`` on the CPU.

    Raises:
        ValueError: If the ranks' tensors differ in dtype or trailing dimensions (raised on every rank).
    """
    if not ctx.distributed:
        return [tensor.cpu()]
    if tensor.ndim == 0:
        raise ValueError("gather_tensors needs tensors with a first (row) dimension; got a scalar")
    shapes = gather_objects((tuple(tensor.shape), str(tensor.dtype)), ctx)
    if len({(shape[1:], dtype) for shape, dtype in shapes}) > 1:
        raise ValueError(f"gather_tensors: ranks hold tensors of different dtype or trailing shape: {shapes}")
    sizes = [shape[0] for shape, _ in shapes]
    send = tensor.to(torch.uint8) if tensor.dtype == torch.bool else tensor
    row_bytes = math.prod(send.shape[1:]) * send.element_size()  # the same on every rank, so is step
    step = max(1, chunk_bytes // max(1, row_bytes))
    parts: list[list[torch.Tensor]] = [[] for _ in sizes]
    for start in range(0, max(sizes), step):
        rows = min(step, max(sizes) - start)
        buf = torch.zeros((rows, *send.shape[1:]), dtype=send.dtype, device=ctx.device)
        mine = send[start:start + rows]
        buf[:mine.size(0)] = mine.to(ctx.device)
        bufs = [torch.empty_like(buf) for _ in sizes] if ctx.rank == dst else None
        dist.gather(buf, bufs, dst=dst)
        if bufs is not None:
            for r, b in enumerate(bufs):
                parts[r].append(b[:max(0, min(rows, sizes[r] - start))].cpu())
    if ctx.rank != dst:
        return None
    out = [torch.cat(p) if p else torch.zeros((0, *send.shape[1:]), dtype=send.dtype) for p in parts]
    return [o.bool() for o in out] if tensor.dtype == torch.bool else out
