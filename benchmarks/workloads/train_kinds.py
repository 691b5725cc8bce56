"""Benchmark workloads for the peer comparison: three kinds of CPU training loop.

    python train_kinds.py --kind compute   # an MLP on big in-memory batches: matmul-bound
    python train_kinds.py --kind loader    # a Dataset doing per-sample work, 2 DataLoader workers
    python train_kinds.py --kind python    # a recurrent cell stepped in Python: many small ops

Each prints one JSON line at the end, {"loop_s": ..., "steps": ...}, so a benchmark can time the
training loop itself as well as the whole command. `--torch-profiler DIR` runs the loop under
torch.profiler with the schedule its recipes use (skip 10, wait 1, warmup 1, active 3, once),
writing TensorBoard traces to DIR, which is how that tool is used on a training loop.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class Augmented(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Per-sample work in the workers: noise, a random crop and a normalisation, as images get."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, 20, 20, generator=g)
        self.y = torch.randint(0, 10, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.x[i] + 0.05 * torch.randn(3, 20, 20)
        top, left = (int(v) for v in torch.randint(0, 5, (2,)))
        crop = img[:, top : top + 16, left : left + 16]
        crop = (crop - crop.mean()) / (crop.std() + 1e-5)
        return crop.flatten(), self.y[i]


def compute_kind(steps: int) -> Callable[[], Iterator[None]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 512, generator=g)
    y = torch.randint(0, 10, (256,), generator=g)
    model = nn.Sequential(
        nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def loop() -> Iterator[None]:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
            yield

    return loop


def loader_kind(steps: int, workers: int) -> Callable[[], Iterator[None]]:
    batch = 64
    loader = DataLoader(Augmented(steps * batch), batch_size=batch, num_workers=workers)
    model = nn.Sequential(nn.Linear(768, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def loop() -> Iterator[None]:
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
            yield

    return loop


class Cell(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(size, size)
        self.rec = nn.Linear(size, size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.inp(x) + self.rec(h))


def python_kind(steps: int) -> Callable[[], Iterator[None]]:
    g = torch.Generator().manual_seed(0)
    seq = torch.randn(24, 8, 32, generator=g)
    target = torch.randn(8, 32, generator=g)
    cell = Cell(32)
    opt = torch.optim.Adam(cell.parameters(), lr=1e-3)

    def loop() -> Iterator[None]:
        for _ in range(steps):
            h = torch.zeros(8, 32)
            for t in range(seq.shape[0]):
                h = cell(seq[t], h)
            loss = ((h - target) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            yield

    return loop


def main() -> None:
    parser = argparse.ArgumentParser(description="A CPU training loop to time under a profiler.")
    parser.add_argument("--kind", choices=("compute", "loader", "python"), default="compute")
    parser.add_argument("--steps", type=int, default=0, help="default: ~2 s of work")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--torch-profiler", default=None, metavar="DIR")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    default_steps = {"compute": 80, "loader": 500, "python": 1500}
    steps = args.steps or default_steps[args.kind]
    if args.kind == "compute":
        loop = compute_kind(steps)
    elif args.kind == "loader":
        loop = loader_kind(steps, args.workers)
    else:
        loop = python_kind(steps)

    profiler: Any = contextlib.nullcontext()
    if args.torch_profiler:
        from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

        profiler = profile(
            activities=[ProfilerActivity.CPU],
            schedule=schedule(skip_first=10, wait=1, warmup=1, active=3, repeat=1),
            on_trace_ready=tensorboard_trace_handler(args.torch_profiler),
        )
    start = time.perf_counter()
    done = 0
    with profiler as prof:
        for _ in loop():
            done += 1
            if prof is not None:
                prof.step()
    loop_s = time.perf_counter() - start
    print(json.dumps({"loop_s": round(loop_s, 4), "steps": done, "kind": args.kind}))


if __name__ == "__main__":
    main()
