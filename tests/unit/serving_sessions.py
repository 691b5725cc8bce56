"""Hand-built sessions of a server under load (probe load's requests, the server's threads), for
the serving analysis tests and the report's browser test."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from probe.session.reader import Session
from probe.testing import FrameSpec, SessionBuilder

SERVE: list[FrameSpec] = [("/srv/app.py", "<module>", 90), ("/srv/app.py", "main", 80)]
LOOP_IDLE = [
    *SERVE,
    ("/usr/lib/python3.11/asyncio/base_events.py", "run_forever", 600),
    ("/usr/lib/python3.11/asyncio/base_events.py", "_run_once", 1900),
    ("/usr/lib/python3.11/selectors.py", "select", 468),
]
LOOP_FORWARD = [
    *SERVE,
    ("/usr/lib/python3.11/asyncio/base_events.py", "run_forever", 600),
    ("/srv/app.py", "embed", 30),
    ("/venv/site-packages/torch/nn/modules/module.py", "_call_impl", 1700),
]
# A loop that resumes after waiting for the GIL: the sampler finds it in the Python it resumes
# (reading a socket), not in an idle select.
LOOP_RESUMING = [
    *SERVE,
    ("/usr/lib/python3.11/asyncio/base_events.py", "run_forever", 600),
    ("/usr/lib/python3.11/asyncio/base_events.py", "_run_once", 1922),
    ("/usr/lib/python3.11/asyncio/selector_events.py", "_read_ready__data_received", 1000),
]
POOL_IDLE = [
    ("/usr/lib/python3.11/threading.py", "_bootstrap", 1000),
    ("/venv/site-packages/anyio/_backends/_asyncio.py", "run", 900),
    ("/usr/lib/python3.11/queue.py", "get", 171),
    ("/usr/lib/python3.11/threading.py", "wait", 320),
]
POOL_HANDLER = [
    ("/usr/lib/python3.11/threading.py", "_bootstrap", 1000),
    ("/venv/site-packages/anyio/_backends/_asyncio.py", "run", 900),
    ("/srv/app.py", "search", 60),
    ("/srv/app.py", "lexical_score", 44),
]
WORKER_FORWARD = [
    ("/usr/lib/python3.11/threading.py", "_bootstrap", 1000),
    ("/srv/app.py", "model_worker", 40),
    ("/venv/site-packages/torch/nn/modules/module.py", "_call_impl", 1700),
]

DURATION = 14.0
LOAD = (3.0, 13.0)


def closed_loop(concurrency: int, latency: float) -> tuple[np.ndarray, np.ndarray]:
    """``concurrency`` connections, each sending its next request when the last is answered."""
    starts = [
        a
        for c in range(concurrency)
        for a in np.arange(LOAD[0] + 0.01 * c, LOAD[1] - latency, latency)
    ]
    starts = np.sort(np.array(starts))
    return starts, np.full(len(starts), latency)


def server(path: Path, *, busy: float, cores: float = 2.0) -> SessionBuilder:
    b = SessionBuilder(path, duration_s=DURATION, cores=cores, argv=["python", "app.py"])
    b.process(100, torch_threads=1)
    b.system(busy=lambda t: np.where((t >= LOAD[0]) & (t <= LOAD[1]), busy, 0.05))
    b.serve = {"port": 8000, "listen_pids": [100]}
    return b


def samples(b: SessionBuilder, tid: int, frames: list[FrameSpec], late: float = 1e-4) -> None:
    times = np.arange(0.05, DURATION, 0.05)
    idle = LOOP_IDLE if tid == 100 else POOL_IDLE
    in_load = (times >= LOAD[0]) & (times <= LOAD[1])
    b.stack_table(
        100,
        times,
        [idle, frames],
        in_load.astype(int),
        tid=tid,
        late=np.full(len(times), late) if tid == 100 else None,
    )


def thread_pool_session(path: Path) -> Session:
    """8 requests in flight, each on a pool thread running Python; the 8 threads run 0.9 of a
    core between them, the sampler always waits 5 ms for the GIL and the loop is late, idle."""
    b = server(path, busy=1.0)
    b.cpu(100, main=lambda t: 0.03 * in_load(t), pool=lambda t: 0.9 * in_load(t), pool_threads=8)
    samples(b, 100, LOOP_IDLE, late=0.005)
    for tid in range(101, 109):
        samples(b, tid, POOL_HANDLER)
    t = np.arange(0.5, DURATION, 0.02)
    b.lag(100, t, np.where((t >= LOAD[0]) & (t <= LOAD[1]), 0.03, 0.0005))
    b.requests(*closed_loop(8, 0.8))
    return Session(b.write())


def in_load(t: np.ndarray) -> np.ndarray:
    return np.where((t >= LOAD[0]) & (t <= LOAD[1]), 1.0, 0.0)
