"""Healthy: a small conv net trained on in-memory synthetic images, pre-batched.

The synthetic image set is generated once into one tensor; an IterableDataset yields ready
shuffled batches (slices by a random permutation), so the DataLoader costs nothing. Each step is
a few large convolutions that keep both intra-op threads busy. No I/O, no leak, no stalls.

    probe doctor -- python examples/scenarios/healthy_convnet.py
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, IterableDataset


class InMemoryBatches(IterableDataset):
    def __init__(self, images, labels, batch_size, seed=0):
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.epoch, self.seed = 0, seed

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        perm = torch.randperm(len(self.images), generator=g)
        for i in range(0, len(perm) - self.batch_size + 1, self.batch_size):
            idx = perm[i : i + self.batch_size]
            yield self.images[idx], self.labels[idx]


def synth_images(n, size=32, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    freqs = torch.linspace(1.0, 4.0, classes)
    grid = torch.linspace(0, 2 * torch.pi, size)
    pattern = torch.sin(freqs[:, None, None] * grid[None, :, None]) * torch.cos(
        freqs.flip(0)[:, None, None] * grid[None, None, :]
    )
    images = pattern[labels][:, None].repeat(1, 3, 1, 1)
    images += 0.5 * torch.randn(n, 3, size, size, generator=g)
    return images, labels


class ConvNet(nn.Module):
    def __init__(self, classes=10, width=32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1),
            nn.BatchNorm2d(4 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(4 * width, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()

    torch.manual_seed(0)
    images, labels = synth_images(args.images)
    loader = DataLoader(InMemoryBatches(images, labels, args.batch_size), batch_size=None)
    model = ConvNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[100, 160], gamma=0.3)

    start = time.time()
    for epoch in range(args.epochs):
        correct = seen = 0
        for step, (x, y) in enumerate(loader):
            optimizer.zero_grad(set_to_none=True)
            out = model(x)
            loss = F.cross_entropy(out, y)
            loss.backward()
            optimizer.step()
            scheduler.step()
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
            if step % 25 == 0:
                print(
                    f"epoch {epoch} step {step} loss {loss.item():.3f} acc {correct / seen:.3f}",
                    flush=True,
                )
    print(f"done in {time.time() - start:.1f}s")


if __name__ == "__main__":
    main()
