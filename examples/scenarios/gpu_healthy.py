"""Healthy on a GPU: a bf16 residual MLP whose batches already live on the GPU.

No host-device synchronisation inside the loop (the loss is read every 100 steps), no input
pipeline to wait for, flat memory: the host queues kernels ahead of the GPU, which runs
back to back. On an H200 a step is tens of milliseconds of matrix work and the GPU is busy
nearly all the time. This is what a well-fed GPU training loop looks like.

    probe doctor -- python examples/scenarios/gpu_healthy.py
"""

from __future__ import annotations

import time

import torch
from gpu_common import Model, autocast, device_of, finish, optimizer, paced, parser
from torch import nn


def main() -> None:
    p = parser("Train a residual MLP on batches resident on the GPU.", seconds=25.0)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--tokens", type=int, default=16384, help="rows per batch")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--log-every", type=int, default=100)
    args = p.parse_args()
    device = device_of(args)
    if args.tiny:
        args.dim, args.blocks, args.tokens, args.classes = 64, 2, 256, 10

    torch.manual_seed(0)
    model = Model(args.dim, args.blocks, args.classes).to(device)
    opt = optimizer(model, device)
    criterion = nn.CrossEntropyLoss()
    # a pool of batches made once on the device: the loop never waits for input
    g = torch.Generator(device=device).manual_seed(1)
    xs = torch.randn(8, args.tokens, args.dim, device=device, generator=g)
    ys = torch.randint(0, args.classes, (8, args.tokens), device=device, generator=g)
    print(
        f"training {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params on {device}, "
        f"{args.tokens} rows a batch"
    )
    start = time.perf_counter()
    steps = 0
    for step in paced(args):
        x, y = xs[step % len(xs)], ys[step % len(ys)]
        opt.zero_grad(set_to_none=True)
        with autocast(device):
            loss = criterion(model(x), y)
        loss.backward()
        opt.step()
        steps += 1
        if steps % args.log_every == 0:
            print(f"step {steps} loss {loss.item():.4f}", flush=True)
    finish(device, start, steps)


if __name__ == "__main__":
    main()
