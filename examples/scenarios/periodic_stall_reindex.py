"""Periodic stall that fills most of the run: a retrieval model that rebuilds its index.

A small dual encoder learns to match noisy copies of random queries (in-batch contrastive loss)
inside a Trainer-like loop with callbacks. Every 40 steps a callback re-embeds a 40,000-item
corpus and rebuilds a brute-force nearest-neighbour index (`torch.cdist` + `topk`): a stall of
1-3 s against ~10 ms steps, so the stalls take most of the wall time and most 100 ms windows of
the run see no step at all. The verdict must still be periodic-stall, with the callback named.

    probe doctor -- python examples/scenarios/periodic_stall_reindex.py
"""

import argparse
import time

import torch
from torch import nn


class ReindexCallback:
    def __init__(self, corpus: torch.Tensor, every: int) -> None:
        self.corpus = corpus
        self.every = every
        self.index: torch.Tensor | None = None

    def on_step_end(self, trainer: "Trainer", step: int) -> None:
        if step % self.every:
            return
        t = time.monotonic()
        with torch.no_grad():
            emb = torch.cat([trainer.model(chunk) for chunk in self.corpus.split(4096)])
            dist = torch.cdist(emb[:6000], emb)
            self.index = dist.topk(10, largest=False).indices
        print(f"reindex at step {step}: {time.monotonic() - t:.2f} s", flush=True)


class Trainer:
    def __init__(self, model: nn.Module, callbacks: list[ReindexCallback]) -> None:
        self.model = model
        self.callbacks = callbacks
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def fit(self, seconds: float) -> int:
        start = time.monotonic()
        step = 0
        targets = torch.arange(256)
        while time.monotonic() - start < seconds:
            q = torch.randn(256, 128)
            p = q + 0.05 * torch.randn_like(q)
            loss = nn.functional.cross_entropy(self.model(q) @ self.model(p).T, targets)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            step += 1
            for callback in self.callbacks:
                callback.on_step_end(self, step)
        return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=16.0, help="training time")
    parser.add_argument("--every", type=int, default=40, help="steps between index rebuilds")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 64)
    )
    corpus = torch.randn(40_000, 128)
    steps = Trainer(model, [ReindexCallback(corpus, args.every)]).fit(args.seconds)
    print(f"{steps} steps")


if __name__ == "__main__":
    main()
