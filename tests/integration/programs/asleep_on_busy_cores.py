"""Keeps every core busy with shell loops (no Python in them), and sleeps meanwhile: the main
thread never holds the GIL, so the stack sampler's wait for it should read as near zero even
though its own wake-ups queue for a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import time


def rest(seconds: float) -> None:
    time.sleep(seconds)


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    hogs = [
        subprocess.Popen(["sh", "-c", "while :; do :; done"])
        for _ in range(2 * (os.cpu_count() or 1) + 1)
    ]
    try:
        time.sleep(0.3)  # let them fill the run queues
        rest(seconds)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    print("done")
