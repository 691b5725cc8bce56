"""``probe attach``, inside the target: start the agent in a running process, and end it cleanly.

Reached from the script ``probe attach`` injects (through gdb or ``sys.remote_exec``) and from the
dormant listener (``probe.listen()``). Standard library only, like the rest of the agent.

The attach is held by a lease that the agent thread checks every 0.5 s. It ends, and the agent
detaches (hooks removed, thread stopped, file closed), as soon as any of these holds:

- the stop file exists (``probe attach`` creates it when its duration ends or on Ctrl-C);
- probe's own process is gone (it was killed): an agent never outlives the attach that started it;
- the deadline passed (the duration plus a margin, a last safety net);
- the listener's control connection asks for it or is closed (listener path only).

Progress goes back to ``probe attach`` in a small status file per process,
``attach-<pid>.json`` in the session directory, replaced atomically: ``attached`` (or
``refused``/``failed`` with the reason), then ``detached`` with why.
"""

from __future__ import annotations

import json
import os
import sys
import time

from probe.agent import runtime
from probe.files import write_atomic

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

STATUS_NAME = "attach-{pid}.json"


def status_path(directory: str, pid: int) -> str:
    return os.path.join(directory, STATUS_NAME.format(pid=pid))


def write_status(directory: str, state: str, **fields: Any) -> None:
    """Tell ``probe attach`` how the attach goes in this process (never raises)."""
    pid = os.getpid()
    doc = {"pid": pid, "state": state, "t": time.monotonic_ns(), **fields}
    try:
        write_atomic(status_path(directory, pid), json.dumps(doc))
    except OSError:
        pass


def process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (tells a pid from a reused one)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            blob = f.read()
    except OSError:
        return None
    fields = blob[blob.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


class Lease:
    """When the attach is over; ``over()`` returns why, or None while it holds."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.stop_file = str(config.get("stop_file") or "")
        self.watch_pid = int(config.get("watch_pid") or 0)
        self.watch_start = config.get("watch_start")
        deadline = config.get("deadline_ns")
        self.deadline_ns = int(deadline) if deadline else 0

    def over(self) -> str | None:
        if self.stop_file and os.path.exists(self.stop_file):
            return "probe attach ended"
        if self.deadline_ns and time.monotonic_ns() >= self.deadline_ns:
            return "the attach deadline passed"
        if self.watch_pid and process_start_ticks(self.watch_pid) != self.watch_start:
            return "the probe attach process is gone"
        return None


def start(
    config: dict[str, Any],
    *,
    method: str,
    extra_end: Callable[[], str | None] | None = None,
    on_detached: Callable[[], None] | None = None,
) -> str | None:
    """Start the agent for ``probe attach`` and report in the status file.

    ``extra_end`` adds a reason to end (the listener's control connection); ``on_detached`` runs
    on the agent thread once everything is removed. Returns None once the agent runs, else why it
    does not (the attach is already over, the process is already recorded...). Never raises.
    """
    directory = str(config["dir"])
    lease = Lease(config)
    why = lease.over()
    if why is not None:  # the injected call ran late: nothing to do
        write_status(directory, "refused", method=method, reason=why)
        return why
    ended: list[str] = []

    def end_when() -> bool:
        try:
            reason = lease.over() or (extra_end() if extra_end is not None else None)
        except Exception as exc:
            reason = f"lease check failed: {exc!r}"
        if reason is not None:
            ended.append(reason)
            return True
        return False

    owner = os.getpid()

    def detached(agent: runtime.Agent) -> None:
        if os.getpid() == owner:
            write_status(
                directory,
                "detached",
                method=method,
                reason=ended[0] if ended else "the agent stopped",
                errors=agent.errors,
            )
        if on_detached is not None:
            on_detached()

    try:
        agent = runtime.attach(config, end_when, detached)
    except RuntimeError as exc:
        write_status(directory, "refused", method=method, reason=str(exc))
        return str(exc)
    except Exception as exc:
        reason = f"the agent failed to start: {type(exc).__name__}: {exc}"
        write_status(directory, "failed", method=method, reason=reason)
        return reason
    write_status(
        directory,
        "attached",
        method=method,
        python=sys.version.split()[0],
        session=agent.session,
    )
    return None


__all__ = ["Lease", "process_start_ticks", "start", "status_path", "write_status"]
