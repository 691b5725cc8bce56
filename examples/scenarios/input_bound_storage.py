"""Input-bound (storage/latency-bound): workers spend their time waiting on slow storage.

At start-up the script shards a synthetic token corpus into thousands of small .npy files in a
temporary directory (as if synced from object storage). Every sample is then assembled from
several of those files, and each file read pays a simulated network-storage latency of a few
milliseconds. The two DataLoader workers are mostly asleep, not computing, and the small
transformer language model waits on them.

    probe doctor -- python examples/scenarios/input_bound_storage.py
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

VOCAB = 512


class RemoteShardStore:
    """A directory of small files with a per-read latency, like a network filesystem."""

    def __init__(self, root: Path, latency_ms: float) -> None:
        self.root = root
        self.latency = latency_ms / 1000.0

    def read(self, key: str) -> np.ndarray:
        time.sleep(self.latency)  # round trip to the storage service
        with open(self.root / key, "rb") as f:
            return np.load(f)


def write_corpus(root: Path, n_files: int, tokens_per_file: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    keys = []
    for i in range(n_files):
        key = f"part-{i // 100:03d}/chunk-{i:05d}.npy"
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        # Zipf-ish token ids, so the data is not uniform noise.
        toks = np.minimum(rng.zipf(1.3, size=tokens_per_file), VOCAB - 1).astype(np.int16)
        np.save(root / key, toks)
        keys.append(key)
    return keys


class ShardedTokenDataset(Dataset):
    def __init__(
        self, store: RemoteShardStore, keys: list[str], seq_len: int, chunks_per_sample: int
    ) -> None:
        self.store = store
        self.keys = keys
        self.seq_len = seq_len
        self.k = chunks_per_sample

    def __len__(self) -> int:
        return len(self.keys) // self.k

    def __getitem__(self, i: int) -> torch.Tensor:
        parts = [self.store.read(self.keys[i * self.k + j]) for j in range(self.k)]
        toks = np.concatenate(parts)[: self.seq_len + 1]
        return torch.from_numpy(toks.astype(np.int64))


class TinyLM(nn.Module):
    def __init__(
        self, d_model: int = 64, n_heads: int = 4, n_layers: int = 1, seq_len: int = 64
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d_model)
        self.pos = nn.Parameter(torch.zeros(seq_len, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=4 * d_model, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.out = nn.Linear(d_model, VOCAB)
        mask = torch.triu(torch.full((seq_len, seq_len), float("-inf")), diagonal=1)
        self.register_buffer("causal_mask", mask)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        h = self.embed(tokens) + self.pos[:t]
        h = self.encoder(h, mask=self.causal_mask[:t, :t])
        return self.out(h)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--tokens-per-file", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--latency-ms", type=float, default=4.0)
    ap.add_argument("--max-steps", type=int, default=80)
    args = ap.parse_args()

    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="shards-"))
    try:
        t0 = time.time()
        keys = write_corpus(tmp, args.files, args.tokens_per_file, seed=0)
        print(f"staged {len(keys)} shard files in {time.time() - t0:.1f}s under {tmp}")

        chunks = -(-(args.seq_len + 1) // args.tokens_per_file)
        ds = ShardedTokenDataset(RemoteShardStore(tmp, args.latency_ms), keys, args.seq_len, chunks)
        loader = DataLoader(
            ds,
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
            prefetch_factor=2,
        )
        model = TinyLM(seq_len=args.seq_len)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loss_fn = nn.CrossEntropyLoss()

        step, t_start = 0, time.time()
        for batch in loader:
            inputs, targets = batch[:, :-1], batch[:, 1:]
            logits = model(inputs)
            loss = loss_fn(logits.reshape(-1, VOCAB), targets.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % 20 == 0:
                rate = step * args.batch_size / (time.time() - t_start)
                print(f"step {step:4d}  loss {loss.item():.3f}  {rate:.1f} seq/s")
            if step >= args.max_steps:
                break
        print(f"trained {step} steps in {time.time() - t_start:.1f}s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
