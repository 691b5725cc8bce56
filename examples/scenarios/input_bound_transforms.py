"""Input-bound (transform-bound): DataLoader workers burn CPU on per-sample augmentation.

Each sample is a synthetic 1-channel "spectrogram" built on the fly: a random waveform goes
through an STFT, gets time/frequency masking, a random-resize by interpolation and per-bin
normalisation. Two worker processes do this while the model itself is a tiny conv net, so the
training loop spends most of its time waiting in next() on the DataLoader.

    probe doctor -- python examples/scenarios/input_bound_transforms.py
"""

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


class SyntheticAudioClips(Dataset):
    """Audio-like clips turned into log-mel-ish spectrograms with SpecAugment-style masking."""

    def __init__(self, n_clips=4096, clip_len=16000, n_fft=256, out_size=64, seed=0):
        self.n_clips = n_clips
        self.clip_len = clip_len
        self.n_fft = n_fft
        self.out_size = out_size
        self.seed = seed
        self.window = np.hanning(n_fft).astype(np.float32)

    def __len__(self):
        return self.n_clips

    def _waveform(self, rng, label):
        t = np.arange(self.clip_len, dtype=np.float32) / 16000.0
        base = 200.0 + 150.0 * label
        wav = np.zeros_like(t)
        for h in range(1, 6):
            wav += np.sin(2 * np.pi * base * h * t + rng.uniform(0, np.pi)) / h
        wav += 0.3 * rng.standard_normal(self.clip_len).astype(np.float32)
        return wav

    def _stft(self, wav, hop):
        frames = np.lib.stride_tricks.sliding_window_view(wav, self.n_fft)[::hop]
        spec = np.abs(np.fft.rfft(frames * self.window, axis=1)) ** 2
        return np.log1p(spec).T.astype(np.float32)  # (freq, time)

    def __getitem__(self, idx):
        rng = np.random.default_rng(self.seed * 1_000_003 + idx)
        label = idx % 8
        wav = self._waveform(rng, label)
        # Several STFT resolutions, averaged after resizing: a (too) thorough augmentation.
        specs = []
        for hop in (16, 24, 32):
            spec = torch.from_numpy(self._stft(wav, hop))[None, None]
            specs.append(
                F.interpolate(
                    spec, size=(self.out_size, self.out_size), mode="bicubic", align_corners=False
                )
            )
        x = torch.cat(specs).mean(0)
        # SpecAugment: random frequency and time masks.
        f0 = int(rng.integers(0, self.out_size - 8))
        t0 = int(rng.integers(0, self.out_size - 8))
        x[:, f0 : f0 + 8, :] = 0
        x[:, :, t0 : t0 + 8] = 0
        x = (x - x.mean(dim=2, keepdim=True)) / (x.std(dim=2, keepdim=True) + 1e-5)
        return x, label


class TinyConvNet(nn.Module):
    def __init__(self, classes=8):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.mean(dim=(2, 3)))


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=3072)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=3e-3)
    return ap.parse_args()


def main():
    args = parse_args()
    torch.manual_seed(0)
    ds = SyntheticAudioClips(n_clips=args.clips)
    dl = DataLoader(
        ds,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
    )
    net = TinyConvNet()
    optim = torch.optim.Adam(net.parameters(), lr=args.lr)

    start = time.time()
    seen = 0
    for epoch in range(args.epochs):
        for i, (x, y) in enumerate(dl):
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            seen += len(y)
            if i % 10 == 0:
                print(
                    f"[epoch {epoch}] batch {i}/{len(dl)} loss={loss.item():.3f} "
                    f"{seen / (time.time() - start):.0f} samples/s",
                    flush=True,
                )
    print(f"finished: {seen} samples in {time.time() - start:.1f}s")


if __name__ == "__main__":
    main()
