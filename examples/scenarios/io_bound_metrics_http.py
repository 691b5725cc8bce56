"""I/O-bound (network): every step synchronously uploads its metrics to a tracking server.

A small attention-based classifier is trained on synthetic token sequences. After each
optimizer step the loop POSTs the step's metrics (loss, learning rate, gradient norm, per-layer
weight norms) as JSON to an experiment-tracking HTTP endpoint and waits for the answer, as a naive
logging integration does. The "remote" tracking server is started locally on 127.0.0.1 in a
separate process and answers after a realistic 25-35 ms, so the training thread spends a large
part of every step blocked on the socket.

    probe doctor -- python examples/scenarios/io_bound_metrics_http.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn


# --------------------------------------------------------------------------- tracking server
class TrackingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    runs: ClassVar[dict[str, list]] = {}

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        payload = json.loads(body)
        # The service writes to its database and replicates before acknowledging.
        time.sleep(random.uniform(0.025, 0.035))
        self.runs.setdefault(payload["run_id"], []).append(payload["metrics"])
        out = json.dumps({"ok": True, "count": len(self.runs[payload["run_id"]])}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):  # keep the console quiet
        pass


def serve(port_queue):
    server = ThreadingHTTPServer(("127.0.0.1", 0), TrackingHandler)
    port_queue.put(server.server_address[1])
    server.serve_forever()


class TrackingClient:
    def __init__(self, url: str, run_id: str) -> None:
        self.url, self.run_id = url, run_id

    def log(self, step: int, metrics: dict) -> None:
        data = json.dumps({"run_id": self.run_id, "step": step, "metrics": metrics}).encode()
        req = urllib.request.Request(
            f"{self.url}/api/2.0/runs/log-batch",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            json.load(resp)


# --------------------------------------------------------------------------- model
class AttentionClassifier(nn.Module):
    def __init__(self, vocab=1000, dim=128, heads=4, classes=5, max_len=64):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.block = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.1, batch_first=True)
        self.cls = nn.Linear(dim, classes)

    def forward(self, x):
        pos = torch.arange(x.shape[1], device=x.device)
        h = self.block(self.tok(x) + self.pos(pos))
        return self.cls(h.mean(dim=1))


def synthetic_batch(gen, batch, length, vocab=1000, classes=5):
    y = torch.randint(0, classes, (batch,), generator=gen)
    x = torch.randint(0, vocab, (batch, length), generator=gen)
    x[:, ::4] = (y[:, None] * 37 + torch.arange(0, length, 4)) % vocab  # learnable pattern
    return x, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-4)
    args = ap.parse_args()

    ctx = mp.get_context("fork")
    ports = ctx.Queue()
    server = ctx.Process(target=serve, args=(ports,), daemon=True)
    server.start()
    tracker = TrackingClient(f"http://127.0.0.1:{ports.get(timeout=30)}", run_id="exp-42")

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = AttentionClassifier(max_len=args.seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50))

    t0 = time.time()
    for step in range(1, args.steps + 1):
        x, y = synthetic_batch(gen, args.batch_size, args.seq_len)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        tracker.log(
            step,
            {
                "loss": loss.item(),
                "lr": sched.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                **{
                    f"wnorm/{n}": p.detach().norm().item()
                    for n, p in model.named_parameters()
                    if p.dim() > 1
                },
            },
        )
        if step % 25 == 0:
            print(
                f"step {step}/{args.steps} loss {loss.item():.3f} "
                f"({(time.time() - t0) / step * 1000:.0f} ms/step)",
                flush=True,
            )
    print(f"finished {args.steps} steps in {time.time() - t0:.1f}s")
    server.terminate()
    server.join()


if __name__ == "__main__":
    main()
