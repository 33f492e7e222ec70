"""Run by tests/test_watch_distributed.py: two gloo processes train an FSDP2 model
under `layerlens.watch` and write what watch saw next to DTensor's own numbers."""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard

import layerlens as ll


def run(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
    for layer in (model[0], model[2]):
        fully_shard(layer)
    fully_shard(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    grads, weights = {}, {}
    with ll.watch(model, every=2, optimizer=opt) as w:
        for step in range(4):
            x = torch.randn(8, 6, generator=torch.Generator().manual_seed(step * 10 + rank))
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            if step == 0:  # the truth: the full tensors, gathered by DTensor itself
                grads = {n: p.grad.full_tensor().norm().item() for n, p in model.named_parameters()}
                weights = {n: p.detach().full_tensor().norm().item() for n, p in model.named_parameters()}
            opt.step()
    first = w.history[0]
    found = {
        "steps": [r.step for r in w.history],
        "alerts": [str(a) for a in w.alerts],
        "grad": {p.name: [p.grad_norm, grads[p.name]] for p in first.params},
        "weight": {p.name: [p.weight_norm, weights[p.name]] for p in first.params},
        "ratio": {p.name: p.update_ratio for p in first.params},
    }
    with open(f"{out}.{rank}", "w") as f:
        json.dump(found, f)
    dist.barrier()
    os._exit(0)  # leave without gloo's C++ teardown, which aborts now and then at interpreter exit


if __name__ == "__main__":
    torch.multiprocessing.spawn(run, args=(2, int(sys.argv[1]), sys.argv[2]), nprocs=2)
