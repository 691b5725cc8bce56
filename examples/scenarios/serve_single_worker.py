"""Requests queue behind a single worker: one model thread, one core, while another core idles.

The FastAPI app's `async` handler puts each request on a queue that one model worker thread
drains (a common way to keep a model that is not thread-safe off the event loop), and the
service pins torch to one thread (`torch.set_num_threads(1)`, so that several replicas can share
a machine). The event loop stays free, but every request waits for all those ahead of it at the
single worker, which keeps one core busy while the machine's other core has nothing to do: a
second worker (or a second replica) would serve nearly twice the requests.

    probe doctor --on-port 'probe load http://127.0.0.1:$PORT/embed -c 8 -d 8 \
        --body "{\"text\": \"a request text\"}"' -- python examples/scenarios/serve_single_worker.py
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import threading
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from serving_model import build_model, embed

torch.set_num_threads(1)
app = FastAPI()
model = build_model()
jobs: queue.Queue[tuple[str, asyncio.Future[list[float]], asyncio.AbstractEventLoop]] = (
    queue.Queue()
)


def model_worker() -> None:
    """The one thread that runs the model, a request at a time."""
    while True:
        text, future, loop = jobs.get()
        try:
            result: Any = embed(model, text)
        except Exception as exc:  # pragma: no cover - handed back to the request
            loop.call_soon_threadsafe(future.set_exception, exc)
        else:
            loop.call_soon_threadsafe(future.set_result, result)


threading.Thread(target=model_worker, name="model-worker", daemon=True).start()


class EmbedRequest(BaseModel):
    text: str


@app.post("/embed")
async def embed_text(request: EmbedRequest) -> dict[str, list[float]]:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[float]] = loop.create_future()
    jobs.put((request.text, future, loop))
    return {"embedding": await future}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0, help="0: any free port")
    args = ap.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="asyncio", log_level="warning")


if __name__ == "__main__":
    main()
