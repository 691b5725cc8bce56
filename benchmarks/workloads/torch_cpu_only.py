"""A torch program that never touches CUDA: the GPU check runs it under probe on a GPU machine.

It imports torch, trains a small model on the CPU with two forked DataLoader workers, and at the
end says whether CUDA was initialised in it (``torch.cuda.is_initialized()``): probe's agent, its
hooks and its polls must leave CUDA alone in a program that does not use it (a CUDA context
costs hundreds of MB of GPU memory, and breaks fork). benchmarks/gpu_check.py also asks NVML,
while it runs, whether any process of the tree holds a context on a GPU.

Prints {"cuda_initialized": ..., "pid": ...} as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = TensorDataset(torch.randn(4096, 64), torch.randint(0, 10, (4096,)))
    loader = DataLoader(data, batch_size=64, shuffle=True, num_workers=2, persistent_workers=True)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    start = time.perf_counter()
    steps = 0
    while time.perf_counter() - start < args.seconds:
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            steps += 1
            if time.perf_counter() - start >= args.seconds:
                break
    print(f"{steps} steps on the CPU")
    print(json.dumps({"cuda_initialized": torch.cuda.is_initialized(), "pid": os.getpid()}))


if __name__ == "__main__":
    main()
