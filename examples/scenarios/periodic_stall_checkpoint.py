"""Periodic stall: a full checkpoint (model + optimizer state) is written every N steps.

A text classifier fine-tunes a small head on top of a frozen "pretrained" encoder with a large
embedding table (about 30M parameters). Every `--ckpt-every` steps the loop writes a complete
checkpoint (the whole state_dict plus optimizer state, ~125 MB) to disk and fsyncs it, so every
so often one step takes many times longer than the others.

    probe doctor -- python examples/scenarios/periodic_stall_checkpoint.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Config:
    vocab: int = 60_000
    dim: int = 512
    classes: int = 20
    seq_len: int = 48
    batch_size: int = 256
    hidden: int = 1024
    steps: int = 360
    ckpt_every: int = 30
    keep: int = 2


class FrozenEncoder(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab, cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(self.embed(tokens).mean(dim=1)))


class Classifier(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.encoder = FrozenEncoder(cfg)
        self.encoder.requires_grad_(False)
        h = cfg.hidden
        self.head = nn.Sequential(
            nn.Linear(cfg.dim, h),
            nn.GELU(),
            nn.Dropout(0.1),
            nn.Linear(h, h),
            nn.GELU(),
            nn.Linear(h, cfg.classes),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = self.encoder(tokens)
        return self.head(feats)


class CheckpointManager:
    def __init__(self, directory: str, keep: int) -> None:
        self.dir, self.keep, self.saved = directory, keep, []

    def save(self, step: int, model: nn.Module, opt: torch.optim.Optimizer, sched) -> float:
        t = time.perf_counter()
        path = os.path.join(self.dir, f"ckpt-{step:06d}.pt")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            torch.save(
                {
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                },
                f,
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self.saved.append(path)
        while len(self.saved) > self.keep:
            os.remove(self.saved.pop(0))
        return time.perf_counter() - t


def batches(cfg: Config, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    while True:
        y = torch.randint(0, cfg.classes, (cfg.batch_size,), generator=g)
        x = torch.randint(0, cfg.vocab, (cfg.batch_size, cfg.seq_len), generator=g)
        x[:, :8] = y[:, None] * 101 + torch.arange(8)  # class-specific prefix tokens
        yield x, y


def main() -> None:
    cfg = Config()
    ap = argparse.ArgumentParser()
    for name, value in vars(cfg).items():
        ap.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    ap.add_argument("--out", default=None, help="checkpoint directory (default: a temp dir)")
    cfg = Config(**{k: v for k, v in vars(ap.parse_args()).items() if k != "out"})
    out = ap.parse_args().out or tempfile.mkdtemp(prefix="ckpt-")

    torch.manual_seed(0)
    model = Classifier(cfg)
    n_total = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)  # frozen params get no state
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    ckpt = CheckpointManager(out, cfg.keep)
    print(f"model: {n_total / 1e6:.1f}M params, checkpoints every {cfg.ckpt_every} steps -> {out}")

    t0 = time.time()
    try:
        for step, (x, y) in zip(range(1, cfg.steps + 1), batches(cfg)):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % cfg.ckpt_every == 0:
                took = ckpt.save(step, model, opt, sched)
                print(
                    f"step {step}: loss {loss.item():.3f}, checkpoint saved in {took:.2f}s",
                    flush=True,
                )
        print(f"done: {cfg.steps} steps in {time.time() - t0:.1f}s")
    finally:
        if ap.parse_args().out is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
