"""Python-bound: a hand-written GRU unrolled in Python over time steps, with tiny tensors.

A character-level sequence tagger built from a custom GRU cell (so that the recurrence is easy
to hack on) is trained on short synthetic sequences, a few at a time. Every time step issues a
dozen tiny tensor ops (hidden size 24, batch 4), so the interpreter and the op dispatch overhead
dominate: one thread runs flat out while torch's compute threads have nothing to do.

    probe doctor -- python examples/scenarios/python_bound_rnn.py
"""

import argparse
import random
import time

import torch
from torch import nn


class GRUCell(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.w_ir = nn.Linear(input_size, hidden_size)
        self.w_iz = nn.Linear(input_size, hidden_size)
        self.w_in = nn.Linear(input_size, hidden_size)
        self.w_hr = nn.Linear(hidden_size, hidden_size, bias=False)
        self.w_hz = nn.Linear(hidden_size, hidden_size, bias=False)
        self.w_hn = nn.Linear(hidden_size, hidden_size)

    def forward(self, x, h):
        r = torch.sigmoid(self.w_ir(x) + self.w_hr(h))
        z = torch.sigmoid(self.w_iz(x) + self.w_hz(h))
        n = torch.tanh(self.w_in(x) + r * self.w_hn(h))
        return (1 - z) * n + z * h


class Tagger(nn.Module):
    def __init__(self, vocab, emb, hidden, tags, layers=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, emb)
        self.cells = nn.ModuleList(
            [GRUCell(emb if i == 0 else hidden, hidden) for i in range(layers)]
        )
        self.out = nn.Linear(hidden, tags)

    def forward(self, tokens):
        batch, length = tokens.shape
        x = self.embed(tokens)
        hs = [x.new_zeros(batch, c.hidden_size) for c in self.cells]
        logits = []
        for t in range(length):
            inp = x[:, t]
            for i, cell in enumerate(self.cells):
                hs[i] = cell(inp, hs[i])
                inp = hs[i]
            logits.append(self.out(inp))
        return torch.stack(logits, dim=1)


def make_corpus(n, length, vocab, seed=0):
    rnd = random.Random(seed)
    seqs, tags = [], []
    for _ in range(n):
        s = [rnd.randrange(vocab) for _ in range(length)]
        # tag: is this character the same as the one two steps back?
        t = [int(i >= 2 and s[i] == s[i - 2]) + 2 * int(s[i] < vocab // 4) for i in range(length)]
        seqs.append(s)
        tags.append(t)
    return torch.tensor(seqs), torch.tensor(tags)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sequences", type=int, default=2000)
    ap.add_argument("--length", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=24)
    ap.add_argument("--max-steps", type=int, default=500)
    args = ap.parse_args()

    torch.manual_seed(0)
    vocab = 12
    x, y = make_corpus(args.sequences, args.length, vocab)
    model = Tagger(vocab, 16, args.hidden, 4)
    opt = torch.optim.RMSprop(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()

    step, t0 = 0, time.time()
    while step < args.max_steps:
        perm = torch.randperm(len(x))
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i : i + args.batch_size]
            logits = model(x[idx])
            loss = loss_fn(logits.reshape(-1, 4), y[idx].reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % 100 == 0:
                print(
                    f"step {step} loss {loss.item():.3f} ({step / (time.time() - t0):.1f} it/s)",
                    flush=True,
                )
            if step >= args.max_steps:
                break
    print(f"done: {step} steps in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
