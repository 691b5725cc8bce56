"""Periodic stall: a full validation pass runs inline every N training steps.

A small ResNet-style conv net trains on synthetic 32x32 images generated on the fly. Every
`--eval-every` steps the loop stops training and evaluates on a held-out set of 1500
images (computing accuracy and a confusion matrix) before continuing, so a normal ~20 ms step is
followed, periodically, by a step that takes well over half a second.

    probe doctor -- python examples/scenarios/periodic_stall_eval.py
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(c)
        self.c2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.b2(self.c2(F.relu(self.b1(self.c1(x))))))


class SmallResNet(nn.Module):
    def __init__(self, classes=10, width=16):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.layer1 = Block(width)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.layer2 = Block(2 * width)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.layer2(self.down(self.layer1(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class ShapesGenerator:
    """Colored blobs whose position/color pattern encodes the class."""

    def __init__(self, classes=10, size=32, seed=0):
        self.classes, self.size = classes, size
        self.g = torch.Generator().manual_seed(seed)
        yy, xx = torch.meshgrid(
            torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij"
        )
        self.yy, self.xx = yy, xx
        self.centers = torch.rand(classes, 2, generator=torch.Generator().manual_seed(7)) - 0.5
        self.colors = torch.rand(classes, 3, generator=torch.Generator().manual_seed(8))

    def sample(self, n):
        y = torch.randint(0, self.classes, (n,), generator=self.g)
        c = self.centers[y] + 0.15 * torch.randn(n, 2, generator=self.g)
        d2 = (self.xx[None] - c[:, 0, None, None]) ** 2 + (self.yy[None] - c[:, 1, None, None]) ** 2
        blob = torch.exp(-d2 / 0.05)[:, None]
        x = blob * self.colors[y][:, :, None, None] + 0.2 * torch.randn(
            n, 3, self.size, self.size, generator=self.g
        )
        return x, y


@torch.no_grad()
def evaluate(model, val_x, val_y, classes, batch_size=500):
    model.eval()
    confusion = torch.zeros(classes, classes, dtype=torch.long)
    for i in range(0, len(val_x), batch_size):
        pred = model(val_x[i : i + batch_size]).argmax(1)
        confusion += torch.bincount(
            val_y[i : i + batch_size] * classes + pred, minlength=classes * classes
        ).view(classes, classes)
    model.train()
    return confusion.diag().sum().item() / confusion.sum().item(), confusion


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=450)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--val-size", type=int, default=1500)
    args = ap.parse_args()

    torch.manual_seed(0)
    gen = ShapesGenerator()
    val_x, val_y = ShapesGenerator(seed=123).sample(args.val_size)
    model = SmallResNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=args.steps)

    t0 = time.time()
    for step in range(1, args.steps + 1):
        x, y = gen.sample(args.batch_size)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % args.eval_every == 0:
            te = time.time()
            acc, _ = evaluate(model, val_x, val_y, gen.classes)
            print(
                f"step {step}: train loss {loss.item():.3f}  val acc {acc:.3f}  "
                f"(eval {time.time() - te:.2f}s)",
                flush=True,
            )
    print(f"finished {args.steps} steps in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
