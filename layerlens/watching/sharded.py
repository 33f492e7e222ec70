"""Norms of sharded tensors (FSDP2's DTensor parameters and gradients): each rank
holds a shard, so a parameter's norm is the root of the sum over ranks of its
shards' squared norms. One all-reduce per quantity, on sampled steps only."""

from __future__ import annotations

from typing import Any

import torch


def is_distributed_tensor(t: Any) -> bool:
    return hasattr(t, "to_local") and hasattr(t, "placements")


def local(t: torch.Tensor) -> torch.Tensor:
    """The rank's own part of a DTensor (the tensor itself otherwise)."""
    part: torch.Tensor = t.to_local() if is_distributed_tensor(t) else t  # type: ignore[attr-defined]
    return part


def local_norm(t: torch.Tensor) -> float:
    """The 2-norm of this rank's part of `t`, as a mark that says whether it changed
    (no collective: each rank compares its own part)."""
    with torch.no_grad():
        return float(local(t).detach().float().norm())


def global_norms(tensors: list[torch.Tensor], both: bool = False) -> list[float]:
    """The 2-norm of every tensor over all ranks (then, with `both`, its largest |value|)."""
    import torch.distributed as dist

    squares, maxes = [], []
    for t in tensors:
        part = local(t).detach().to(torch.float64)
        share = 1.0 if _sharded(t) else 1.0 / _replicas(t)  # a replicated tensor is counted once
        squares.append(part.pow(2).sum() * share)
        maxes.append(part.abs().max() if part.numel() else part.new_zeros(()))
    sq = torch.stack(squares) if squares else torch.zeros(0, dtype=torch.float64)
    mx = torch.stack(maxes) if maxes else torch.zeros(0, dtype=torch.float64)
    if dist.is_available() and dist.is_initialized() and any(is_distributed_tensor(t) for t in tensors):
        dist.all_reduce(sq)
        if both:
            dist.all_reduce(mx, op=dist.ReduceOp.MAX)
    norms = sq.sqrt().tolist()
    return norms + mx.tolist() if both else norms


def _sharded(t: Any) -> bool:
    return is_distributed_tensor(t) and any(p.is_shard() for p in t.placements)


def _replicas(t: Any) -> int:
    if not is_distributed_tensor(t):
        import torch.distributed as dist

        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    return int(t.device_mesh.size())
