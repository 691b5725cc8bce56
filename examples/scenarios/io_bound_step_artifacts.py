"""I/O-bound (disk): every training step reads its shard from disk and writes debug artifacts.

A convolutional autoencoder trains on synthetic image shards stored as raw .npy files in a
temporary "dataset" directory. Instead of using a DataLoader, the loop itself opens and reads the
next shard file each step, and after the update it dumps the step's reconstructions and
gradients with torch.save() and fsync()s them "so nothing is lost if the job dies". The training
thread spends a large part of each step in file I/O.

    probe doctor -- python examples/scenarios/io_bound_step_artifacts.py
"""

import argparse
import io
import os
import shutil
import tempfile
import time

import numpy as np
import torch
from torch import nn


class ConvAutoencoder(nn.Module):
    def __init__(self, ch=8):
        super().__init__()
        self.enc = nn.Sequential(
            nn.Conv2d(3, ch, 4, 2, 1), nn.ReLU(), nn.Conv2d(ch, 2 * ch, 4, 2, 1), nn.ReLU()
        )
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(2 * ch, ch, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(ch, 3, 4, 2, 1),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return self.dec(self.enc(x))


def write_shards(root, n_shards, per_shard, size, seed=0):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_shards):
        base = rng.random((per_shard, 3, 1, 1), dtype=np.float32)
        noise = rng.random((per_shard, 3, size, size), dtype=np.float32)
        imgs = (0.7 * base + 0.3 * noise).astype(np.float32)
        path = os.path.join(root, f"shard-{i:04d}.npy")
        np.save(path, imgs)
        paths.append(path)
    return paths


def read_shard(path):
    with open(path, "rb") as f:
        buf = f.read()
    return torch.from_numpy(np.load(io.BytesIO(buf)))


def dump_artifacts(out_dir, step, batch, recon, model):
    path = os.path.join(out_dir, f"step-{step:06d}.pt")
    state = {
        "step": step,
        "inputs": batch,
        "recon": recon.detach(),
        "grads": {n: p.grad.detach().clone() for n, p in model.named_parameters()},
    }
    with open(path, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    return path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", type=int, default=24)
    parser.add_argument("--per-shard", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--keep-artifacts", type=int, default=20)
    args = parser.parse_args()

    torch.manual_seed(0)
    work = tempfile.mkdtemp(prefix="ae-run-")
    data_dir, art_dir = os.path.join(work, "data"), os.path.join(work, "artifacts")
    os.makedirs(data_dir)
    os.makedirs(art_dir)
    try:
        shards = write_shards(data_dir, args.shards, args.per_shard, args.image_size)
        print(f"wrote {len(shards)} shards to {data_dir}")
        model = ConvAutoencoder()
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        written = []
        t0 = time.time()
        for step in range(args.steps):
            batch = read_shard(shards[step % len(shards)])
            recon = model(batch)
            loss = nn.functional.mse_loss(recon, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            written.append(dump_artifacts(art_dir, step, batch, recon, model))
            if len(written) > args.keep_artifacts:  # rotate old artifacts
                os.remove(written.pop(0))
            if step % 100 == 0:
                print(f"step {step} mse {loss.item():.5f} ({time.time() - t0:.1f}s)", flush=True)
        print(f"done: {args.steps} steps in {time.time() - t0:.1f}s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
