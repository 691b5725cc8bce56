"""Benchmark workload: a long training loop that is light on the CPU.

A small model, AdamW and a DataLoader with worker processes, paced: each step computes for about
a millisecond and then sleeps until its slot (``--step-ms``) is over, so an hour-long run uses a
few percent of a core and can run beside other work on a shared 2-core machine. probe records
from it what it records from any training run: steps (the optimizer hook), DataLoader waits,
worker batch timings, GC pauses, sampled stacks of every thread of every process, the process
tree from outside. At the default 36 ms a step, an hour is 100 000 steps, as in
analysis_scale.py's synthetic sessions.

Ends after ``--seconds`` of loop and prints ``{"loop_s": ..., "steps": ...}`` to stdout.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset


class Batches(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    """Small random batches, endlessly (each worker its own stream)."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def __iter__(self):  # type: ignore[no-untyped-def]
        info = torch.utils.data.get_worker_info()
        g = torch.Generator().manual_seed(0 if info is None else info.id + 1)
        while True:
            x = torch.randn(self.batch_size, 32, generator=g)
            yield x, (x.sum(dim=1) > 0).long()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--step-ms", type=float, default=36.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    loader = DataLoader(
        Batches(args.batch_size), batch_size=None, num_workers=args.workers, prefetch_factor=2
    )
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    step_s = args.step_ms / 1000
    start = time.perf_counter()
    deadline = start + args.seconds
    slot = start
    steps = 0
    for x, y in loader:
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        slot += step_s
        now = time.perf_counter()
        if now >= deadline:
            break
        if slot > now:
            time.sleep(slot - now)
        else:
            slot = now  # late (a busy machine): no catching up in a burst
    loop_s = time.perf_counter() - start
    print(json.dumps({"loop_s": loop_s, "steps": steps}), flush=True)


if __name__ == "__main__":
    main()
