"""Event-loop blocked: an asyncio inference service runs the model on the event loop thread.

An asyncio "embedding service" receives requests from concurrent clients (simulated in-process:
each client coroutine submits a request through an asyncio.Queue and awaits a Future). The
request handler is an `async def`, but it calls the PyTorch model synchronously, so while a
forward pass runs (tens of milliseconds; a few hundred for occasional long documents) nothing
else on the loop can run: timers fire late, new requests are not accepted, and latency piles up.

    probe doctor -- python examples/scenarios/event_loop_blocked.py
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

import torch
from torch import nn

import probe


class TextEncoder(nn.Module):
    def __init__(self, vocab: int = 8000, dim: int = 384, layers: int = 4, max_len: int = 1024):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, 6, 4 * dim, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1])
        h = self.enc(self.tok(ids) + self.pos(pos))
        return nn.functional.normalize(self.norm(h.mean(dim=1)), dim=-1)


class EmbeddingService:
    def __init__(self, model: nn.Module, concurrency: int) -> None:
        self.model = model.eval()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.concurrency = concurrency
        self.latencies: list[float] = []

    async def handle(self, ids: list[int]) -> list[float]:
        # "async", but the forward pass below runs synchronously on the event loop thread.
        with torch.inference_mode():
            emb = self.model(torch.tensor([ids]))
        await asyncio.sleep(0)  # e.g. awaiting a cache write
        return emb[0].tolist()

    async def worker(self) -> None:
        while True:
            ids, fut, t_submit = await self.queue.get()
            try:
                fut.set_result(await self.handle(ids))
            except Exception as e:  # pragma: no cover - keep serving
                fut.set_exception(e)
            self.latencies.append(time.perf_counter() - t_submit)
            probe.step()  # one request served
            self.queue.task_done()

    async def submit(self, ids: list[int]) -> list[float]:
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((ids, fut, time.perf_counter()))
        return await fut


async def client(service: EmbeddingService, cid: int, n_requests: int, long_every: int) -> None:
    rnd = random.Random(cid)
    for i in range(n_requests):
        length = 1024 if (i + cid) % long_every == 0 else rnd.randint(96, 256)
        ids = [rnd.randrange(8000) for _ in range(length)]
        emb = await service.submit(ids)
        assert len(emb) > 0
        await asyncio.sleep(rnd.uniform(0.0, 0.02))  # client think time


async def heartbeat(stop: asyncio.Event) -> None:
    """A health-check task that should run every 50 ms."""
    late = []
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.05)
        late.append(time.perf_counter() - t - 0.05)
    print(
        f"heartbeat: median delay {statistics.median(late) * 1000:.0f} ms, "
        f"max {max(late) * 1000:.0f} ms"
    )


async def amain(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    service = EmbeddingService(TextEncoder(), args.clients)
    workers = [asyncio.create_task(service.worker()) for _ in range(2)]
    stop = asyncio.Event()
    hb = asyncio.create_task(heartbeat(stop))
    t0 = time.perf_counter()
    await asyncio.gather(
        *(client(service, c, args.requests, args.long_every) for c in range(args.clients))
    )
    stop.set()
    await hb
    for w in workers:
        w.cancel()
    lat = sorted(service.latencies)
    print(
        f"served {len(lat)} requests in {time.perf_counter() - t0:.1f}s; latency p50 "
        f"{lat[len(lat) // 2] * 1000:.0f} ms, p99 {lat[int(len(lat) * 0.99)] * 1000:.0f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=40, help="requests per client")
    ap.add_argument("--long-every", type=int, default=15)
    asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    main()
