"""Healthy: the embedding server of serve_async_inline.py with the forward off the event loop.

The same FastAPI app, but the `async` handler hands the model to one worker thread
(`loop.run_in_executor`) and awaits it, so the event loop stays free to accept connections, read
requests and send responses while the model runs. Forwards run one at a time on the worker
thread, and torch spreads each one over its intra-op threads (one per core), so under load the
server keeps every core busy: it is at capacity, compute-bound, and its latency is the time its
requests wait for their turn at a model that uses the whole machine.

    probe doctor --on-port 'probe load http://127.0.0.1:$PORT/embed -c 8 -d 8 \
        --body "{\"text\": \"a request text\"}"' -- python examples/scenarios/serve_executor.py
"""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from serving_model import build_model, embed

app = FastAPI()
model = build_model()
# One forward at a time: torch already runs each one on all cores.
inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")


class EmbedRequest(BaseModel):
    text: str


@app.post("/embed")
async def embed_text(request: EmbedRequest) -> dict[str, list[float]]:
    loop = asyncio.get_running_loop()
    vector = await loop.run_in_executor(inference, embed, model, request.text)
    return {"embedding": vector}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0, help="0: any free port")
    args = ap.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="asyncio", log_level="warning")


if __name__ == "__main__":
    main()
