"""``torchrun`` DDP support: process-group setup from the launcher's environment.

``torchrun --nproc_per_node N -m minivess train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; without them training runs as a single process. NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from minivess.settings import DistEnv, dist_env

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job: ``rank`` of ``world_size``, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs, validates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1


def setup(env: DistEnv | None = None) -> DistContext:
    """Join the torchrun process group when the launcher's variables are set.

    Args:
        env: the rank facts (default: read by :func:`minivess.settings.dist_env`).
    """
    import torch
    import torch.distributed as dist

    env = env or dist_env()
    world, rank, local = env.world_size, env.rank, env.local_rank
    cuda = torch.cuda.is_available()
    device = f"cuda:{local}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(local)
    if world <= 1:
        return DistContext(device=device)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if cuda else "gloo"
        dist.init_process_group(backend=backend)
        owns = True
        log.info("ddp: rank %d/%d joined (%s backend)", rank, world, backend)
    return DistContext(
        rank=rank, world_size=world, local_rank=local, device=device, owns_group=owns
    )


def teardown(ctx: DistContext) -> None:
    """Leave the process group if :func:`setup` created it."""
    import torch.distributed as dist

    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op for a single process)."""
    import torch.distributed as dist

    if ctx.distributed:
        dist.barrier()


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True when ``flag`` is true on at least one rank (so all ranks stop at the same step)."""
    if not ctx.distributed:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_float(ctx: DistContext, value: float) -> float:
    """Rank 0's ``value`` on every rank."""
    if not ctx.distributed:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.broadcast(t, src=0)
    return float(t.item())


def mean_float(ctx: DistContext, value: float) -> float:
    """Mean of ``value`` over all ranks (e.g. each rank's training loss)."""
    if not ctx.distributed:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / ctx.world_size
