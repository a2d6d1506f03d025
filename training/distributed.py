"""Data-parallel training under `torchrun`: DistributedDataParallel, gloo on CPU, NCCL on GPU.

A job calls `setup()` once, wraps its model with `wrap()`, and takes its share of every
global batch with `local_slice()`. Each rank sees an equal, contiguous slice of the same
global batch a single process would see, and DDP averages gradients across ranks, so a
2-process run follows the single-process trajectory up to float reduction order. That
equivalence is what tests/test_distributed.py checks.

Without torchrun's environment (WORLD_SIZE unset) every function is a no-op, so the same
job code runs single-process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes artifacts and results."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: str = "cpu") -> DistContext:
    """Join the process group torchrun describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(device=torch.device(device))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = device.startswith("cuda") and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return DistContext(rank, world_size, torch.device("cuda", local_rank))
    return DistContext(rank, world_size, torch.device("cpu"))


class LossModule(nn.Module):
    """Routes `calculate_loss` through `forward`: DDP syncs gradients only for forward calls.

    `loss_fn`, when given, is called with `forward`'s arguments instead of
    `model.calculate_loss`. That serves a loss that is not the model's own, over a module that
    holds only the parameters being trained (MetaCVR's stage 2: the DMN and EPN, not the
    frozen FRN). It is stored as a plain attribute, so whatever it closes over is not
    registered as a submodule and DDP neither broadcasts nor reduces it.
    """

    def __init__(
        self, model: nn.Module, loss_fn: Callable[..., torch.Tensor] | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, *args: Any) -> torch.Tensor:
        if self.loss_fn is not None:
            return self.loss_fn(*args)
        return self.model.calculate_loss(*args)  # type: ignore[operator]


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DDP-wrap for multi-process runs; the bare model otherwise.

    `find_unused_parameters` because ablation switches (no fusion, no uncertainty weighting)
    leave some parameters without gradients, which plain DDP treats as an error.
    """
    if not ctx.enabled:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=True
    )


def share_weight(local_rows: int, global_rows: int, ctx: DistContext) -> float:
    """Factor for a rank's mean loss so that DDP's gradient average equals the global mean.

    DDP averages gradients over ranks; with unequal shares (the last batch of an epoch) a plain
    average of per-rank means would over-weight the smaller share.
    """
    return local_rows * ctx.world_size / global_rows


def unwrap(model: nn.Module) -> nn.Module:
    """The underlying module, for export and for calling model-specific methods."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def local_slice(global_batch_size: int, ctx: DistContext) -> slice:
    """This rank's contiguous share of a global batch (equal shares; the last may be short)."""
    if not ctx.enabled:
        return slice(0, global_batch_size)
    share = -(-global_batch_size // ctx.world_size)
    start = min(ctx.rank * share, global_batch_size)
    return slice(start, min(start + share, global_batch_size))


def mean_across_ranks(value: float, ctx: DistContext) -> float:
    """Average a scalar (a loss for logging) over ranks."""
    if not ctx.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor.item() / ctx.world_size)


def broadcast_from_main(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Rank 0's value of `tensor` on every rank (in place; returned for chaining).

    For state computed outside the gradient path that every rank must hold bit for bit
    (MetaCVR's prototypes): each rank computes it, then all take rank 0's, so no reduction
    order or thread count can make the replicas drift apart.
    """
    if ctx.enabled:
        on_device = tensor.to(ctx.device)  # NCCL broadcasts GPU tensors only
        dist.broadcast(on_device, src=0)
        if on_device is not tensor:
            tensor.copy_(on_device)
    return tensor


def teardown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
