"""Shared by the serving scenarios: a small text-embedding model built in code, its tokenizer,
and the FastAPI app's request shape. Not a scenario itself.

The encoder is a 2-layer transformer (dim 256, 4 heads) over hashed word-piece ids; the
tokenizer is plain Python (lower-casing, splitting, hashing pieces into the vocabulary), as the
hand-written pre-processing of many model services is.
"""

from __future__ import annotations

import re
import zlib

import torch
from torch import nn

VOCAB = 8000
MAX_LEN = 512
WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


class TextEncoder(nn.Module):
    def __init__(self, dim: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, dim)
        self.pos = nn.Embedding(MAX_LEN, dim)
        layer = nn.TransformerEncoderLayer(dim, 4, 4 * dim, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1])
        h = self.enc(self.tok(ids) + self.pos(pos))
        return nn.functional.normalize(self.norm(h.mean(dim=1)), dim=-1)


def build_model(seed: int = 0) -> TextEncoder:
    torch.manual_seed(seed)
    return TextEncoder().eval()


def tokenize(text: str, max_len: int = MAX_LEN) -> list[int]:
    """Word pieces of at most 4 characters, hashed into the vocabulary (pure Python)."""
    ids = [1]  # [CLS]
    for word in WORD.findall(text.lower()):
        for start in range(0, len(word), 4):
            piece = word[start : start + 4] if start == 0 else "##" + word[start : start + 4]
            ids.append(2 + zlib.crc32(piece.encode()) % (VOCAB - 2))
            if len(ids) >= max_len:
                return ids
    return ids


def embed(model: nn.Module, text: str) -> list[float]:
    """Tokenize, run the model, return the embedding (what every handler does)."""
    ids = torch.tensor([tokenize(text)])
    with torch.inference_mode():
        vector = model(ids)[0]
    return [round(v, 6) for v in vector.tolist()]


def sample_text(words: int = 60, seed: int = 1) -> str:
    """A deterministic request body text of about ``words`` words."""
    import random

    rnd = random.Random(seed)
    vocab = [
        "model",
        "latency",
        "request",
        "server",
        "embedding",
        "token",
        "vector",
        "search",
        "index",
        "query",
        "document",
        "ranking",
        "batch",
        "throughput",
        "cache",
        "shard",
    ]
    return " ".join(rnd.choice(vocab) + str(rnd.randint(0, 99)) for _ in range(words))
