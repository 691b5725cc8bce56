"""Recompilation: a compiled language model whose sequence length grows every few dozen steps.

A small next-token model (token embedding, a causal running mean of the context, a residual MLP,
a vocabulary head) is trained on a synthetic token stream with sequence-length warm-up, a common
curriculum: the context starts short and grows by 32 tokens every 20 steps, and each batch holds
a fixed budget of tokens (fewer sequences as they grow longer, so memory stays flat). The
author compiled it with ``torch.compile(model, dynamic=False)`` to get kernels specialised for
each shape, so every new length fails dynamo's shape guard (``tensor 'tokens' size mismatch at
index 0``: the batch shrank) and the forward and backward graphs are compiled again: a stall of
a fraction of a second (C++ kernels already in inductor's cache) to several seconds (built
afresh) every 20 steps, for the whole run. The first compilation, before the loop, is start-up;
the ones inside the loop are the finding.

    probe doctor -- python examples/scenarios/recompilation_curriculum.py

Compiling needs a C++ compiler (``g++``, or the one ``CXX`` names); without one the program says
so and exits with status 3 before training.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import torch
from torch import nn

NO_COMPILER = 3  # the exit status when torch.compile cannot build its kernels


class BagOfContextLM(nn.Module):
    """Next-token model: each position sees its own token and the running mean of the tokens
    before it (a causal bag of context), mixed by a residual MLP."""

    def __init__(self, vocab: int, width: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.mix = nn.Linear(2 * width, width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        seen = torch.arange(1, tokens.shape[1] + 1, dtype=h.dtype).view(1, -1, 1)
        context = h.cumsum(dim=1) / seen
        x = self.mix(torch.cat([h, context], dim=-1))
        x = x + self.down(nn.functional.gelu(self.up(x)))
        return self.head(self.norm(x))


def synthetic_stream(n: int, vocab: int, seed: int) -> torch.Tensor:
    """Tokens of a random walk on the vocabulary with small, skewed steps: learnable and
    deterministic (the next token is near the last)."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.multinomial(torch.tensor([1.0, 4.0, 8.0, 4.0, 2.0, 1.0]), n, True, generator=g)
    return (steps - 2).cumsum(0).remainder(vocab)


def has_cxx() -> bool:
    return bool(os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++"))


def main() -> None:
    p = argparse.ArgumentParser(description="Train a compiled conv LM with a length curriculum.")
    p.add_argument("--steps", type=int, default=140)
    p.add_argument("--start-length", type=int, default=64)
    p.add_argument("--grow-by", type=int, default=32)
    p.add_argument("--grow-every", type=int, default=20, help="steps between length increases")
    p.add_argument("--tokens-per-batch", type=int, default=4096)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--log-every", type=int, default=10)
    args = p.parse_args()
    if not has_cxx():
        print("torch.compile needs a C++ compiler (g++ or $CXX): none found", file=sys.stderr)
        sys.exit(NO_COMPILER)

    torch.manual_seed(0)
    stream = synthetic_stream(200_000, args.vocab, seed=1)
    model = BagOfContextLM(args.vocab, args.width)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    compiled = torch.compile(model, dynamic=False)  # a kernel set per shape, "for speed"
    g = torch.Generator().manual_seed(2)

    t0 = time.perf_counter()
    for step in range(args.steps):
        length = args.start_length + args.grow_by * (step // args.grow_every)
        batch = max(args.tokens_per_batch // length, 1)
        starts = torch.randint(0, len(stream) - length - 1, (batch,), generator=g)
        window = torch.stack([stream[s : s + length + 1] for s in starts.tolist()])
        tokens, targets = window[:, :-1], window[:, 1:]
        opt.zero_grad(set_to_none=True)
        logits = compiled(tokens)
        loss = nn.functional.cross_entropy(logits.reshape(-1, args.vocab), targets.reshape(-1))
        loss.backward()
        opt.step()
        if step % args.log_every == 0:
            print(f"step {step} batch {batch}x{length} loss {loss.item():.3f}", flush=True)
    print(f"done: {args.steps} steps in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
