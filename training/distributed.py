"""Data parallelism under `torchrun`: one process per device, gradients averaged after backward.

Every rank draws the same global batch indices and latents from identically seeded generators
and keeps its own slice, so N processes with a global batch B take the same step as one
process with batch B (up to float summation order). Gradients are averaged with one
all-reduce per network rather than with DistributedDataParallel's hooks, because the gradient
penalties (R1, WGAN-GP) need double backward, which DDP does not support.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_slice(self, global_batch: int) -> slice:
        share = global_batch // self.world_size
        return slice(self.rank * share, (self.rank + 1) * share)


def init(device_choice: str) -> Context:
    """Join the process group when launched by torchrun; otherwise a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device_choice == "cuda" or (device_choice == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        from .errors import ConfigError
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu or auto")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if world_size > 1 else 0
    return Context(rank=rank, world_size=world_size, device=device)


def average_gradients(module: torch.nn.Module, ctx: Context) -> None:
    if ctx.world_size == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def barrier(ctx: Context) -> None:
    if ctx.world_size > 1:
        dist.barrier()


def shutdown(ctx: Context) -> None:
    if ctx.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
