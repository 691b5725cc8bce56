"""Insufficient data: a training script that dies in start-up, before its first step.

It imports torch, builds a small GPT-style language model (token and position embeddings, a
stack of pre-norm transformer blocks) and its optimizer, and then opens its token file, which is
not there: `FileNotFoundError`. Everything probe saw is start-up (imports, building the model),
so there is no training loop to judge; the verdict must say what happened instead of judging
model construction as if it were the workload.

    probe doctor -- python examples/scenarios/startup_crash_missing_data.py

It exits with status 1 and Python's traceback, as it would without probe.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int, width: int, depth: int, heads: int, context: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("mlp.2.weight") or name.endswith("out_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * depth))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        n = idx.shape[1]
        mask = torch.triu(torch.full((n, n), float("-inf")), diagonal=1)
        x = self.tokens(idx) + self.positions(torch.arange(n))
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))


def load_tokens(path: Path) -> np.ndarray:
    """The training tokens, as written by a tokenizer run (uint16, one file)."""
    with open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint16)


def main() -> None:
    p = argparse.ArgumentParser(description="Train a tiny GPT on a token file.")
    p.add_argument("--data", default="data/shakespeare/train.bin")
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--context", type=int, default=256)
    args = p.parse_args()

    torch.manual_seed(0)
    model = TinyGPT(args.vocab, args.width, args.depth, args.heads, args.context)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=6e-4,
        betas=(0.9, 0.95),
    )
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params / 1e6:.1f} M parameters; loading {args.data}", flush=True)
    tokens = load_tokens(Path(args.data))  # the file is not there: FileNotFoundError
    batch = torch.from_numpy(tokens[: args.context + 1].astype(np.int64))[None]
    loss = nn.functional.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
    loss.backward()
    optimizer.step()


if __name__ == "__main__":
    main()
