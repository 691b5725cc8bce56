"""memory-growth on a GPU: features kept on the device "for an evaluation later".

The training loop is the healthy one, but every step it keeps rows of the batch's final features
(``features.detach()``, still on the GPU) in a list meant for a retrieval evaluation at the end
of the epoch, a common way to leak GPU memory: torch's allocated CUDA memory grows every step
while the process's resident memory barely moves. How many rows a step keeps is sized from the
step time measured at start-up so that it grows by about ``--growth-mb-per-s`` (600 MB/s: some
15 GB in 25 s on any GPU, far more than the allocator's swing within a step, far short of an
H200's 141 GB).

    probe doctor -- python examples/scenarios/gpu_memory_growth.py
"""

from __future__ import annotations

import time

import torch
from gpu_common import Model, autocast, device_of, finish, optimizer, paced, parser
from torch import nn


def main() -> None:
    p = parser("Train while keeping every batch's features on the GPU.", seconds=25.0)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--growth-mb-per-s", type=float, default=600.0)
    args = p.parse_args()
    device = device_of(args)
    if args.tiny:
        args.dim, args.blocks, args.tokens, args.classes = 64, 2, 256, 10
        args.growth_mb_per_s = 5.0

    torch.manual_seed(0)
    model = Model(args.dim, args.blocks, args.classes).to(device)
    opt = optimizer(model, device)
    criterion = nn.CrossEntropyLoss()
    g = torch.Generator(device=device).manual_seed(1)
    xs = torch.randn(8, args.tokens, args.dim, device=device, generator=g)
    ys = torch.randint(0, args.classes, (8, args.tokens), device=device, generator=g)

    def step(i: int) -> torch.Tensor:
        x, y = xs[i % len(xs)], ys[i % len(ys)]
        opt.zero_grad(set_to_none=True)
        with autocast(device):
            features = model.blocks(x)
            loss = criterion(model.head(features), y)
        loss.backward()
        opt.step()
        return features

    # start-up: the step's time on this device sizes what each step keeps
    for i in range(3):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(10):
        features = step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    step_s = (time.perf_counter() - t) / 10
    row_bytes = features[0].numel() * features.element_size()
    rows = int(min(max(1, args.growth_mb_per_s * 2**20 * step_s / row_bytes), args.tokens))
    print(f"step {step_s * 1000:.1f} ms on {device}; keeping {rows} rows a step")

    kept: list[torch.Tensor] = []  # for the end-of-epoch retrieval evaluation
    start = time.perf_counter()
    steps = 0
    for i in paced(args):
        features = step(i)
        kept.append(features[:rows].detach())
        steps += 1
        if steps % 100 == 0:
            held = sum(k.numel() * k.element_size() for k in kept) / 2**30
            print(f"step {steps}, {held:.1f} GB of features kept", flush=True)
    finish(device, start, steps)


if __name__ == "__main__":
    main()
