"""A loop of steps marked with probe.step(): a fixed amount of pure-Python work a step, times
--work (so that a second command can be the same program made slower), for --steps steps; exits
with --exit-code at the end."""

from __future__ import annotations

import argparse
import sys

import probe


def step(work: float) -> int:
    total = 0
    for i in range(int(250_000 * work)):
        total += i * i
    return total


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--work", type=float, default=1.0)
    parser.add_argument("--exit-code", type=int, default=0)
    args = parser.parse_args()
    for _ in range(args.steps):
        step(args.work)
        probe.step()
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main())
