"""A job that crashes in native code (a null pointer read through ctypes) after 2 s of steps.
Just before, it prints the steps it took and how many of them were taken at least KEPT_S before
the crash: those must be on disk."""

from __future__ import annotations

import ctypes
import time

import probe

CRASH_AFTER_S = 2.0
KEPT_S = 1.0  # the agent flushes every 0.2 s: older data survives with a wide margin


def train_step(i: int) -> float:
    t = time.perf_counter()
    total = sum(x * x for x in range(20_000 + i))
    return total + time.perf_counter() - t


def write_metrics(stepped_at: list[float]) -> None:
    now = time.monotonic()
    if now - stepped_at[0] >= CRASH_AFTER_S:
        kept = sum(1 for t in stepped_at if t <= now - KEPT_S)
        print(f"steps {len(stepped_at)} {kept}", flush=True)
        ctypes.string_at(0)  # SIGSEGV: what a broken extension does


def main() -> None:
    stepped_at: list[float] = []
    step = 0
    while True:
        step += 1
        train_step(step)
        probe.step()
        stepped_at.append(time.monotonic())
        write_metrics(stepped_at)
        time.sleep(0.03)


if __name__ == "__main__":
    main()
