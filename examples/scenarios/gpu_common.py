"""What the GPU scenarios share: the device, a residual MLP, the loop's pace and its timing line.

The GPU scenarios (gpu_*.py) are sized for one large data-centre GPU (an H100 or H200: a step of
tens of milliseconds of bf16 matrix work) and run for a fixed time, so they take the same wall
time on any GPU. ``--tiny`` runs them on the CPU at toy sizes for a few seconds: that checks the
programs and the pipeline around them, not the verdict (a CPU run has no GPU to judge).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator

import torch
from torch import nn


def parser(description: str, seconds: float) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--seconds", type=float, default=seconds, help="how long the loop runs")
    p.add_argument("--steps", type=int, default=0, help="a fixed number of steps instead")
    p.add_argument(
        "--tiny", action="store_true", help="toy sizes on the CPU for a few seconds (smoke test)"
    )
    return p


def device_of(args: argparse.Namespace) -> torch.device:
    if args.tiny:
        args.device = "cpu"
        args.seconds = min(args.seconds, 2.0)
        torch.set_num_threads(1)  # a smoke run shares small machines
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "this scenario needs a CUDA GPU and torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}); "
            "--tiny runs it on the CPU at toy sizes"
        )
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    return device


class Block(nn.Module):
    """A transformer's feed-forward half: norm, widen 4x, GELU, narrow, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, 4 * dim)
        self.down = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(nn.functional.gelu(self.up(self.norm(x))))


class Model(nn.Module):
    def __init__(self, dim: int, blocks: int, classes: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(Block(dim) for _ in range(blocks)))
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


def optimizer(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    # fused AdamW: a handful of kernels per step on a GPU, as a tuned training script has
    return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")


def autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def paced(args: argparse.Namespace) -> Iterator[int]:
    """Step numbers until ``--steps`` steps or ``--seconds`` of loop have passed. The clock is
    the host's: once CUDA's queue of launches is full, the host runs at the GPU's pace."""
    start = time.perf_counter()
    step = 0
    while (args.steps and step < args.steps) or (
        not args.steps and time.perf_counter() - start < args.seconds
    ):
        yield step
        step += 1


def finish(device: torch.device, start: float, steps: int) -> None:
    """Wait for the GPU's queued work, then print the loop's time as the benchmarks read it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    loop_s = time.perf_counter() - start
    print(f"done: {steps} steps in {loop_s:.1f} s ({steps / max(loop_s, 1e-9):.1f} steps/s)")
    print(json.dumps({"loop_s": round(loop_s, 4), "steps": steps}), flush=True)
