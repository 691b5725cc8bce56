"""Straggler rank: a 2-process DDP job (gloo, CPU) where rank 1 is slower every step.

Both ranks train the same MLP with DistributedDataParallel on their shard of a synthetic
regression task. Rank 1's shard, though, is stored "raw": every batch has to be decompressed and
feature-engineered (polynomial features, rolling statistics) before the step, which costs tens of
milliseconds that rank 0 does not pay. Gradients are all-reduced every step, so rank 0 finishes
its backward early and then waits in the all-reduce for rank 1.

    probe doctor -- torchrun --standalone --nproc_per_node 2 \
        examples/scenarios/straggler_rank_ddp.py
"""

import argparse
import time
import zlib

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

FEATURES = 64


class CachedShard:
    """Fast path: features already materialised as a tensor."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, FEATURES, generator=g)
        self.y = self.x[:, :4].sum(dim=1, keepdim=True).sin()

    def batch(self, i, bs):
        j = (i * bs) % (len(self.x) - bs)
        return self.x[j : j + bs], self.y[j : j + bs]


class RawShard:
    """Slow path: compressed raw records, features computed per batch."""

    def __init__(self, n, seed, raw_dim=16):
        rng = np.random.default_rng(seed)
        self.chunks = []
        for _ in range(0, n, 256):
            raw = rng.standard_normal((256, raw_dim, 48)).astype(np.float32)
            self.chunks.append(zlib.compress(raw.tobytes(), level=1))
        self.raw_dim = raw_dim

    def batch(self, i, bs):
        raws = []
        for k in range(bs // 256):
            c = self.chunks[(i * (bs // 256) + k) % len(self.chunks)]
            raws.append(
                np.frombuffer(zlib.decompress(c), dtype=np.float32).reshape(256, self.raw_dim, 48)
            )
        raw = np.concatenate(raws)
        # Feature engineering: rolling statistics and spectral energy over the time axis.
        win = np.lib.stride_tricks.sliding_window_view(raw, 8, axis=2)
        rolling = np.concatenate([win.mean(-1).mean(-1), win.std(-1).mean(-1)], axis=1)
        spec = np.abs(np.fft.rfft(raw, axis=2))[:, :, 1:3].reshape(len(raw), -1)
        feats = np.concatenate([rolling, spec], axis=1)[:, :FEATURES]
        x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
        return x, x[:, :4].sum(dim=1, keepdim=True).sin()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--slow-rank", type=int, default=1)
    args = ap.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)  # one core per rank
    torch.manual_seed(0)

    shard = (RawShard if rank == args.slow_rank else CachedShard)(20_000, seed=rank)
    model = DDP(
        nn.Sequential(
            nn.Linear(FEATURES, args.hidden),
            nn.SiLU(),
            nn.Linear(args.hidden, args.hidden),
            nn.SiLU(),
            nn.Linear(args.hidden, 1),
        )
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()

    dist.barrier()
    t0 = time.time()
    for step in range(args.steps):
        x, y = shard.batch(step, args.batch_size)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()  # DDP all-reduces gradients here
        opt.step()
        if rank == 0 and (step + 1) % 50 == 0:
            print(
                f"step {step + 1}/{args.steps} loss {loss.item():.4f} "
                f"({(time.time() - t0) / (step + 1) * 1000:.0f} ms/step)",
                flush=True,
            )
    dist.barrier()
    if rank == 0:
        print(f"world size {world}: {args.steps} steps in {time.time() - t0:.1f}s")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
