"""GC pauses: a recommender trained from a big in-memory Python feature store.

The script keeps a realistic "feature store" in plain Python objects: an item catalogue (a dict
per item with tuples of tokens, a list of tags and a stats dict) and per-user interaction
histories (lists of (item, timestamp) tuples): a few million small container objects that stay
alive for the whole run. Every step builds a nested-dict record per sample and keeps recent
records in a sliding window used for negative sampling. Those records live long enough to be
promoted to the oldest GC generation, so CPython's full collections run again and again, and
each one has to traverse the whole feature store.

    probe doctor -- python examples/scenarios/gc_pauses_recsys.py
"""

from __future__ import annotations

import argparse
import random
import time
from collections import deque

import torch
from torch import nn

TAGS = ["news", "sports", "music", "movies", "tech", "travel", "food", "games", "kids", "art"]


def build_feature_store(n_items: int, n_users: int, history_len: int, seed: int):
    rnd = random.Random(seed)
    catalog = {}
    for item in range(n_items):
        catalog[item] = {
            "title": tuple(rnd.randrange(5000) for _ in range(4)),
            "tags": [TAGS[rnd.randrange(len(TAGS))], TAGS[rnd.randrange(len(TAGS))]],
            "stats": {"views": rnd.randrange(10_000), "clicks": rnd.randrange(500)},
            "price": (rnd.random() * 100.0, "EUR"),
        }
    histories = {}
    for user in range(n_users):
        histories[user] = [
            (rnd.randrange(n_items), 1_700_000_000 + rnd.randrange(10**7))
            for _ in range(history_len)
        ]
    return catalog, histories


class TwoTower(nn.Module):
    def __init__(self, n_buckets: int, n_tokens: int = 5000, dim: int = 32) -> None:
        super().__init__()
        self.item_emb = nn.EmbeddingBag(n_buckets, dim, mode="mean")
        self.token_emb = nn.EmbeddingBag(n_tokens, dim, mode="mean")
        self.user_mlp = nn.Sequential(nn.Linear(dim + 3, 64), nn.ReLU(), nn.Linear(64, dim))
        self.item_mlp = nn.Sequential(nn.Linear(2 * dim + 2, 64), nn.ReLU(), nn.Linear(64, dim))

    def forward(self, hist, hist_offsets, dense_u, item_ids, tokens, tok_offsets, dense_i):
        u = self.user_mlp(torch.cat([self.item_emb(hist, hist_offsets), dense_u], dim=1))
        i_emb = self.item_emb(item_ids, torch.arange(len(item_ids)))
        i = self.item_mlp(torch.cat([i_emb, self.token_emb(tokens, tok_offsets), dense_i], 1))
        return (u * i).sum(dim=1)


class Trainer:
    def __init__(self, args):
        self.args = args
        self.rnd = random.Random(1)
        t = time.time()
        self.catalog, self.histories = build_feature_store(
            args.items, args.users, args.history, seed=0
        )
        print(
            f"feature store: {len(self.catalog)} items, {len(self.histories)} users "
            f"({time.time() - t:.1f}s)",
            flush=True,
        )
        self.recent = deque(maxlen=args.window)
        self.buckets = args.hash_buckets
        self.model = TwoTower(self.buckets)
        self.opt = torch.optim.Adagrad(self.model.parameters(), lr=0.05)
        self.loss_fn = nn.BCEWithLogitsLoss()

    def make_record(self, user: int, item: int, label: float) -> dict:
        hist = self.histories[user][-self.args.hist_window :]
        meta = self.catalog[item]
        return {
            "user": {"id": user, "events": [(it, (1_710_000_000 - ts) / 1e7) for it, ts in hist]},
            "item": {
                "id": item,
                "tokens": list(meta["title"]),
                "tags": list(meta["tags"]),
                "ctr": meta["stats"]["clicks"] / (1 + meta["stats"]["views"]),
                "price": meta["price"][0],
            },
            "context": {"hour": self.rnd.randrange(24), "device": ("mobile", "web")[user % 2]},
            "label": label,
        }

    def sample_batch(self):
        recs = []
        for _ in range(self.args.batch_size // 2):
            user = self.rnd.randrange(self.args.users)
            pos = self.histories[user][self.rnd.randrange(self.args.history)][0]
            recs.append(self.make_record(user, pos, 1.0))
            # Negatives: items of recent examples of other users (popularity-aware).
            if self.recent:
                neg = self.recent[self.rnd.randrange(len(self.recent))]["item"]["id"]
            else:
                neg = self.rnd.randrange(self.args.items)
            recs.append(self.make_record(user, neg, 0.0))
        self.recent.extend(recs)
        return recs

    def collate(self, recs):
        hist, hist_off, tokens, tok_off = [], [], [], []
        for r in recs:
            hist_off.append(len(hist))
            hist.extend(it % self.buckets for it, _ in r["user"]["events"])
            tok_off.append(len(tokens))
            tokens.extend(r["item"]["tokens"])
        dense_u = torch.tensor(
            [
                [
                    sum(rc for _, rc in r["user"]["events"]) / len(r["user"]["events"]),
                    r["context"]["hour"] / 24,
                    float(r["context"]["device"] == "web"),
                ]
                for r in recs
            ]
        )
        dense_i = torch.tensor([[r["item"]["ctr"], r["item"]["price"] / 100] for r in recs])
        return (
            torch.tensor(hist),
            torch.tensor(hist_off),
            dense_u,
            torch.tensor([r["item"]["id"] % self.buckets for r in recs]),
            torch.tensor(tokens),
            torch.tensor(tok_off),
            dense_i,
            torch.tensor([r["label"] for r in recs]),
        )

    def train(self):
        t0 = time.time()
        for step in range(1, self.args.steps + 1):
            *inputs, labels = self.collate(self.sample_batch())
            logits = self.model(*inputs)
            loss = self.loss_fn(logits, labels)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            if step % 100 == 0:
                print(
                    f"step {step} loss {loss.item():.4f} ({step / (time.time() - t0):.1f} it/s)",
                    flush=True,
                )
        print(f"done: {self.args.steps} steps in {time.time() - t0:.1f}s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--hash-buckets", type=int, default=16_384)
    ap.add_argument("--history", type=int, default=40)
    ap.add_argument("--hist-window", type=int, default=20)
    ap.add_argument("--window", type=int, default=50_000, help="recent records kept")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args()
    torch.manual_seed(0)
    Trainer(args).train()


if __name__ == "__main__":
    main()
