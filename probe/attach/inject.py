"""Getting probe's agent into a running Python process: three ways, tried in this order.

1. ``ListenerInjector``: the job opted in (``PROBE_LISTEN=1`` or ``probe.listen()``) and waits on a
   Unix socket; no debugger, any Python, no special permission beyond being the same user.
2. ``RemoteExecInjector``: Python >= 3.14, ``sys.remote_exec`` (PEP 768).
3. ``GdbInjector``: older Pythons, through gdb (as memray and pyrasite do).

Each one says, before trying, why it cannot be used here (``unavailable``), and raises
``InjectionFailed`` with the reason when trying fails; the reason always says what would allow it.
What happens next in the target (the agent starting, then detaching) is reported in the session's
``attach-<pid>.json`` status files, read by ``probe.attach.runner``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from probe.agent import listener as listener_mod
from probe.attach import permissions, script
from probe.attach.target import PROC, Target, same_namespaces
from probe.files import write_atomic

AGENT_MIN_PYTHON = (3, 10)
REMOTE_EXEC_PYTHON = (3, 14)
DISABLE_ENV = "PYTHON_DISABLE_REMOTE_DEBUG"
DEBUGGER_TIMEOUT_S = 120.0
LISTENER_TIMEOUT_S = 10.0
# Pythons whose _PyEval_AddPendingCall(interp, func, arg, 0) lets any thread run the call.
ANY_THREAD_PENDING_CALLS = ((3, 12), (3, 13))


class InjectionFailed(Exception):
    """Injection was tried and failed; the message says why and what would allow it."""


class InjectionRefused(InjectionFailed):
    """The job itself answered no (already recorded, say): no other way should be tried."""


@dataclass
class Plan:
    """What every injection in one attach shares: where the agents write, and their settings."""

    agent_dir: Path  # where the agents write: the session, or a staging directory (see runner)
    config: dict[str, Any]  # the agent's config (see probe.agent.attached)
    package_parent: str  # the directory holding probe's package
    version: str  # probe's version: the target must load this one
    work_dir: Path | None = None  # probe's own scratch files (gdb commands); default agent_dir

    SCRIPTED = ("gdb", "remote_exec")

    def write_scripts(self) -> None:
        """Write the scripts the job runs (before the directory is handed to the job's user)."""
        for method in self.SCRIPTED:
            path = self.agent_dir / f"attach-{method}.py"
            text = script.agent_script(self.config, self.package_parent, method, self.version)
            write_atomic(path, text)

    def script_path(self, method: str) -> Path:
        path = self.agent_dir / f"attach-{method}.py"
        if not path.exists():
            self.write_scripts()
        return path

    @property
    def scratch(self) -> Path:
        return self.work_dir if self.work_dir is not None else self.agent_dir


class Injector(Protocol):
    name: str

    def unavailable(self, target: Target) -> str | None: ...

    def inject(self, target: Target, plan: Plan) -> None: ...


def _common_obstacle(target: Target) -> str | None:
    if target.python is None:
        return "it is not a Python process"
    if target.python < AGENT_MIN_PYTHON:
        return (
            f"it runs Python {target.python_text}; probe's agent needs Python "
            f"{AGENT_MIN_PYTHON[0]}.{AGENT_MIN_PYTHON[1]} or newer"
        )
    return None


def _debugger_obstacle(target: Target, proc: Path = PROC) -> str | None:
    environ = target.environ or {}
    if environ.get(DISABLE_ENV):
        return (
            f"the job was started with {DISABLE_ENV} set: it asked not to be debugged. "
            "Restart it without that variable to allow it. " + permissions.LISTEN_ADVICE
        )
    ns = same_namespaces(target.pid, proc)
    if ns is not None:
        return (
            f"the process runs in another container ({ns} namespace): run probe attach inside "
            "that container (docker exec / kubectl exec)"
        )
    return permissions.ptrace_obstacle(target.tracer_pid)


def _run_debugger(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a debugger in a session of its own: Ctrl-C in probe's terminal must never reach it
    (interrupting gdb in the middle of a call into the target could leave the target broken)."""
    env = dict(os.environ, LC_ALL="C", LANG="C")
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        check=False,
    )


class GdbInjector:
    name = "gdb"

    def __init__(self, gdb: str | None = "gdb", proc: Path = PROC) -> None:
        self.gdb = shutil.which(gdb) if gdb else None  # a name on PATH, or a path
        self.proc = proc
        self.seconds = 0.0  # how long gdb held the process

    def unavailable(self, target: Target) -> str | None:
        common = _common_obstacle(target)
        if common is not None:
            return common
        if self.gdb is None:
            return (
                f"gdb is not installed (needed for Python {target.python_text}; Python 3.14 "
                "needs no debugger). Install it (apt-get install gdb, dnf install gdb). "
                + permissions.LISTEN_ADVICE
            )
        return _debugger_obstacle(target, self.proc) or gdb_corrupts_calls(self.gdb)

    def inject(self, target: Target, plan: Plan) -> None:
        assert self.gdb is not None
        path = plan.script_path(self.name)
        commands = plan.scratch / f"attach-{target.pid}.gdb"
        any_thread = target.python in ANY_THREAD_PENDING_CALLS
        commands.write_text(
            "\n".join(script.gdb_commands(script.gdb_stub(str(path)), any_thread=any_thread)) + "\n"
        )
        started = time.monotonic()
        try:
            result = _run_debugger(
                script.gdb_argv(self.gdb, target.pid, commands), DEBUGGER_TIMEOUT_S
            )
            if "--readnever" in result.stderr and "unrecognized" in result.stderr:
                started = time.monotonic()  # a gdb older than 8.3: it never attached
                result = _run_debugger(
                    script.gdb_argv(self.gdb, target.pid, commands, readnever=False),
                    DEBUGGER_TIMEOUT_S,
                )
        except subprocess.TimeoutExpired as exc:
            raise InjectionFailed(
                f"gdb did not finish within {DEBUGGER_TIMEOUT_S:.0f} s (the process may be "
                "stopped or in uninterruptible sleep)"
            ) from exc
        except OSError as exc:
            raise InjectionFailed(f"gdb could not run: {exc.strerror or exc}") from exc
        finally:
            self.seconds = time.monotonic() - started
            commands.unlink(missing_ok=True)
        raise_for_gdb_output(result.stdout + result.stderr)


# gdb's own words when it cannot put the registers back after a call into the process (seen on
# some kernels and hypervisors, where writing the x86 extended state fails): the process then
# resumes with a broken system call (a sleep returns errno 514) and usually dies.
_REGISTERS_NOT_RESTORED = ("couldn't write extended state", "couldn't write registers")
_gdb_checked: dict[str, str | None] = {}


def gdb_corrupts_calls(gdb: str, timeout: float = 20.0) -> str | None:
    """Why gdb must not call into a process on this machine, or None when it can.

    Before gdb touches the job, it makes the same kind of call (a function call in the process,
    which saves and restores the registers) into a throwaway ``sleep`` of probe's own. If gdb
    reports that it could not restore the registers, or the sleep does not survive the call,
    the job would not either. Checked once per gdb per probe process. A check that cannot run
    (no ``sleep``, no permission to trace) says nothing: the real attempt then explains itself.
    """
    if gdb in _gdb_checked:
        return _gdb_checked[gdb]
    sleeper_path = shutil.which("sleep")
    if sleeper_path is None:
        return None
    try:
        sleeper = subprocess.Popen(
            [sleeper_path, "60"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        return None
    reason: str | None = None
    try:
        time.sleep(0.05)  # into its nanosleep, where a job sits most of the time too
        argv = [
            *script.gdb_argv(gdb, sleeper.pid, Path(os.devnull)),
            "-ex",
            "sharedlibrary libc[.-]",
            "-ex",
            "print (int) getpid()",
            "-ex",
            "detach",
        ]
        try:
            result = _run_debugger(argv, timeout)
        except (OSError, subprocess.TimeoutExpired):
            return None
        output = (result.stdout + result.stderr).lower()
        if "not permitted" in output or "ptrace:" in output:
            return None
        time.sleep(0.1)  # a broken sleep fails at once
        died = sleeper.poll() is not None
        broken = next((w for w in _REGISTERS_NOT_RESTORED if w in output), None)
        if broken is not None or died:
            what = f'"{broken}"' if broken is not None else "the process died after it"
            reason = (
                f"gdb cannot call into a process safely on this machine: a test call into a "
                f"process of probe's own failed ({what}; this kernel or hypervisor does not "
                "let gdb restore the registers), and the job would be left broken. "
                + permissions.LISTEN_ADVICE
            )
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        sleeper.wait()
    _gdb_checked[gdb] = reason
    return reason


def raise_for_gdb_output(output: str) -> None:
    """Turn gdb's output into success (the call was queued) or InjectionFailed with a reason."""
    lowered = output.lower()
    broken = next((w for w in _REGISTERS_NOT_RESTORED if w in lowered), None)
    if broken is not None:
        raise InjectionFailed(
            f'gdb could not restore the process\'s registers after its call ("{broken}"): the '
            "process may have been left broken by it. " + permissions.LISTEN_ADVICE
        )
    for line in output.splitlines():
        if line.startswith(script.GDB_OK):
            rc = line.split()[1:2]
            if rc == ["0"]:
                return
            raise InjectionFailed(
                "the interpreter refused the call (its queue of pending calls is full); "
                "try again in a moment"
            )
    if "PROBE_MMAP_FAILED" in output:
        raise InjectionFailed("gdb could not map memory in the process (out of memory?)")
    if "operation not permitted" in lowered or "ptrace:" in lowered:
        denied = next(
            (ln.strip() for ln in output.splitlines() if "not permitted" in ln.lower()),
            "Operation not permitted",
        )
        raise InjectionFailed(permissions.explain_failure(denied))
    if "no symbol" in lowered and ("py_addpendingcall" in lowered or "pyrun" in lowered):
        raise InjectionFailed(
            "gdb found no CPython in the process (no Py_AddPendingCall symbol): it may embed "
            "Python in an unusual way"
        )
    if "no symbol" in lowered and "mmap" in lowered:
        raise InjectionFailed("gdb found no C library in the process (no mmap symbol)")
    tail = " | ".join(
        ln.strip() for ln in output.splitlines() if ln.strip() and "warning:" not in ln
    )[-400:]
    raise InjectionFailed(f"gdb failed: {tail or 'no output'}")


class RemoteExecInjector:
    name = "remote_exec"

    def __init__(self, proc: Path = PROC) -> None:
        self.proc = proc
        self.seconds = 0.0

    def unavailable(self, target: Target) -> str | None:
        common = _common_obstacle(target)
        if common is not None:
            return common
        assert target.python is not None
        if target.python < REMOTE_EXEC_PYTHON:
            return f"sys.remote_exec needs Python 3.14; the process runs {target.python_text}"
        if any(arg.replace("-", "_") == "disable_remote_debug" for arg in _x_options(target.argv)):
            return (
                "the job was started with -X disable_remote_debug: it asked not to be debugged. "
                + permissions.LISTEN_ADVICE
            )
        return _debugger_obstacle(target, self.proc)

    def command(self, target: Target, plan: Plan) -> list[str]:
        path = plan.script_path(self.name)
        return script.remote_exec_command(
            target.pid, str(path), str(self.proc / str(target.pid) / "exe")
        )

    def inject(self, target: Target, plan: Plan) -> None:
        started = time.monotonic()
        try:
            result = _run_debugger(self.command(target, plan), DEBUGGER_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise InjectionFailed(
                f"sys.remote_exec did not finish within {DEBUGGER_TIMEOUT_S:.0f} s"
            ) from exc
        except OSError as exc:
            raise InjectionFailed(
                f"the process's interpreter could not be run: {exc.strerror or exc}"
            ) from exc
        finally:
            self.seconds = time.monotonic() - started
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            if "not permitted" in last.lower() or "PermissionError" in last:
                raise InjectionFailed(permissions.explain_failure(last))
            raise InjectionFailed(f"sys.remote_exec failed: {last}")


def _x_options(argv: list[str]) -> list[str]:
    """The values of the interpreter's -X options in a command line."""
    out = []
    for i, arg in enumerate(argv[1:], start=1):
        if not arg.startswith("-") or arg == "-" or arg in ("-c", "-m"):
            break
        if arg == "-X" and i + 1 < len(argv):
            out.append(argv[i + 1].split("=", 1)[0])
        elif arg.startswith("-X") and len(arg) > 2:
            out.append(arg[2:].split("=", 1)[0])
    return out


class ListenerInjector:
    """The client of ``probe.agent.listener``: switches the dormant agent on, later off."""

    name = "listener"

    def __init__(self) -> None:
        self.connections: dict[int, socket.socket] = {}
        self.seconds = 0.0

    @staticmethod
    def socket_path(target: Target) -> Path | None:
        for directory in listener_mod.socket_dirs(target.environ or {}, target.uid):
            path = Path(directory) / f"{target.pid}.sock"
            try:
                if path.is_socket():
                    return path
            except OSError:
                continue
        return None

    def unavailable(self, target: Target) -> str | None:
        if self.socket_path(target) is None:
            return "the job does not listen (it was not started with PROBE_LISTEN=1)"
        return None

    def inject(self, target: Target, plan: Plan) -> None:
        path = self.socket_path(target)
        if path is None:
            raise InjectionFailed("the job stopped listening")
        started = time.monotonic()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        keep = False
        try:
            sock.settimeout(LISTENER_TIMEOUT_S)
            try:
                sock.connect(str(path))
            except OSError as exc:
                raise InjectionFailed(
                    f"cannot reach the job's listener at {path}: {exc.strerror or exc}"
                ) from exc
            peer_pid, _, _ = listener_mod.peer_credentials(sock)
            if peer_pid != target.pid:
                raise InjectionFailed(
                    f"the socket {path} is served by process {peer_pid}, not {target.pid}"
                )
            request = {"probe": 1, "cmd": "attach", "config": plan.config}
            sock.sendall(json.dumps(request).encode() + b"\n")
            try:
                reply = json.loads(listener_mod.read_line(sock))
            except (OSError, ValueError) as exc:
                raise InjectionFailed(
                    f"the job's listener did not answer within {LISTENER_TIMEOUT_S:.0f} s"
                ) from exc
            if not isinstance(reply, dict) or not reply.get("ok"):
                reason = reply.get("reason") if isinstance(reply, dict) else None
                raise InjectionRefused(str(reason or "the job's listener refused"))
            keep = True
            self.connections[target.pid] = sock
        finally:
            self.seconds = time.monotonic() - started
            if not keep:
                sock.close()

    def detach_all(self, timeout: float = 3.0) -> None:
        """Ask every agent switched on to detach, and wait (a little) for each to confirm."""
        for sock in self.connections.values():
            try:
                sock.sendall(b'{"cmd": "detach"}\n')
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for sock in self.connections.values():
            try:
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                listener_mod.read_line(sock, limit=1 << 16)
            except (OSError, ValueError):
                pass
            sock.close()
        self.connections.clear()


def default_injectors() -> list[Injector]:
    return [ListenerInjector(), RemoteExecInjector(), GdbInjector()]


@dataclass
class Injection:
    """How injecting one process went, as far as probe attach can tell by itself."""

    pid: int
    method: str | None
    queued: bool  # the injector did its part; the status file tells whether the agent runs
    reason: str | None  # why there is no agent (None when queued)
    seconds: float  # how long the injector took (for gdb: how long the process was held)
    tried: dict[str, str]  # method -> why it was not used or failed


def inject(target: Target, plan: Plan, injectors: list[Injector]) -> Injection:
    """Try each injector in turn until one queues the agent; collect why the others did not."""
    tried: dict[str, str] = {}
    for injector in injectors:
        why = injector.unavailable(target)
        if why is not None:
            tried[injector.name] = why
            continue
        try:
            injector.inject(target, plan)
        except InjectionRefused as exc:
            tried[injector.name] = str(exc)
            return Injection(target.pid, None, False, str(exc), 0.0, tried)
        except InjectionFailed as exc:
            tried[injector.name] = str(exc)
            continue
        return Injection(
            target.pid, injector.name, True, None, float(getattr(injector, "seconds", 0.0)), tried
        )
    return Injection(target.pid, None, False, best_reason(tried), 0.0, tried)


def best_reason(tried: dict[str, str]) -> str:
    """The one reason to show: the debugger's (gdb, then remote_exec), as the listener's absence
    is the rule rather than a problem."""
    for name in ("remote_exec", "gdb"):
        reason = tried.get(name)
        if reason and not reason.startswith("sys.remote_exec needs Python 3.14"):
            return reason
    return next(iter(tried.values()), "no way to load the agent")


__all__ = [
    "GdbInjector",
    "Injection",
    "InjectionFailed",
    "InjectionRefused",
    "Injector",
    "ListenerInjector",
    "Plan",
    "RemoteExecInjector",
    "best_reason",
    "default_injectors",
    "gdb_corrupts_calls",
    "inject",
    "raise_for_gdb_output",
]
