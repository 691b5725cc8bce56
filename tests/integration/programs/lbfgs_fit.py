"""Fit a tiny recurrent model to a noisy sine wave with L-BFGS: each optimizer.step() calls the
closure (a forward over 1000 time steps and a backward) 20 times, so the loop makes a handful of
optimizer steps but hundreds of backward passes; the main thread runs thousands of tiny
operators.

    python lbfgs_fit.py [--seconds 14]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn


class Recurrent(nn.Module):
    def __init__(self, hidden: int = 12) -> None:
        super().__init__()
        self.inp = nn.Linear(1, hidden)
        self.rec = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], self.rec.out_features)
        outputs = []
        for t in range(x.shape[1]):
            h = torch.tanh(self.inp(x[:, t : t + 1]) + self.rec(h))
            outputs.append(self.out(h))
        return torch.cat(outputs, dim=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=14.0)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    t = torch.linspace(0, 40, 1001)
    wave = (torch.sin(t) + 0.3 * torch.randn(len(t)))[None, :]
    x, y = wave[:, :-1], wave[:, 1:]
    model = Recurrent()
    opt = torch.optim.LBFGS(
        model.parameters(),
        lr=0.5,
        max_iter=20,
        history_size=10,
        tolerance_grad=0.0,
        tolerance_change=0.0,
    )
    loss_fn = nn.MSELoss()

    closures = 0

    def closure() -> torch.Tensor:
        nonlocal closures
        closures += 1
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    end = time.monotonic() + args.seconds
    steps = 0
    while time.monotonic() < end:
        loss = opt.step(closure).detach()
        steps += 1
    print(f"{steps} L-BFGS steps, {closures} closure calls, loss {float(loss):.4f}")


if __name__ == "__main__":
    main()
