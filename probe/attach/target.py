"""The process ``probe attach`` was pointed at, read from /proc: who owns it, what it runs, which
Python (if any), and its descendants. Nothing here touches the process itself.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from probe.errors import AttachError

PROC = Path("/proc")
_LIBPYTHON = re.compile(rb"/libpython(\d+)\.(\d+)[a-z]*\.so")
_PYTHON_EXE = re.compile(r"^python(\d+)\.(\d+)[a-z]*$")
_PYTHON_NAME = re.compile(r"^python\d*$")


@dataclass
class Target:
    pid: int
    ppid: int
    uid: int
    comm: str
    argv: list[str]
    start_ticks: int
    state: str
    tracer_pid: int = 0
    exe: str | None = None  # the executable, as /proc/<pid>/exe resolves it
    cwd: str | None = None
    environ: dict[str, str] | None = None  # the environment it started with, when readable
    python: tuple[int, int] | None = None  # CPython's version; None when it is not Python
    notes: list[str] = field(default_factory=list)

    @property
    def is_python(self) -> bool:
        return self.python is not None

    @property
    def python_text(self) -> str:
        return f"{self.python[0]}.{self.python[1]}" if self.python else "not Python"

    def describe(self) -> str:
        command = " ".join(" ".join(self.argv).split()) if self.argv else self.comm
        if len(command) > 80:
            command = command[:77] + "..."
        return f"process {self.pid} ({command})"


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def parse_stat(blob: bytes) -> tuple[str, str, int, int]:
    """(comm, state, ppid, start ticks) from /proc/<pid>/stat."""
    open_ = blob.find(b"(")
    close = blob.rfind(b")")
    comm = blob[open_ + 1 : close].decode(errors="replace")
    fields = blob[close + 2 :].split()
    return comm, fields[0].decode(), int(fields[1]), int(fields[19])


def parse_status(blob: bytes) -> dict[str, str]:
    out = {}
    for line in blob.decode(errors="replace").splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def python_version_from(maps: bytes | None, exe: str | None) -> tuple[int, int] | None:
    """CPython's version from the libraries a process maps or its executable's name."""
    if maps:
        found = _LIBPYTHON.search(maps)
        if found:
            return int(found.group(1)), int(found.group(2))
    if exe:
        name = os.path.basename(exe.removesuffix(" (deleted)"))
        found_exe = _PYTHON_EXE.match(name)
        if found_exe:
            return int(found_exe.group(1)), int(found_exe.group(2))
    return None


def looks_like_python(exe: str | None) -> bool:
    """An executable named python/python3 whose version its name does not tell."""
    return bool(exe) and bool(_PYTHON_NAME.match(os.path.basename(str(exe))))


def ask_version(pid: int, proc: Path = PROC) -> tuple[int, int] | None:
    """Run the process's own executable (only ever one named python*) to learn its version."""
    try:
        out = subprocess.run(
            [
                str(proc / str(pid) / "exe"),
                "-I",
                "-S",
                "-c",
                "import sys; print(*sys.version_info[:2])",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        major, minor = out.stdout.split()
        return int(major), int(minor)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def inspect(pid: int, *, proc: Path = PROC, my_uid: int | None = None) -> Target:
    """Read what /proc says about ``pid``, or raise AttachError saying why it cannot be attached."""
    my_uid = os.geteuid() if my_uid is None else my_uid
    base = proc / str(pid)
    stat = _read(base / "stat")
    status_blob = _read(base / "status")
    if pid <= 0 or stat is None or status_blob is None:
        raise AttachError(
            f"no process with id {pid}",
            hint="Check the id with `ps aux | grep python` (or `pgrep -af python`).",
        )
    status = parse_status(status_blob)
    if status.get("Tgid") and status["Tgid"] != str(pid):
        raise AttachError(
            f"{pid} is a thread of process {status['Tgid']}, not a process",
            hint=f"Attach to the process: probe attach {status['Tgid']}",
        )
    comm, state, ppid, start = parse_stat(stat)
    if state in ("Z", "X"):
        raise AttachError(f"process {pid} ({comm}) has already exited")
    if pid == os.getpid():
        raise AttachError("probe cannot attach to itself")
    uid = int(status.get("Uid", "0").split()[0])
    if my_uid not in (uid, 0):
        raise AttachError(
            f"process {pid} ({comm}) belongs to another user (uid {uid}); probe attach only "
            "attaches to your own processes",
            hint=f"Run probe attach as that user (sudo -u '#{uid}' probe attach {pid}).",
        )
    raw_argv = _read(base / "cmdline") or b""
    argv = [a.decode(errors="replace") for a in raw_argv.split(b"\0") if a]
    target = Target(
        pid=pid,
        ppid=ppid,
        uid=uid,
        comm=comm,
        argv=argv,
        start_ticks=start,
        state=state,
        tracer_pid=int(status.get("TracerPid", "0") or 0),
    )
    try:
        target.exe = os.readlink(base / "exe")
    except OSError:
        target.notes.append("its executable cannot be read")
    try:
        target.cwd = os.readlink(base / "cwd")
    except OSError:
        pass
    environ = _read(base / "environ")
    if environ is not None:
        target.environ = dict(
            item.decode(errors="replace").partition("=")[::2]
            for item in environ.split(b"\0")
            if b"=" in item
        )
    target.python = python_version_from(_read(base / "maps"), target.exe)
    if target.python is None and looks_like_python(target.exe):
        target.python = ask_version(pid, proc)
    if target.python is None and pid in ancestors(os.getpid(), proc):
        # A shell or an init process that probe runs under: its tree is probe and everything
        # beside it, not one job. (A Python job may run probe attach on itself.)
        raise AttachError(
            f"process {pid} ({comm}) is an ancestor of probe itself, not a job",
            hint="Attach to the job's own process (pgrep -af python).",
        )
    return target


def ancestors(pid: int, proc: Path = PROC) -> list[int]:
    """The parent, grandparent... of ``pid``, up to the top of its pid namespace."""
    out: list[int] = []
    while pid > 1 and len(out) < 4096:
        stat = _read(proc / str(pid) / "stat")
        if stat is None:
            break
        try:
            pid = parse_stat(stat)[2]
        except (IndexError, ValueError):
            break
        if pid <= 0:
            break
        out.append(pid)
    return out


def alive(pid: int, start_ticks: int, proc: Path = PROC) -> bool:
    """The process still runs (and is the same process, not a reused pid)."""
    stat = _read(proc / str(pid) / "stat")
    if stat is None:
        return False
    try:
        _, state, _, start = parse_stat(stat)
    except (IndexError, ValueError):
        return False
    return start == start_ticks and state not in ("Z", "X")


def descendants(pid: int, proc: Path = PROC) -> list[int]:
    """Every live process below ``pid``, parents before children."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir(proc)
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        stat = _read(proc / entry / "stat")
        if stat is None:
            continue
        try:
            _, state, ppid, _ = parse_stat(stat)
        except (IndexError, ValueError):
            continue
        if state not in ("Z", "X"):
            children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    queue = sorted(children.get(pid, []))
    while queue:
        child = queue.pop(0)
        out.append(child)
        queue.extend(sorted(children.get(child, [])))
    return out


def same_namespaces(pid: int, proc: Path = PROC) -> str | None:
    """None when ``pid`` shares probe's pid and mount namespaces, else which one differs."""
    for ns in ("pid", "mnt"):
        try:
            mine = os.readlink(proc / "self" / "ns" / ns)
            theirs = os.readlink(proc / str(pid) / "ns" / ns)
        except OSError:
            continue
        if mine != theirs:
            return ns
    return None


__all__ = [
    "Target",
    "alive",
    "ancestors",
    "ask_version",
    "descendants",
    "inspect",
    "looks_like_python",
    "parse_stat",
    "python_version_from",
    "same_namespaces",
]
