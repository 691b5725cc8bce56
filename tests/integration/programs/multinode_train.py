"""A tiny DDP job (gloo, CPU) for two "nodes" on one machine, one rank each; the rank of node 1
(``--slow-node``) does extra work every step, so the other waits for it in the all-reduce.

    torchrun --nnodes 2 --node_rank K --nproc_per_node 1 --rdzv-endpoint 127.0.0.1:PORT \
        multinode_train.py --seconds 12
"""

import argparse
import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def extra_work(seconds):
    """CPU work of about ``seconds`` (the slow rank's own share of each step)."""
    a = torch.randn(64, 64)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a = torch.tanh(a @ a.T / 64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--slow-node", type=int, default=1)
    ap.add_argument("--extra-ms", type=float, default=40.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    node = int(os.environ["GROUP_RANK"])
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(64, 64))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(32, 64)
    end = time.monotonic() + args.seconds
    steps = 0
    while True:
        if node == args.slow_node:
            extra_work(args.extra_ms / 1000)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        # every rank stops at the same step: rank 0 decides, the others follow
        done = torch.tensor([1.0 if time.monotonic() >= end else 0.0])
        dist.broadcast(done, 0)
        if done.item():
            break
    dist.barrier()
    print(f"rank {dist.get_rank()} on node {node}: {steps} steps", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
