"""A small training loop that breaks probe's recording while it runs (tests/integration/
test_faults.py). Its output and exit status are the same with probe or without: probe's faults
must never become the program's.

    python faulty.py [--fill DIR | --remove DIR | --read-only DIR | --close-fds DIR]
                     [--at start|middle|end] [--unhashable-optimizer] [--child] [--exit N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch

STEPS = 80
MAX_FILL_BYTES = 64 << 20  # never fill anything bigger than a small test filesystem


def fill(directory: str) -> None:
    """Write into ``directory`` until its filesystem is full."""
    st = os.statvfs(directory)
    if st.f_blocks * st.f_frsize > MAX_FILL_BYTES:
        sys.exit(f"refusing to fill {directory}: not a small test filesystem")
    block = b"\0" * 65536
    with open(os.path.join(directory, "filler"), "wb", buffering=0) as f:
        while True:
            try:
                f.write(block)
            except OSError:
                break
    with open(os.path.join(directory, "filler2"), "wb", buffering=0) as f:
        try:
            while f.write(b"\0" * 512):  # the last partial block
                pass
        except OSError:
            pass


def read_only(directory: str) -> None:
    """Make ``directory`` read-only for everything opened from now on (Linux refuses to remount a
    filesystem read-only while files are open for writing; a read-only bind mount over it does
    what such a remount does to new files)."""
    subprocess.run(["mount", "--bind", directory, directory], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", directory], check=True)


class Unhashable(torch.optim.SGD):
    """An optimizer that is not hashable (a library defining __eq__ on its optimizer)."""

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = None  # type: ignore[assignment]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fill")
    parser.add_argument("--remove")
    parser.add_argument("--read-only")
    parser.add_argument("--close-fds", metavar="DIR", help="then write a file of its own in DIR")
    parser.add_argument("--at", choices=("start", "middle", "end"), default="middle")
    parser.add_argument("--unhashable-optimizer", action="store_true")
    parser.add_argument("--child", action="store_true", help="start a Python child after it")
    parser.add_argument("--exit", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    optimizer = (Unhashable if args.unhashable_optimizer else torch.optim.SGD)(
        model.parameters(), lr=0.01
    )
    x, y = torch.randn(64, 32), torch.randn(64, 1)
    own = None
    moment = {"start": 0, "middle": STEPS // 2, "end": STEPS}[args.at]
    for step in range(STEPS + 1):
        if step == moment:
            if args.fill and step > 0:
                # a pause (an evaluation, say) longer than the agent's flush period (0.2 s) lets
                # the steps so far reach the disk before it fills, on a busy machine too
                time.sleep(1.0)
            if args.fill:
                fill(args.fill)
                print("filled the disk", flush=True)
            if args.remove:
                import shutil

                shutil.rmtree(args.remove)
                print("removed the session", flush=True)
            if args.read_only:
                read_only(args.read_only)
                print("made the session read-only", flush=True)
            if args.close_fds:
                os.closerange(3, 4096)  # as a daemonising program does
                own = open(os.path.join(args.close_fds, "own.txt"), "w")  # noqa: SIM115
                print("closed every descriptor", flush=True)
            if args.child:
                subprocess.run([sys.executable, "-c", "print('child ran', flush=True)"], check=True)
        if step == STEPS:
            if args.fill:
                # the run's end goes on after the disk is full (a final save, say) for longer
                # than the outside sampler's flush period (0.25 s), so its records are dropped on
                # any machine, however fast the process exits
                time.sleep(1.0)
            break
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        if own is not None:
            own.write(f"line {step}\n")
            own.flush()
        time.sleep(0.02)
    if own is not None:
        own.close()
        with open(own.name) as f:
            expected = "".join(f"line {s}\n" for s in range(moment, STEPS))
            print(f"own file intact: {f.read() == expected}", flush=True)
    print(f"trained {STEPS} steps", flush=True)
    return args.exit


if __name__ == "__main__":
    sys.exit(main())
