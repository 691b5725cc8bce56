"""Thread pool saturated: sync FastAPI handlers whose Python re-ranking holds the GIL.

`POST /search {"query": ...}` is a plain `def` endpoint, so FastAPI runs each request on a
thread of its pool (40 threads). The handler is a hybrid search: it embeds the query with a small
model, scores an in-memory index of 1,000 document vectors (one matrix product), then re-ranks
the best 20 candidates in Python (text normalisation, term statistics, snippets) as many search
and recommendation services do. The model and the matrix product release the GIL, but the
Python re-ranking holds it and is most of the work: every request in flight has a thread, the
threads take turns at the GIL, so the process runs about one core's worth of Python however many
requests wait, and each request takes as long as all of them together.

    probe doctor --on-port 'probe load http://127.0.0.1:$PORT/search -c 12 -d 8 \
        --body "{\"query\": \"cache latency\"}"' \
        -- python examples/scenarios/serve_sync_threadpool.py
"""

from __future__ import annotations

import argparse
import math
import unicodedata

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from serving_model import build_model, sample_text, tokenize

CANDIDATES = 20

app = FastAPI()
model = build_model()
torch.set_num_threads(1)  # one request's small forward gains nothing from a second core
corpus = [sample_text(120, seed=i) for i in range(1000)]


def encode(texts: list[str]) -> torch.Tensor:
    ids = [tokenize(t, 16) for t in texts]
    width = max(len(i) for i in ids)
    with torch.inference_mode():
        return model(torch.tensor([i + [0] * (width - len(i)) for i in ids]))


index = torch.cat([encode(corpus[i : i + 100]) for i in range(0, len(corpus), 100)])


class SearchRequest(BaseModel):
    query: str


def normalise(text: str) -> list[str]:
    """Lower-cased, accents stripped, split into terms: character by character."""
    out = []
    for ch in unicodedata.normalize("NFKD", text):
        if not unicodedata.combining(ch):
            out.append(ch.lower() if ch.isalnum() else " ")
    return "".join(out).split()


def lexical_score(query: list[str], doc: list[str]) -> float:
    counts: dict[str, int] = {}
    for term in doc:
        counts[term] = counts.get(term, 0) + 1
    score = 0.0
    for term in query:
        tf = counts.get(term, 0) + sum(1 for t in doc if t.startswith(term[:4]))
        score += tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len(doc) / 120)) if tf else 0.0
    return score


def snippet(doc: list[str], query: list[str], width: int = 12) -> str:
    best, where = -1, 0
    for i in range(len(doc)):
        hits = sum(1 for t in doc[i : i + width] if any(t.startswith(q[:4]) for q in query))
        if hits > best:
            best, where = hits, i
    return " ".join(doc[where : where + width])


@app.post("/search")
def search(request: SearchRequest) -> dict[str, list[dict[str, object]]]:
    query = normalise(request.query)
    dense = (index @ encode([request.query])[0]).tolist()
    top = sorted(range(len(corpus)), key=lambda i: -dense[i])[:CANDIDATES]
    results = []
    for i in top:
        doc = normalise(corpus[i])
        score = 0.6 * dense[i] + 0.4 * math.tanh(lexical_score(query, doc) / 4)
        results.append({"id": i, "score": round(score, 6), "snippet": snippet(doc, query)})
    results.sort(key=lambda r: -float(r["score"]))  # type: ignore[arg-type]
    return {"results": results[:10]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0, help="0: any free port")
    args = ap.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="asyncio", log_level="warning")


if __name__ == "__main__":
    main()
