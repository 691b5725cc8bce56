"""A small, realistic CPU training script: the README's demo for `probe doctor`.

It trains a small MLP classifier on synthetic tabular data read through a DataLoader with worker
processes and a per-sample augmentation, logs every few steps, and evaluates each epoch. Nothing is
downloaded.

    probe doctor -- python examples/train_cpu.py --epochs 2
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class SyntheticTabular(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Deterministic synthetic features with a learnable label, with a small augmentation."""

    def __init__(self, n: int, features: int, classes: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, features, generator=g)
        # The labelling function is the same for every split; only the samples differ.
        w = torch.randn(features, classes, generator=torch.Generator().manual_seed(1234))
        self.y = (torch.tanh(self.x) @ w).argmax(dim=1)
        self.noise = 0.05

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x[i]
        # A per-sample augmentation, as real pipelines have: jitter and random feature dropout.
        x = x + self.noise * torch.randn_like(x)
        keep = (torch.rand_like(x) > 0.1).to(x.dtype)
        return x * keep, self.y[i]


def make_model(features: int, hidden: int, classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(features, hidden),
        nn.GELU(),
        nn.LayerNorm(hidden),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        nn.Linear(hidden, classes),
    )


def evaluate(model: nn.Module, loader: DataLoader[tuple[torch.Tensor, torch.Tensor]]) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(dim=1) == y).sum())
            total += len(y)
    model.train()
    return correct / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=24_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=512)
    args = parser.parse_args()

    torch.manual_seed(0)
    features, classes = 64, 10
    train = SyntheticTabular(args.samples, features, classes, seed=1)
    val = SyntheticTabular(args.samples // 8, features, classes, seed=2)
    train_loader = DataLoader(
        train, batch_size=args.batch_size, shuffle=True, num_workers=args.workers
    )
    val_loader = DataLoader(val, batch_size=512, num_workers=0)

    model = make_model(features, args.hidden, classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=3e-3, total_steps=args.epochs * steps_per_epoch
    )
    loss_fn = nn.CrossEntropyLoss()

    start = time.perf_counter()
    for epoch in range(args.epochs):
        running = 0.0
        for step, (x, y) in enumerate(train_loader):
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item()
            if (step + 1) % 50 == 0:
                print(f"epoch {epoch} step {step + 1}/{steps_per_epoch} loss {running / 50:.4f}")
                running = 0.0
        accuracy = evaluate(model, val_loader)
        print(f"epoch {epoch} done: val accuracy {accuracy:.3f}")
    print(f"trained {args.epochs} epochs in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
