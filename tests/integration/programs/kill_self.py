"""Train for about 3 s, then die by SIGKILL as the OOM killer would end it."""

import os
import signal
import time

import torch

model = torch.nn.Linear(64, 64)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
start = time.monotonic()
steps = 0
while time.monotonic() - start < 3.0:
    loss = model(torch.randn(32, 64)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    steps += 1
    time.sleep(0.005)
print(f"steps {steps}", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
