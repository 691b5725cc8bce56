"""``probe attach``, end to end: record a running job, load the agent where the platform allows,
end cleanly and leave the job running as it was.

1. Inspect the process (exists, ours, Python?) before anything is created.
2. Create the session (``kind: "attach"``) and start the outside sampler on the job's whole
   process tree: this always works, with no injection at all.
3. Load the agent into the job's Python processes (the root and its descendants), each through
   the first way that works (``probe.attach.inject``), unless ``--no-inject``.
4. Record until the duration ends, Ctrl-C (or SIGTERM/SIGHUP), or the job exits.
5. End: create the stop file, close listener connections; every agent detaches (hooks removed,
   thread stopped, file closed) within about half a second and says so in its status file; stop
   the sampler; write meta.json with how the attach went (``meta["attach"]``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import probe
from probe.agent.attached import process_start_ticks, status_path
from probe.attach.inject import (
    Injection,
    Injector,
    ListenerInjector,
    Plan,
    default_injectors,
    inject,
)
from probe.attach.target import PROC, Target, alive, descendants, inspect
from probe.errors import AttachError
from probe.recorder import Recording, Settings, default_name

POLL_S = 0.1
RESCAN_S = 1.0  # how often to look for new processes of the tree that listen
END_WAIT_S = 3.0  # how long agents get to confirm that they detached
DEADLINE_MARGIN_S = 120.0  # agents end by themselves this long after the duration, whatever happens
MAX_PROCESSES = 32  # at most this many processes get an agent
HELD_STATES = ("attached",)
NEVER_STARTED = (
    "the agent was queued but never started: the thread that had to start it ran no Python code "
    "during the attach (the main thread blocked in native code, such as thread.join(), before "
    "Python 3.12). Start the job with PROBE_LISTEN=1 to attach to it regardless"
)


@dataclass
class ProcessAttach:
    """How the attach went in one process (this is what meta.json's ``attach.processes`` holds)."""

    pid: int
    command: str
    method: str | None = None  # listener, remote_exec or gdb; None: no agent
    state: str = "not-injected"  # see docs/session-format.md, meta.json's attach.processes
    reason: str | None = None
    inject_s: float | None = None  # how long the injector took (gdb: the process was held)
    attach_s: float | None = None  # from the injection's start to the agent running
    detach_s: float | None = None  # from the end of the attach to the agent gone
    started_ns: int = 0  # when the injection started (monotonic)


@dataclass
class AttachOutcome:
    status: str  # finished, detached, target-exited (meta.json's status)
    recorded_s: float
    processes: list[ProcessAttach]
    no_inside_data: str | None  # why no process has an agent; None when one had


def _settings_config(directory: Path, settings: Settings) -> dict[str, Any]:
    return {
        "dir": str(directory.resolve()),
        "session": directory.name,
        "stack_hz": settings.stack_hz,
        "stack_budget": settings.stack_budget,
        "flush_ms": settings.flush_ms,
        "lag_ms": settings.lag_ms,
    }


def _inspect_quietly(pid: int, proc: Path) -> Target | None:
    try:
        return inspect(pid, proc=proc)
    except AttachError:
        return None


def read_status(directory: Path, pid: int) -> dict[str, Any] | None:
    import json

    try:
        fd = os.open(status_path(str(directory), pid), os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


class AttachRun:
    """One attach: ``prepare()`` (checks, creates the session), then ``record()``."""

    def __init__(
        self,
        target: Target,
        recording: Recording,
        *,
        python_targets: list[Target],
        duration: float | None,
        injectors: list[Injector],
        notify: Callable[[str], None],
        proc: Path = PROC,
    ) -> None:
        self.target = target
        self.recording = recording
        self.python_targets = python_targets
        self.duration = duration
        self.injectors = injectors
        self.notify = notify
        self.proc = proc
        self.processes: dict[int, ProcessAttach] = {}
        self._stop = threading.Event()
        # Where the agents write: the session itself, or, when root attaches to another user's
        # job, a staging directory that user owns (see _agent_dir).
        self.agent_dir = recording.directory
        self.stop_file = self.agent_dir / "attach.stop"
        self.plan: Plan | None = None
        self._ending_ns = 0

    @property
    def directory(self) -> Path:
        return self.recording.directory

    @classmethod
    def prepare(
        cls,
        pid: int,
        *,
        dest: Path,
        name: str | None,
        force: bool,
        settings: Settings,
        duration: float | None,
        notify: Callable[[str], None] = lambda message: None,
        injectors: list[Injector] | None = None,
        proc: Path = PROC,
    ) -> AttachRun:
        """Check the process and create the session; raises AttachError (nothing created)."""
        target = inspect(pid, proc=proc)
        python_targets: list[Target] = []
        if settings.inject:
            tree = [target] + [
                t for t in (_inspect_quietly(c, proc) for c in descendants(pid, proc)) if t
            ]
            python_targets = [t for t in tree if t.is_python and t.uid == target.uid]
            if not python_targets:
                raise AttachError(
                    f"{target.describe()} is not a Python process, and has started none",
                    hint="To record its CPU and memory from outside anyway: "
                    f"probe attach --no-inject {pid}",
                )
            python_targets = python_targets[:MAX_PROCESSES]
        recording = Recording.create(
            dest=dest,
            name=name or default_name(pid),
            force=force,
            kind="attach",
            argv=target.argv or [target.comm],
            settings=settings,
            cwd=target.cwd or "",
            environ=target.environ or {},
        )
        return cls(
            target,
            recording,
            python_targets=python_targets,
            duration=duration,
            injectors=injectors if injectors is not None else default_injectors(),
            notify=notify,
            proc=proc,
        )

    def request_stop(self) -> None:
        """End the attach soon (Ctrl-C); safe to call from a signal handler."""
        self._stop.set()

    # -- recording ------------------------------------------------------------------------------

    def record(self) -> AttachOutcome:
        self.recording.start_sampler(self.target.pid)
        began = time.monotonic()
        status = "detached"
        try:
            if self.python_targets:
                self._inject_all()
            else:
                self.notify("recording from outside only (--no-inject)")
            began = time.monotonic()
            self._announce()
            status = self._wait()
        finally:
            recorded = time.monotonic() - began
            self._end(status)
        return AttachOutcome(status, recorded, list(self.processes.values()), self._no_inside())

    def _plan(self) -> Plan:
        if self.plan is None:
            self.agent_dir = self._agent_dir()
            self.stop_file = self.agent_dir / "attach.stop"
            config = _settings_config(self.directory, self.recording.settings)
            config["dir"] = str(self.agent_dir.resolve())
            config["stop_file"] = str(self.stop_file.resolve())
            config["watch_pid"] = os.getpid()
            config["watch_start"] = process_start_ticks(os.getpid())
            if self.duration is not None:
                config["deadline_ns"] = time.monotonic_ns() + int(
                    (self.duration + DEADLINE_MARGIN_S) * 1e9
                )
            package_parent = str(Path(probe.__file__).resolve().parent.parent)
            self.plan = Plan(
                self.agent_dir, config, package_parent, probe.__version__, self.directory
            )
            self.plan.write_scripts()
            if self.agent_dir != self.directory:
                os.chown(self.agent_dir, self.target.uid, -1)  # only now: scripts are written
        return self.plan

    def _agent_dir(self) -> Path:
        """The session directory, unless root attaches to another user's job: that job cannot
        write into root's session (nor, often, reach it), and handing root's directory to it
        would let it plant links that root then writes through. So its agents write into a
        fresh private directory owned by that user, whose files probe copies into the session at
        the end (regular files only, never following links)."""
        if os.geteuid() != 0 or self.target.uid == 0:
            return self.directory
        return Path(tempfile.mkdtemp(prefix=f"probe-attach-{self.target.pid}-"))

    def _inject_all(self) -> None:
        for target in self.python_targets:
            if self._stop.is_set() or not alive(target.pid, target.start_ticks, self.proc):
                continue
            self._inject_one(target)
        self._poll_statuses()
        queued = [p for p in self.processes.values() if p.state in ("queued", *HELD_STATES)]
        if not queued:
            self.notify("no agent could be loaded: recording from outside only")

    def _inject_one(self, target: Target) -> Injection:
        started = time.monotonic_ns()
        result = inject(target, self._plan(), self.injectors)
        entry = ProcessAttach(pid=target.pid, command=target.describe(), started_ns=started)
        entry.method = result.method
        entry.inject_s = round(result.seconds, 4) if result.queued else None
        if result.queued:
            entry.state = "queued"
        elif not alive(target.pid, target.start_ticks, self.proc):
            entry.state = "gone"  # a short-lived worker that ended meanwhile: nothing to say
        else:
            entry.reason = result.reason
            self.notify(f"process {target.pid}: no agent: {result.reason}")
        self.processes[target.pid] = entry
        return result

    def _poll_statuses(self) -> None:
        """Read what the agents said (status files) and tell the user about each change."""
        for entry in self.processes.values():
            if entry.state not in ("queued", *HELD_STATES):
                continue
            doc = read_status(self.agent_dir, entry.pid)
            if doc is None or doc.get("state") == entry.state:
                continue
            state = str(doc.get("state"))
            if entry.state == "queued" and state == "attached":
                t = doc.get("t")
                if isinstance(t, int) and entry.started_ns:
                    entry.attach_s = round((t - entry.started_ns) / 1e9, 4)
                held = f", process held {entry.inject_s:.2f} s" if entry.method == "gdb" else ""
                self.notify(
                    f"agent running in process {entry.pid} ({entry.method}: "
                    f"{entry.attach_s if entry.attach_s is not None else '?'} s{held})"
                )
            elif state == "detached" and self._ending_ns:
                t = doc.get("t")
                if isinstance(t, int):
                    entry.detach_s = round((t - self._ending_ns) / 1e9, 4)
            elif state in ("refused", "failed"):
                entry.reason = str(doc.get("reason") or state)
                self.notify(f"process {entry.pid}: no agent: {entry.reason}")
            entry.state = state

    def _announce(self) -> None:
        how = (
            f"for {self.duration:g} s (Ctrl-C to stop sooner)"
            if self.duration is not None
            else "until Ctrl-C"
        )
        self.notify(f"recording {self.target.describe()} {how}; the job keeps running")

    def _wait(self) -> str:
        started = time.monotonic()
        next_rescan = started + RESCAN_S
        root = self.target
        while True:
            if self._stop.wait(POLL_S):
                return "detached"
            now = time.monotonic()
            if self.duration is not None and now - started >= self.duration:
                return "finished"
            if not alive(root.pid, root.start_ticks, self.proc):
                return "target-exited"
            self._poll_statuses()
            if self.python_targets and now >= next_rescan:
                next_rescan = now + RESCAN_S
                self._rescan_listeners()

    def _rescan_listeners(self) -> None:
        """Processes started during the attach that listen (spawned workers, ranks): switch them
        on too. (Forked ones get an agent from their parent's already.)"""
        listener = next((i for i in self.injectors if isinstance(i, ListenerInjector)), None)
        if listener is None or len(self.processes) >= MAX_PROCESSES:
            return
        for pid in descendants(self.target.pid, self.proc):
            if pid in self.processes:
                continue
            target = _inspect_quietly(pid, self.proc)
            if target is None or not target.is_python or target.uid != self.target.uid:
                continue
            if listener.socket_path(target) is None:
                continue
            self._inject_one(target)

    # -- the end --------------------------------------------------------------------------------

    def _end(self, status: str) -> None:
        self._ending_ns = time.monotonic_ns()
        try:
            os.close(os.open(self.stop_file, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644))
        except FileExistsError:
            pass
        except OSError as exc:
            self.recording.meta["warnings"].append(f"cannot create the stop file: {exc}")
        for injector in self.injectors:
            if isinstance(injector, ListenerInjector):
                injector.detach_all()
        deadline = time.monotonic() + END_WAIT_S
        while time.monotonic() < deadline:
            self._poll_statuses()
            if not any(
                p.state in HELD_STATES and alive_pid(p.pid, self.proc)
                for p in self.processes.values()
            ):
                break
            time.sleep(POLL_S)
        for entry in self.processes.values():
            if entry.state in HELD_STATES:
                if alive_pid(entry.pid, self.proc):
                    self.recording.meta["warnings"].append(
                        f"the agent in process {entry.pid} did not confirm that it detached; "
                        "it ends by itself at its next check (it watches probe attach)"
                    )
                else:
                    entry.state = "exited"
            elif entry.state == "queued":
                entry.reason = NEVER_STARTED
                self.notify(f"process {entry.pid}: {entry.reason}")
                self.recording.meta["warnings"].append(f"process {entry.pid}: {entry.reason}")
        self.recording.stop_sampler()
        if self.agent_dir != self.directory:
            self._collect_staged()
        no_inside = self._no_inside()
        self.recording.meta["attach"] = {
            "pid": self.target.pid,
            "duration_s": self.duration,
            "inject": self.recording.settings.inject,
            "processes": [asdict(p) for p in self.processes.values()],
            "no_inside_data": no_inside,
        }
        if no_inside is not None and self.recording.settings.inject:
            self.recording.meta["warnings"].append(f"no inside data: {no_inside}")
        self.recording.finish(status=status, exit_code=None, signal=None)
        for script in self.directory.glob("attach-*.py"):
            script.unlink(missing_ok=True)

    def _collect_staged(self) -> None:
        """Copy what the agents wrote in the staging directory into the session, then remove it."""
        for path in sorted(self.agent_dir.iterdir()):
            name = path.name
            if not (
                (name.startswith("agent-") and name.endswith((".rec", ".err")))
                or (name.startswith("attach-") and name.endswith(".json"))
            ):
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as src:
                if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                    continue
                with contextlib.suppress(FileExistsError), open(self.directory / name, "xb") as dst:
                    shutil.copyfileobj(src, dst)
        shutil.rmtree(self.agent_dir, ignore_errors=True)

    def _no_inside(self) -> str | None:
        if not self.recording.settings.inject:
            return "probe attach ran with --no-inject"
        if any(p.state in ("attached", "detached", "exited") for p in self.processes.values()):
            return None
        reasons = [p.reason for p in self.processes.values() if p.reason]
        return reasons[0] if reasons else "no agent was loaded"


def alive_pid(pid: int, proc: Path = PROC) -> bool:
    try:
        stat = (proc / str(pid) / "stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X")


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """While recording, Ctrl-C, SIGTERM and SIGHUP end the attach (not probe, not the job)."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def handler(signum: int, frame: object) -> None:
        stop()

    for sig in signals:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


__all__ = [
    "AttachOutcome",
    "AttachRun",
    "ProcessAttach",
    "read_status",
    "stop_on_signals",
]
