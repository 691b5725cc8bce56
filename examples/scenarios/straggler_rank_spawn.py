"""Straggler rank: 2 ranks started by torch.multiprocessing.spawn, gradients all-reduced by hand.

No torchrun and no DDP wrapper: the program spawns its own ranks (gloo, CPU), and after each
backward pass every parameter's gradient is summed with `dist.all_reduce` in a Python loop. Rank
1 also runs a per-batch "data quality" check (an SVD of a feature block) and reads its shard from
slower storage (a 30 ms wait), so rank 0 finishes its backward early and waits in the
all-reduce for rank 1 every step. The ranks' own code is only a frame or two below torch's
spawn wrapper, which is what this scenario checks: the wrapper is not what a rank is doing.

    probe doctor -- python examples/scenarios/straggler_rank_spawn.py
"""

import argparse
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quality_check(x: torch.Tensor) -> float:
    """Rank 1's extra work: the spectrum of a block of the batch's features."""
    return float(torch.linalg.svdvals(x[:96, :96]).max())


def run(rank: int, world: int, port: int, seconds: float) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 8)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(rank)
    start = time.monotonic()
    step = 0
    while True:
        x = torch.randn(128, 128, generator=g)
        y = torch.randint(0, 8, (128,), generator=g)
        if rank == 1:
            time.sleep(0.03)  # its shard lives on slower storage
            quality_check(x)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        for p in model.parameters():
            dist.all_reduce(p.grad)
            p.grad /= world
        opt.step()
        step += 1
        done = torch.tensor([float(time.monotonic() - start > seconds)])
        dist.all_reduce(done)  # both ranks stop at the same step
        if done.item() > 0:
            break
        if rank == 0 and step % 100 == 0:
            print(f"step {step} loss {loss.item():.3f}", flush=True)
    print(f"rank {rank}: {step} steps", flush=True)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0, help="training time")
    args = parser.parse_args()
    mp.spawn(run, args=(2, free_port(), args.seconds), nprocs=2)


if __name__ == "__main__":
    main()
