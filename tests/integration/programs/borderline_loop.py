"""An asyncio service whose handler runs a small torch model inline: requests arrive ~8 a second
and each blocks the loop for ~45 ms, so the loop is blocked about a quarter of the time while its
median lag stays near zero and its worst lag hovers around 100 ms (the case where a verdict taken
from the single maximum flipped between runs).

    python borderline_loop.py [--seconds 12]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import torch

BLOCK_S = 0.045


async def serve(seconds: float) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    weights = torch.randn(256, 256) / 16
    x = torch.randn(64, 256)
    rnd = random.Random(0)
    served = 0

    async def handle() -> None:
        nonlocal served
        # "async", but the model runs on the loop's thread: for ~45 ms of wall time whatever
        # the machine's speed or load, so the loop is blocked as long on any machine
        until = time.perf_counter() + BLOCK_S * rnd.lognormvariate(0, 0.3)
        with torch.inference_mode():
            while time.perf_counter() < until:
                torch.tanh(x @ weights)
        served += 1

    tasks = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(rnd.expovariate(8.0))
        tasks.append(asyncio.create_task(handle()))
    await asyncio.gather(*tasks)
    print(f"served {served} requests")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=12.0)
    asyncio.run(serve(ap.parse_args().seconds))


if __name__ == "__main__":
    main()
