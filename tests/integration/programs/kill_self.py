"""Train for about 3 s, then die by SIGKILL as the OOM killer would end it. Prints the steps it
took and how many of them were taken at least KEPT_S before the kill: those must be on disk."""

import os
import signal
import time

import torch

KEPT_S = 1.0  # the agent flushes every 0.2 s: older data survives with a wide margin

model = torch.nn.Linear(64, 64)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
start = time.monotonic()
stepped_at = []
while time.monotonic() - start < 3.0:
    loss = model(torch.randn(32, 64)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    stepped_at.append(time.monotonic())
    time.sleep(0.005)
kill_at = time.monotonic()
kept = sum(1 for t in stepped_at if t <= kill_at - KEPT_S)
print(f"steps {len(stepped_at)} {kept}", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
