"""Benchmark workload: a CPU training loop with a DataLoader, an optimizer and some GC activity.

torch runs on one intra-op thread by default (`--threads`): with 2 workers on 2 cores, torch's
default of one OpenMP thread per core oversubscribes the machine, and its spinning OpenMP threads
make the bare run's own loop time vary more from run to run (measured on the 2-core VM, 8 runs
each: a coefficient of variation of 9 % at torch's default, 6 % with one thread).

Prints one JSON line, {"loop_s": seconds spent in the training loop, "steps": n}, so a benchmark
can time the loop itself as well as the whole command.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class Features(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 128, generator=g)
        self.y = torch.randint(0, 10, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i] * (1.0 + 0.01 * torch.randn(1)), self.y[i]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)"
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = Features(args.steps * args.batch_size)
    loader = DataLoader(data, batch_size=args.batch_size, num_workers=args.workers)
    model = nn.Sequential(
        nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    history: list[dict[str, object]] = []
    start = time.perf_counter()
    steps = 0
    for x, y in loader:
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # Bookkeeping as real loops do: small Python objects, some of them cyclic.
        record: dict[str, object] = {"step": steps, "loss": float(loss)}
        record["self"] = record
        history.append(record)
        if len(history) > 200:
            history = history[-50:]
        steps += 1
    loop_s = time.perf_counter() - start
    print(json.dumps({"loop_s": loop_s, "steps": steps}))


if __name__ == "__main__":
    main()
