"""Python-bound: a learned ODE integrated step by step in Python on tiny tensors.

A "grey-box" physics model learns the parameters of a damped, driven oscillator network from
synthetic trajectories. The dynamics are elementwise (per-oscillator stiffness, damping,
coupling to neighbours through torch.roll) and are integrated with an explicit RK2 scheme in a
Python loop over a few hundred time steps, on a state of 8 trajectories x 16 oscillators. Each
training step therefore runs thousands of microsecond-sized tensor operations (forward and
backward): the main thread is saturated with interpreter and dispatch overhead while the
intra-op thread pool has nothing worth parallelising.

    probe doctor -- python examples/scenarios/python_bound_ode.py
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn


class OscillatorNetwork(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.log_k = nn.Parameter(torch.zeros(n))
        self.log_c = nn.Parameter(torch.full((n,), -2.0))
        self.coupling = nn.Parameter(torch.zeros(n))
        self.drive = nn.Parameter(torch.zeros(n))

    def derivative(self, x: torch.Tensor, v: torch.Tensor, t: float):
        k, c = self.log_k.exp(), self.log_c.exp()
        neighbours = torch.roll(x, 1, dims=-1) + torch.roll(x, -1, dims=-1) - 2 * x
        a = -k * x - c * v + self.coupling * neighbours + self.drive * math.sin(2.0 * t)
        return v, a

    def forward(self, x0: torch.Tensor, v0: torch.Tensor, steps: int, dt: float):
        x, v, t = x0, v0, 0.0
        traj = []
        for _ in range(steps):
            dx1, dv1 = self.derivative(x, v, t)
            dx2, dv2 = self.derivative(x + dt * dx1, v + dt * dv1, t + dt)
            x = x + 0.5 * dt * (dx1 + dx2)
            v = v + 0.5 * dt * (dv1 + dv2)
            t += dt
            traj.append(x)
        return torch.stack(traj, dim=1)


def make_dataset(n_traj: int, n: int, steps: int, dt: float, seed: int):
    torch.manual_seed(seed)
    truth = OscillatorNetwork(n)
    with torch.no_grad():
        truth.log_k.copy_(torch.linspace(-0.5, 1.0, n))
        truth.log_c.fill_(-1.5)
        truth.coupling.copy_(0.3 * torch.rand(n))
        truth.drive.copy_(torch.randn(n) * 0.5)
        x0, v0 = torch.randn(n_traj, n), torch.randn(n_traj, n) * 0.1
        target = truth(x0, v0, steps, dt) + 0.01 * torch.randn(n_traj, steps, n)
    return x0, v0, target


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--oscillators", type=int, default=16)
    ap.add_argument("--trajectories", type=int, default=256)
    ap.add_argument("--horizon", type=int, default=120)
    ap.add_argument("--dt", type=float, default=0.05)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--iters", type=int, default=280)
    args = ap.parse_args()

    x0, v0, target = make_dataset(args.trajectories, args.oscillators, args.horizon, args.dt, 0)
    model = OscillatorNetwork(args.oscillators)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=20)
    g = torch.Generator().manual_seed(1)

    t0 = time.perf_counter()
    for it in range(1, args.iters + 1):
        idx = torch.randint(0, args.trajectories, (args.batch_size,), generator=g)
        pred = model(x0[idx], v0[idx], args.horizon, args.dt)
        loss = (pred - target[idx]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss.item())
        if it % 25 == 0:
            print(
                f"iter {it}: mse {loss.item():.5f}  "
                f"({(time.perf_counter() - t0) / it * 1000:.0f} ms/iter)",
                flush=True,
            )
    print(
        f"fitted in {time.perf_counter() - t0:.1f}s; stiffness "
        f"{model.log_k.exp()[:4].detach().numpy().round(2)}"
    )


if __name__ == "__main__":
    main()
