"""Memory growth (torch): the classic "append the loss tensor" leak.

A 1-D convolutional forecaster is trained on synthetic multivariate sensor windows. For a
progress plot the loop keeps `loss` (the tensor, not `loss.item()`) in a list for the whole run.
Each kept loss holds its autograd graph alive, and with it every activation saved for backward,
so the resident memory grows by most of a megabyte per step (about 70 MB/s) until the script ends.

    probe doctor -- python examples/scenarios/memory_growth_loss_history.py
"""

import argparse
import math
import time

import torch
from torch import nn


def sensor_batch(gen, batch, channels, length, horizon):
    t = torch.arange(length + horizon, dtype=torch.float32)
    phase = torch.rand(batch, channels, 1, generator=gen) * 2 * math.pi
    freq = 0.02 + 0.1 * torch.rand(batch, channels, 1, generator=gen)
    series = torch.sin(freq * t + phase) + 0.1 * torch.randn(
        batch, channels, length + horizon, generator=gen
    )
    return series[..., :length], series[..., length:]


class Forecaster(nn.Module):
    def __init__(self, channels, hidden, length, horizon):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv1d(channels, hidden, kernel_size=5, padding=2),
            nn.GELU(),
            nn.Conv1d(hidden, hidden, kernel_size=5, padding=2),
            nn.GELU(),
            nn.Conv1d(hidden, hidden, kernel_size=5, padding=2),
            nn.GELU(),
        )
        self.head = nn.Sequential(
            nn.Linear(hidden * length, 1024), nn.GELU(), nn.Linear(1024, channels * horizon)
        )
        self.channels, self.horizon = channels, horizon

    def forward(self, x):
        h = self.encoder(x).flatten(1)
        return self.head(h).view(-1, self.channels, self.horizon)


def train(args):
    gen = torch.Generator().manual_seed(0)
    model = Forecaster(args.channels, args.hidden, args.length, args.horizon)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.999)
    criterion = nn.MSELoss()

    loss_history = []  # for the learning-curve plot at the end
    start = time.time()
    for step in range(1, args.steps + 1):
        x, y = sensor_batch(gen, args.batch_size, args.channels, args.length, args.horizon)
        pred = model(x)
        loss = criterion(pred, y)
        optimizer.zero_grad()
        # retain_graph is left over from an experiment with an auxiliary loss on the encoder
        loss.backward(retain_graph=True)
        optimizer.step()
        scheduler.step()
        loss_history.append(loss)  # BUG: keeps every step's graph (and activations) alive
        if step % args.log_every == 0:
            recent = torch.stack(loss_history[-args.log_every :]).mean().item()
            print(
                f"step {step:5d}  mse {recent:.4f}  ({step / (time.time() - start):.0f} it/s)",
                flush=True,
            )
    curve = torch.stack(loss_history).detach()
    print(
        f"final mse {curve[-50:].mean():.4f}, best {curve.min():.4f}, "
        f"{args.steps} steps in {time.time() - start:.1f}s"
    )


def main():
    parser = argparse.ArgumentParser(description="Train a conv forecaster on sensor data")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--horizon", type=int, default=16)
    parser.add_argument("--log-every", type=int, default=100)
    train(parser.parse_args())


if __name__ == "__main__":
    main()
