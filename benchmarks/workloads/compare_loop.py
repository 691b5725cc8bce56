"""Benchmark workload for the compare study: a short loop of numpy work and a little Python per
step, each step marked with probe.step(), and a knob that makes every step slower by a known
share.

``--slowdown F`` spins, after each step's own work, for F times the time that work took: the
step is then 1 + F times as long as it would have been at that moment, whatever the machine's
speed, which is "a change that makes the loop F slower" with nothing else changed (same imports,
same memory, same Python). numpy's BLAS runs on one thread, so that the loop's speed depends on
the machine's drift and not on how many BLAS threads fight over the two cores.

Prints one JSON line, {"loop_s": seconds spent in the loop, "steps": n}.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import probe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--work", type=int, default=100, help="matrix products a step")
    parser.add_argument("--slowdown", type=float, default=0.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.size, args.size)) / args.size**0.5
    w = rng.standard_normal((args.size, args.size)) / args.size**0.5
    history: list[float] = []
    start = time.perf_counter()
    for step in range(args.steps):
        t0 = time.perf_counter()
        for _ in range(args.work):
            x = np.tanh(x @ w)
        history.append(float(x[0, 0]))  # a little Python bookkeeping, as training loops have
        if len(history) > 100:
            history = history[-50:]
        work = time.perf_counter() - t0
        if args.slowdown > 0:
            until = t0 + work * (1 + args.slowdown)
            while time.perf_counter() < until:
                pass
        probe.step()
        if step == 0:
            start = time.perf_counter()  # the first step is warm-up
    loop = time.perf_counter() - start
    print(json.dumps({"loop_s": round(loop, 4), "steps": args.steps - 1}))


if __name__ == "__main__":
    main()
