"""Healthy: the embedding server of serve_async_inline.py with the forward off the event loop.

The same FastAPI app, but the `async` handler hands the model to one worker thread
(`loop.run_in_executor`) and awaits it, so the event loop stays free to accept connections, read
requests and send responses while the model runs. Forwards run one at a time on the worker
thread, torch spreading each over its intra-op threads.

Loaded at 30 requests a second on a schedule (`probe load --rate`), under a third of what it
serves when requests always wait (about 100 a second on a 2-core machine with the load generator
beside it), the server keeps up: requests do not wait in line, the loop is never late, and
latency is the forward's own time. That is what
healthy means for a server: nothing holds it back at this load. (Under the same load the inline
server is event-loop-blocked.) Driven to saturation by a closed loop it would not be healthy: one
forward at a time keeps only about 1.2 of 2 cores busy, and probe finds requests waiting in line
for the single worker with most of a core idle (request-queueing).

    probe doctor --on-port 'probe load http://127.0.0.1:$PORT/embed -c 8 -d 8 --rate 30 \
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
# One forward at a time, torch spreading each over its intra-op threads.
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
