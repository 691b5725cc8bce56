"""Healthy, compiled: a residual MLP trained with torch.compile on in-memory data.

The model (an input projection, pre-norm residual blocks of LayerNorm, Linear, GELU, Linear, and a
classifier head) is wrapped in ``torch.compile`` the way its documentation shows. The first step
traces and compiles the forward and backward graphs (dynamo, AOT autograd, inductor's C++ kernels
built with the system's C++ compiler): that is start-up. Every later step runs the compiled code
on batches of one fixed shape, so nothing is compiled again and the loop is compute-bound, as in
``healthy_mlp.py``. ``--eager`` runs the same model and loop without compiling, for comparison:
probe must call both healthy, and its activity bar must show the compiled run's steps as the
model's work (in torch), not as compiling.

    probe doctor -- python examples/scenarios/healthy_compiled.py
    probe doctor -- python examples/scenarios/healthy_compiled.py --eager

Compiling needs a C++ compiler (``g++``, or the one ``CXX`` names); without one the program says
so and exits with status 3 before training.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import torch
from torch import nn

NO_COMPILER = 3  # the exit status when torch.compile cannot build its kernels


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(nn.functional.gelu(self.up(self.norm(x))))


class ResidualMLP(nn.Module):
    def __init__(self, features: int, width: int, depth: int, classes: int) -> None:
        super().__init__()
        self.inp = nn.Linear(features, width)
        self.blocks = nn.Sequential(*(Block(width) for _ in range(depth)))
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.inp(x)))


def has_cxx() -> bool:
    return bool(os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++"))


def main() -> None:
    p = argparse.ArgumentParser(description="Train a residual MLP, compiled or eager.")
    p.add_argument("--eager", action="store_true", help="do not torch.compile the model")
    p.add_argument("--samples", type=int, default=16_384)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--log-every", type=int, default=32)
    args = p.parse_args()
    if not args.eager and not has_cxx():
        print("torch.compile needs a C++ compiler (g++ or $CXX): none found", file=sys.stderr)
        sys.exit(NO_COMPILER)

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.samples, args.features, generator=g)
    teacher = torch.randn(args.features, 10, generator=g)
    y = (torch.tanh(x) @ teacher).argmax(dim=1)
    model = ResidualMLP(args.features, args.width, args.depth, 10)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    step_fn = model if args.eager else torch.compile(model)
    batches = args.samples // args.batch_size  # whole batches only: one shape, one compilation

    t0 = time.perf_counter()
    step = 0
    for epoch in range(args.epochs):
        order = torch.randperm(args.samples, generator=g)
        for b in range(batches):
            idx = order[b * args.batch_size : (b + 1) * args.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(step_fn(x[idx]), y[idx])
            loss.backward()
            opt.step()
            step += 1
            if step == 1:
                print(f"first step (compiling) took {time.perf_counter() - t0:.1f}s", flush=True)
            if step % args.log_every == 0:
                print(f"epoch {epoch} step {step} loss {loss.item():.4f}", flush=True)
    elapsed = time.perf_counter() - t0
    print(f"done: {step} steps in {elapsed:.1f}s ({'eager' if args.eager else 'compiled'})")


if __name__ == "__main__":
    main()
