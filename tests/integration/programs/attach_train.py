"""An input-bound training loop that runs until told to stop (a file appears), then prints what it
sees of itself, at the start and at the end: probe attach must leave no thread, hook, file or name
behind. Usage: attach_train.py FINISH_FILE [--listen] [--workers N] [--max-seconds S]"""

import argparse
import gc
import json
import os
import sys
import threading
import time

import torch
from torch.optim import optimizer as optimizer_module
from torch.utils.data import DataLoader, Dataset, dataloader
from torch.utils.data._utils import fetch


class Slow(Dataset):
    def __len__(self):
        return 1_000_000

    def __getitem__(self, i):
        time.sleep(0.01)  # storage latency: the loop waits on its input
        return torch.full((32,), float(i % 7))


def open_files():
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    # /proc paths are the listing itself, except a thread's files (the agent reads one: its stat).
    return sorted(
        p
        for p in out
        if p.startswith("/") and (not p.startswith(("/dev", "/proc")) or "/task/" in p)
    )


def probe_objects():
    """Live instances of probe's agent classes (its modules stay imported: their constants don't
    count)."""
    gc.collect()
    owners = ("probe.agent", "probe.collectors", "probe.session.writer")
    return sorted(
        type(o).__qualname__
        for o in gc.get_objects()
        if str(getattr(type(o), "__module__", "")).startswith(owners) and not isinstance(o, type)
    )


def snapshot(originals):
    return {
        "python_threads": len(sys._current_frames()),
        "threading": len(threading.enumerate()),
        "gc_callbacks": len(gc.callbacks),
        "meta_path": [type(f).__name__ for f in sys.meta_path],
        "next_is_original": dataloader._BaseDataLoaderIter.__next__ is originals["next"],
        "fetch_is_original": fetch._MapDatasetFetcher.fetch is originals["fetch"],
        "optimizer_hooks": len(optimizer_module._global_optimizer_pre_hooks)
        + len(optimizer_module._global_optimizer_post_hooks),
        # An agent object still alive would mean something (atexit, a hook) still holds it.
        "probe_objects": probe_objects(),
        "threading_atexits": len(getattr(threading, "_threading_atexits", [])),
        "probe_agent": getattr(sys.modules.get("probe"), "_agent", None) is not None,
        "main_names": sorted(vars(sys.modules["__main__"])),
        "sys_path": list(sys.path),
        "files": [f for f in open_files() if "agent-" in f or ".probe" in f or "/task/" in f],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("finish")
    parser.add_argument("--listen", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=120)
    args = parser.parse_args()
    if args.listen:
        import probe

        probe.listen()
    originals = {
        "next": dataloader._BaseDataLoaderIter.__next__,
        "fetch": fetch._MapDatasetFetcher.fetch,
    }
    torch.manual_seed(0)
    model = torch.nn.Linear(32, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(Slow(), batch_size=8, num_workers=args.workers)
    started = time.monotonic()
    before = None
    steps = 0
    for batch in loader:
        loss = model(batch).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        if before is None and steps == 3:
            before = snapshot(originals)
            print("ready", os.getpid(), flush=True)
        if os.path.exists(args.finish) or time.monotonic() - started > args.max_seconds:
            after = snapshot(originals)
            break
    print(json.dumps({"before": before, "after": after, "steps": steps}), flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
