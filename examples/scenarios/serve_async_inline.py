"""Event-loop blocked: a FastAPI embedding server whose `async` handler runs the model inline.

`POST /embed {"text": ...}` tokenizes the text and runs a small transformer encoder. The handler
is `async def`, so FastAPI runs it on uvicorn's event loop thread, and the forward pass (tens of
milliseconds) runs there synchronously: while it runs the loop can neither accept connections,
read requests nor send responses, and every request in flight waits for every forward ahead of
it. Run it under load:

    probe doctor --on-port 'probe load http://127.0.0.1:$PORT/embed -c 8 -d 8 \
        --body "{\"text\": \"a request text\"}"' -- python examples/scenarios/serve_async_inline.py
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from serving_model import build_model, embed

app = FastAPI()
model = build_model()


class EmbedRequest(BaseModel):
    text: str


@app.post("/embed")
async def embed_text(request: EmbedRequest) -> dict[str, list[float]]:
    # "async", but nothing below awaits: the forward pass blocks the event loop.
    return {"embedding": embed(model, request.text)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0, help="0: any free port")
    args = ap.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="asyncio", log_level="warning")


if __name__ == "__main__":
    main()
