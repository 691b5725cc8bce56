"""Memory growth (no torch): a text-preprocessing worker with an unbounded memo cache.

A pure-Python preprocessing service (no torch at all) handles a stream of JSON requests that
a listener thread receives in small bursts every 20 ms (about 3000 requests/s): the worker
normalises the text, tokenises it with a small word-piece vocabulary (padded to 512 tokens),
builds n-gram and hashed bag-of-words features and returns a response, then waits for the next
burst (busy about 35-55 % of the time, depending on the machine: the rate leaves room so that
even a slow machine's worker keeps up rather than running flat out). To "speed things up" every
serialised response is memoised in a dict keyed by the request text, and every request is
appended to an audit log.
Requests are almost never repeated, so both grow without bound for as long as the worker runs
(~15 MB/s).

    probe doctor -- python examples/scenarios/memory_growth_cache_no_torch.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import queue
import random
import re
import threading
import time
import unicodedata

WORDS = (  # noqa: SIM905
    "model data train loss batch token layer weight graph tensor memory cache worker "
    "request server latency queue stream feature vector embedding attention gradient "
    "optimizer schedule epoch sample shard record index update value key"
).split()
_SPLIT = re.compile(r"[^\w]+")
MAX_LEN = 512


class WordPieceTokenizer:
    def __init__(self, words):
        self.vocab = {"[UNK]": 0}
        for w in words:
            for i in range(1, len(w) + 1):
                self.vocab.setdefault(w[:i], len(self.vocab))
                self.vocab.setdefault("##" + w[i - 1 :], len(self.vocab))

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
        ids = [i for w in words for i in self.tokenizer.tokenize(w)][:MAX_LEN]
        pad = MAX_LEN - len(ids)
        bigrams = {f"{a}_{b}": 1 for a, b in zip(words, words[1:])}
        hashed = [0.0] * 32
        for w in words:
            hashed[hash(w) % 32] += 1.0 / len(words)
        resp = json.dumps(
            {
                "id": req["id"],
                "input_ids": ids + [0] * pad,  # padding="max_length"
                "attention_mask": [1] * len(ids) + [0] * pad,
                "bigrams": bigrams,
                "bow": [round(v, 4) for v in hashed],
                "digest": hashlib.sha1(norm.encode()).hexdigest(),
            }
        )
        self.cache[text] = resp  # memoise (never evicted)
        self.audit_log.append((time.time(), req["id"], raw))
        return resp


def request_stream(seed: int):
    rnd = random.Random(seed)
    n = 0
    while True:
        n += 1
        k = rnd.randint(20, 60)
        text = " ".join(rnd.choice(WORDS) + ("s" if rnd.random() < 0.2 else "") for _ in range(k))
        yield json.dumps({"id": f"req-{n:08d}", "text": f"{text} #{rnd.getrandbits(48):x}"})


def listener(inbox: queue.Queue, rate: float, tick: float, duration: float) -> None:
    """Receives request bursts (one every `tick` seconds) and hands them to the worker."""
    stream = request_stream(seed=7)
    per_tick = max(1, int(rate * tick))
    start = next_tick = time.monotonic()
    while next_tick - start < duration:
        inbox.put([next(stream) for _ in range(per_tick)])
        next_tick += tick
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    inbox.put(None)  # shutdown


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=11.0, help="seconds to serve")
    parser.add_argument("--rate", type=float, default=3000, help="requests per second")
    parser.add_argument("--tick-ms", type=float, default=20.0)
    args = parser.parse_args()

    worker = PreprocessWorker()
    inbox: queue.Queue = queue.Queue()
    threading.Thread(
        target=listener,
        args=(inbox, args.rate, args.tick_ms / 1000, args.duration),
        name="listener",
        daemon=True,
    ).start()
    start = last_report = time.monotonic()
    done, busy = 0, 0.0
    while (burst := inbox.get()) is not None:
        t = time.monotonic()
        for raw in burst:
            worker.handle(raw)
        done += len(burst)
        busy += time.monotonic() - t
        if t - last_report >= 2.0:
            last_report = t
            print(
                f"{done} requests, cache {len(worker.cache)} entries, "
                f"worker busy {busy / (t - start):.0%}",
                flush=True,
            )
    print(f"served {done} requests in {time.monotonic() - start:.1f}s (cache hits: {worker.hits})")


if __name__ == "__main__":
    main()
