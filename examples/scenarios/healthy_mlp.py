"""Healthy: a compute-bound MLP classifier trained on in-memory synthetic data.

The whole dataset lives in memory as tensors, batches are large enough that the matmuls keep
torch's intra-op threads busy, and there is no per-step I/O, no Python object churn, no leak
and no stall. This is what a well-fed CPU training loop looks like.

    probe doctor -- python examples/scenarios/healthy_mlp.py
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, features: int, classes: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    teacher = torch.randn(features, classes, generator=torch.Generator().manual_seed(99))
    y = (torch.sin(x) @ teacher).argmax(dim=1)
    return TensorDataset(x, y)


class MLP(nn.Module):
    def __init__(self, features: int, hidden: int, classes: int, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(features, hidden), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def main() -> None:
    p = argparse.ArgumentParser(description="Train an MLP on synthetic tabular data.")
    p.add_argument("--samples", type=int, default=16_000)
    p.add_argument("--features", type=int, default=256)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--log-every", type=int, default=40)
    args = p.parse_args()

    torch.manual_seed(0)
    data = make_data(args.samples, args.features, 10, seed=1)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True)
    model = MLP(args.features, args.hidden, 10)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * len(loader))
    criterion = nn.CrossEntropyLoss()

    print(
        f"training {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, "
        f"{len(loader)} steps/epoch, {torch.get_num_threads()} threads"
    )
    t0 = time.perf_counter()
    step = 0
    for epoch in range(args.epochs):
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % args.log_every == 0:
                print(
                    f"epoch {epoch} step {step} loss {loss.item():.4f} "
                    f"lr {sched.get_last_lr()[0]:.4f}"
                )
    elapsed = time.perf_counter() - t0
    print(f"done: {step} steps in {elapsed:.1f}s ({step / elapsed:.1f} steps/s)")


if __name__ == "__main__":
    main()
