"""Sleeps for a while, then runs pure Python for as long: the stack sampler's rate should drop
while the main thread holds the GIL (each sample then costs it a forced switch) and not while it
sleeps."""

from __future__ import annotations

import sys
import time


def rest(seconds: float) -> None:
    time.sleep(seconds)


def spin(seconds: float) -> int:
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += sum(i * i for i in range(200))
    return n


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.5
    rest(seconds)
    print(spin(seconds) > 0)
