"""Input-bound (num_workers=0): images are decoded and augmented in the training process.

The dataset keeps synthetic RGB images zlib-compressed in memory (standing in for PNG/JPEG
bytes). Every __getitem__ decompresses one, converts it to float, takes a random resized crop
by bilinear interpolation, applies colour jitter and a Gaussian blur. With num_workers=0 all of
that runs on the training thread between steps, while the model step is small.

    probe doctor -- python examples/scenarios/input_bound_main_process.py
"""

import argparse
import time
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


def synth_image(rng, size):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.stack(
        [
            np.sin(2 * np.pi * (xx * rng.uniform(1, 4) + yy * rng.uniform(1, 4))),
            np.cos(2 * np.pi * xx * rng.uniform(1, 6)),
            rng.standard_normal((size, size)).astype(np.float32) * 0.2,
        ],
        axis=-1,
    )
    return ((img * 0.5 + 0.5).clip(0, 1) * 255).astype(np.uint8)


class CompressedImageFolder(Dataset):
    def __init__(self, n, size=256, crop=128, seed=0):
        rng = np.random.default_rng(seed)
        self.blobs, self.labels = [], []
        for i in range(n):
            img = synth_image(rng, size)
            self.blobs.append(zlib.compress(img.tobytes(), level=6))
            self.labels.append(i % 10)
        self.size, self.crop = size, crop
        self.rng = np.random.default_rng(seed + 1)
        k = torch.arange(-4, 5, dtype=torch.float32)
        k = torch.exp(-(k**2) / 2.0)
        self.blur = k / k.sum()

    def __len__(self):
        return len(self.blobs)

    def decode(self, i):
        raw = zlib.decompress(self.blobs[i])
        img = np.frombuffer(raw, dtype=np.uint8).reshape(self.size, self.size, 3)
        return torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)

    def __getitem__(self, i):
        img = self.decode(i)
        # RandomRotation(+-15 degrees) by an affine sampling grid
        angle = np.deg2rad(self.rng.uniform(-15, 15))
        c, s = float(np.cos(angle)), float(np.sin(angle))
        theta = torch.tensor([[[c, -s, 0.0], [s, c, 0.0]]])
        grid = F.affine_grid(theta, (1, 3, self.size, self.size), align_corners=False)
        img = F.grid_sample(
            img[None], grid, mode="bicubic", padding_mode="reflection", align_corners=False
        )[0]
        # RandomResizedCrop
        scale = self.rng.uniform(0.4, 1.0)
        side = int(self.size * np.sqrt(scale))
        y0 = self.rng.integers(0, self.size - side + 1)
        x0 = self.rng.integers(0, self.size - side + 1)
        patch = img[:, y0 : y0 + side, x0 : x0 + side][None]
        patch = F.interpolate(
            patch, size=(self.crop, self.crop), mode="bilinear", align_corners=False
        )[0]
        # ColorJitter (brightness/contrast/saturation)
        patch = patch * self.rng.uniform(0.7, 1.3)
        mean = patch.mean()
        patch = (patch - mean) * self.rng.uniform(0.7, 1.3) + mean
        gray = patch.mean(0, keepdim=True)
        patch = gray + (patch - gray) * self.rng.uniform(0.5, 1.5)
        # Separable Gaussian blur, done channel by channel
        out = []
        for c in range(3):
            ch = patch[c][None, None]
            ch = F.conv2d(F.pad(ch, (4, 4, 0, 0), mode="reflect"), self.blur.view(1, 1, 1, 9))
            ch = F.conv2d(F.pad(ch, (0, 0, 4, 4), mode="reflect"), self.blur.view(1, 1, 9, 1))
            out.append(ch[0, 0])
        patch = torch.stack(out).clamp_(0, 1)
        return (patch - 0.5) / 0.25, self.labels[i]


def build_model():
    return nn.Sequential(
        nn.Conv2d(3, 16, 5, stride=4, padding=2),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--num-workers", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(0)
    t = time.time()
    ds = CompressedImageFolder(args.images)
    print(
        f"indexed {len(ds)} images ({sum(map(len, ds.blobs)) / 2**20:.1f} MiB compressed) "
        f"in {time.time() - t:.1f}s"
    )
    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers)
    model = build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.8)

    t = time.time()
    for epoch in range(args.epochs):
        total, n = 0.0, 0
        for images, labels in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(labels)
            n += len(labels)
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {total / n:.4f}")
    print(f"done in {time.time() - t:.1f}s")


if __name__ == "__main__":
    main()
