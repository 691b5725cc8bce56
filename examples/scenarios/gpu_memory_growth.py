"""memory-growth on a GPU: features kept on the device "for an evaluation later".

The training loop is the healthy one, but every step it keeps the batch's final features
(``features.detach()``, still on the GPU) in a list meant for a retrieval evaluation at the
end of the epoch, a common way to leak GPU memory: torch's allocated CUDA memory grows by
tens of megabytes a step, and the process's resident memory barely moves. On an H200 it grows
by several hundred MB a second for the whole run, well short of filling the card.

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
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--keep-rows", type=int, default=8192, help="feature rows kept per step")
    args = p.parse_args()
    device = device_of(args)
    if args.tiny:
        args.dim, args.blocks, args.tokens, args.classes, args.keep_rows = 64, 2, 256, 10, 256

    torch.manual_seed(0)
    model = Model(args.dim, args.blocks, args.classes).to(device)
    opt = optimizer(model, device)
    criterion = nn.CrossEntropyLoss()
    g = torch.Generator(device=device).manual_seed(1)
    xs = torch.randn(8, args.tokens, args.dim, device=device, generator=g)
    ys = torch.randint(0, args.classes, (8, args.tokens), device=device, generator=g)
    kept: list[torch.Tensor] = []  # for the end-of-epoch retrieval evaluation
    start = time.perf_counter()
    steps = 0
    for step in paced(args):
        x, y = xs[step % len(xs)], ys[step % len(ys)]
        opt.zero_grad(set_to_none=True)
        with autocast(device):
            features = model.blocks(x)
            loss = criterion(model.head(features), y)
        loss.backward()
        opt.step()
        kept.append(features[: args.keep_rows].detach())
        steps += 1
        if steps % 100 == 0:
            held = sum(k.numel() * k.element_size() for k in kept) / 2**30
            print(f"step {steps} loss {loss.item():.4f}, {held:.1f} GB of features", flush=True)
    finish(device, start, steps)


if __name__ == "__main__":
    main()
