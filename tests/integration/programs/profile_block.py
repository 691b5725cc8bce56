"""probe.profile() in a process that lives on before and after the block: a DataLoader with two
forked workers and a Python subprocess inside it, idle time and another subprocess outside it.
Prints what it saw as JSON on its last line."""

import json
import os
import subprocess
import sys
import threading
import time

import torch
from torch.utils.data import DataLoader, Dataset

import probe
from probe.errors import ProfileError


class Slow(Dataset):
    def __len__(self):
        return 96

    def __getitem__(self, i):
        time.sleep(0.004)
        return torch.full((16,), float(i))


def child() -> int:
    return subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def main() -> None:
    dest = sys.argv[1]
    threads_before = {t.ident for t in threading.enumerate()}
    env_before = {k: os.environ.get(k) for k in ("PYTHONPATH", "PROBE_AGENT")}
    time.sleep(1.0)  # idle before the block: not part of the run
    started = time.monotonic()
    with probe.profile("block", dest=dest) as run:
        model = torch.nn.Linear(16, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(2):
            for batch in DataLoader(
                Slow(), batch_size=8, num_workers=2, multiprocessing_context="fork"
            ):
                loss = model(batch).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        inside = child()
    block_s = time.monotonic() - started
    time.sleep(0.5)
    outside = child()
    try:
        with probe.profile("outer", dest=dest), probe.profile("inner", dest=dest):
            pass
        nested = "no error"
    except ProfileError as exc:
        nested = exc.message
    try:
        with probe.profile("raises", dest=dest):
            raise ValueError("bad batch")
    except ValueError:
        pass
    facts = {
        "session": str(run.session),
        "block_s": block_s,
        "inside": int(inside),
        "outside": int(outside),
        "category": run.diagnosis["category"],
        "duration_s": run.diagnosis["run"]["duration_s"],
        "report": str(run.report()),
        "repr_html": run._repr_html_()[:200],
        "env_restored": env_before == {k: os.environ.get(k) for k in env_before},
        "threads_left": len({t.ident for t in threading.enumerate()} - threads_before),
        "children_left": len(
            [p for p in os.listdir("/proc") if p.isdigit() and _ppid(p) == os.getpid()]
        ),
        "nested": nested,
        "agent_after": probe._agent is not None,
    }
    print(json.dumps(facts))


def _ppid(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


if __name__ == "__main__":
    main()
