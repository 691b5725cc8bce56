"""Memory growth (no torch): a text-preprocessing worker with an unbounded memo cache.

A pure-Python preprocessing service (no torch at all) handles a stream of JSON requests: it
normalises text, tokenises it with a small word-piece vocabulary, builds n-gram features and
returns a response. To "speed things up" every serialised response is memoised in a dict keyed by the
request text, and every request is appended to an audit log. Requests are almost never
repeated, so both grow without bound for as long as the worker runs.

    probe doctor -- python examples/scenarios/memory_growth_cache_no_torch.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import time
import unicodedata

WORDS = ("model data train loss batch token layer weight graph tensor memory cache worker "
         "request server latency queue stream feature vector embedding attention gradient "
         "optimizer schedule epoch sample shard record index update value key").split()
_SPLIT = re.compile(r"[^\w]+")


class WordPieceTokenizer:
    def __init__(self, words):
        self.vocab = {"[UNK]": 0}
        for w in words:
            for i in range(1, len(w) + 1):
                self.vocab.setdefault(w[:i], len(self.vocab))
                self.vocab.setdefault("##" + w[i - 1:], len(self.vocab))

    def tokenize(self, word):
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    pieces.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return [0]
            start = end
        return pieces


class PreprocessWorker:
    def __init__(self):
        self.tokenizer = WordPieceTokenizer(WORDS)
        self.cache: dict[str, str] = {}
        self.audit_log: list[tuple[float, str, str]] = []
        self.hits = 0

    def handle(self, raw: str) -> str:
        req = json.loads(raw)
        text = req["text"]
        if text in self.cache:
            self.hits += 1
            return self.cache[text]
        norm = unicodedata.normalize("NFKC", text).lower()
        words = [w for w in _SPLIT.split(norm) if w]
        ids = [i for w in words for i in self.tokenizer.tokenize(w)]
        bigrams = {f"{a}_{b}": 1 for a, b in zip(words, words[1:])}
        resp = json.dumps({
            "id": req["id"],
            "input_ids": ids,
            "attention_mask": [1] * len(ids),
            "bigrams": bigrams,
            "digest": hashlib.sha1(norm.encode()).hexdigest(),
        })
        self.cache[text] = resp  # memoise (never evicted)
        self.audit_log.append((time.time(), req["id"], raw))
        return resp


def request_stream(seed: int):
    rnd = random.Random(seed)
    n = 0
    while True:
        n += 1
        k = rnd.randint(20, 60)
        text = " ".join(rnd.choice(WORDS) + ("s" if rnd.random() < 0.2 else "")
                        for _ in range(k))
        yield json.dumps({"id": f"req-{n:08d}", "text": f"{text} #{rnd.getrandbits(48):x}"})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=11.0, help="seconds to serve")
    parser.add_argument("--report-every", type=int, default=20_000)
    args = parser.parse_args()

    worker = PreprocessWorker()
    start = time.monotonic()
    done = 0
    for raw in request_stream(seed=7):
        worker.handle(raw)
        done += 1
        if done % args.report_every == 0:
            el = time.monotonic() - start
            print(f"{done} requests, {done / el:.0f} req/s, cache {len(worker.cache)} entries",
                  flush=True)
        if done % 256 == 0 and time.monotonic() - start > args.duration:
            break
    print(f"served {done} requests in {time.monotonic() - start:.1f}s "
          f"(cache hits: {worker.hits})")


if __name__ == "__main__":
    main()
