"""A job that crashes in native code after a few steps (a null pointer read through ctypes)."""

from __future__ import annotations

import ctypes
import time

import probe


def train_step(i: int) -> float:
    t = time.perf_counter()
    total = sum(x * x for x in range(20_000 + i))
    return total + time.perf_counter() - t


def write_metrics(step: int) -> None:
    if step == 30:
        ctypes.string_at(0)  # SIGSEGV: what a broken extension does


def main() -> None:
    for step in range(1, 100):
        train_step(step)
        probe.step()
        write_metrics(step)
        time.sleep(0.03)


if __name__ == "__main__":
    main()
