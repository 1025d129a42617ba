"""Data-parallel training across the processes `torchrun` starts (gloo on CPU, NCCL on CUDA).

Each step's global batch of `batch_size` scenes (the scenes, positions and random draws one
process would take) is split over the ranks, scene k of the batch to rank k mod world size.
Every loss term is a mean over its elements (pairs or sampled voxels), so each rank weights its
term by its share of the step's elements and the gradients are summed across ranks with one
all_reduce: the sum is the gradient of one process's loss over the whole batch. There is no
DistributedDataParallel wrapper (it does wrap the ME encoder on CPU): the model is called
piecewise (encoder, transformers), a phase uses only some modules, and a rank may have no scene
in a step's last batch, none of which needs hooks here; the price is no overlap of the
all_reduce with the backward pass.

What still differs from one process, by construction: BatchNorm normalises each rank's voxels
with that rank's batch statistics, and its running variance is each rank's unbiased estimate
(n / (n - 1) with the rank's n voxels) averaged over the ranks after every step; and the
inter-scene transformer (Eq. 7) attends across the scenes of one rank's slice, not the whole
batch. Only rank 0 writes logs and checkpoints; validation scenes are split over the ranks and
their confusion matrices summed.
"""
from __future__ import annotations

import atexit
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

T = TypeVar("T")


def rank_from_env() -> int:
    """This process's rank as torchrun sets it (0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


@dataclass(frozen=True)
class Context:
    """Rank, world size and the device of this process."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this process writes logs and checkpoints."""
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of `items`: every world-th one, starting at its rank."""
        return list(items[self.rank::self.world])


def setup(device: torch.device) -> Context:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, MASTER_ADDR...), if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Context(0, 1, device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(dist.destroy_process_group)
    return Context(dist.get_rank(), dist.get_world_size(), device)


def all_sum(ctx: Context, tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over the ranks, in place (unchanged in one process)."""
    if ctx.world > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_sum_array(ctx: Context, array: np.ndarray) -> np.ndarray:
    """A NumPy array summed over the ranks (the array itself in one process)."""
    if ctx.world == 1:
        return array
    return all_sum(ctx, torch.from_numpy(array).to(ctx.device)).cpu().numpy()


def broadcast_state(ctx: Context, modules: Iterable[nn.Module]) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if ctx.world == 1:
        return
    for module in modules:
        for tensor in (*module.parameters(), *module.buffers()):
            dist.broadcast(tensor.data, src=0)


def sum_gradients(ctx: Context, params: Sequence[nn.Parameter]) -> None:
    """Sum gradients across ranks; a parameter no rank computed a gradient for keeps None.

    One all_reduce of a flat buffer: each gradient (zeros where this rank has none) plus one
    flag per parameter counting the ranks that had one.
    """
    if ctx.world == 1:
        return
    parts = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in params]
    flags = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=ctx.device)
    flat = all_sum(ctx, torch.cat([*parts, flags]))
    offset = 0
    for param, had in zip(params, flat[-len(params):].tolist(), strict=True):
        size = param.numel()
        param.grad = flat[offset:offset + size].view_as(param).clone() if had else None
        offset += size


def average_buffers(ctx: Context, modules: Iterable[nn.Module], ran: bool) -> None:
    """Every buffer (BatchNorm's running statistics) averaged over the ranks that `ran` a forward pass.

    Called after every training step, so the ranks keep one copy and a rank without scenes in a
    step does not pull the average towards its stale statistics.
    """
    if ctx.world == 1:
        return
    buffers = [b for module in modules for b in module.buffers()]
    flat = torch.cat([*(b.detach().reshape(-1).double() for b in buffers),
                      torch.ones(1, dtype=torch.float64, device=ctx.device)])
    flat = all_sum(ctx, flat * float(ran))
    flat = flat[:-1] / flat[-1]
    offset = 0
    for buffer in buffers:
        size = buffer.numel()
        buffer.copy_(flat[offset:offset + size].view_as(buffer))
        offset += size
