"""input-bound on a GPU: two DataLoader workers cannot keep up with a GPU that needs microseconds.

Each sample is decoded and augmented on the CPU (a synthetic image, several frequency-domain
blur and sharpen passes, a random crop and flip), by two workers with pinned memory, the way
many image pipelines start out. The model on the GPU is small: a step takes the GPU a few
milliseconds, a batch takes the workers far longer. The training loop waits in the
DataLoader's ``next()`` most of the time and the GPU sits idle: an idle GPU whose cause is the
input pipeline.

    probe doctor -- python examples/scenarios/gpu_input_bound.py
"""

from __future__ import annotations

import time

import torch
from gpu_common import Model, autocast, device_of, finish, optimizer, paced, parser
from torch import nn
from torch.utils.data import DataLoader, Dataset


class Augmented(Dataset[tuple[torch.Tensor, int]]):
    """Images made from their index, then filtered ``passes`` times in the frequency domain."""

    def __init__(self, n: int, size: int, passes: int, classes: int) -> None:
        self.n, self.size, self.passes, self.classes = n, size, passes, classes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        g = torch.Generator().manual_seed(i)
        image = torch.rand(3, self.size, self.size, generator=g)
        fy = torch.fft.fftfreq(self.size).abs()[:, None]
        fx = torch.fft.rfftfreq(self.size)[None, :]
        for k in range(self.passes):  # alternate blur and sharpen, as an augmentation chain
            width = 0.05 + 0.02 * k
            gain = torch.exp(-(fx**2 + fy**2) / (2 * width**2))
            spectrum = torch.fft.rfft2(image)
            spectrum = spectrum * (gain if k % 2 == 0 else 2 - gain)
            image = torch.fft.irfft2(spectrum, s=(self.size, self.size))
        top, left = torch.randint(0, self.size // 4, (2,), generator=g).tolist()
        crop = image[:, top : top + 3 * self.size // 4, left : left + 3 * self.size // 4]
        if i % 2:
            crop = crop.flip(-1)
        return crop.reshape(-1)[:1024].contiguous(), i % self.classes


def main() -> None:
    p = parser("Train a small model fed by a slow CPU input pipeline.", seconds=25.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--size", type=int, default=192, help="image side before the crop")
    p.add_argument("--passes", type=int, default=6)
    args = p.parse_args()
    device = device_of(args)
    if args.tiny:
        args.batch_size, args.size, args.passes = 16, 64, 2

    torch.manual_seed(0)
    classes = 100
    model = Model(1024, 2, classes).to(device)
    opt = optimizer(model, device)
    criterion = nn.CrossEntropyLoss()
    data = Augmented(1_000_000, args.size, args.passes, classes)
    loader = DataLoader(
        data,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=True,
        generator=torch.Generator().manual_seed(2),
    )
    batches = iter(loader)
    print(f"{args.workers} workers, batch {args.batch_size}, model on {device}", flush=True)
    start = time.perf_counter()
    steps = 0
    for _ in paced(args):
        x, y = next(batches)
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with autocast(device):
            loss = criterion(model(x), y)
        loss.backward()
        opt.step()
        steps += 1
        if steps % 50 == 0:
            print(f"step {steps} loss {loss.item():.4f}", flush=True)
    finish(device, start, steps)


if __name__ == "__main__":
    main()
