"""meta.json: what a session is about (command, machine, times, exit status, settings)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any

from probe import __version__
from probe.errors import NotASession, SessionVersionError
from probe.files import write_atomic
from probe.session import format as fmt
from probe.session.launch import clock_offset_for_tests_ns, launch_env, torchrun_args
from probe.session.redact import allowed_env, redact_argv

SCHEMA = "probe.session"
META_NAME = "meta.json"


def new_meta(
    *,
    kind: str,
    name: str,
    argv: list[str],
    cwd: str,
    settings: dict[str, Any],
    machine: dict[str, Any],
    environ: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The meta document at the start of a run (``end`` and ``exit`` are filled in later)."""
    env = environ if environ is not None else dict(os.environ)
    offset_ns = clock_offset_for_tests_ns(env)
    wall_ns = time.time_ns() + offset_ns
    mono_ns = time.monotonic_ns()
    meta: dict[str, Any] = {
        "schema": SCHEMA,
        "format": [fmt.FORMAT_MAJOR, fmt.FORMAT_MINOR],
        "probe_version": __version__,
        "kind": kind,
        "name": name,
        "argv": redact_argv(argv),
        "cwd": cwd,
        "host": {
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "boot_id": _boot_id(),
        },
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "torch": None,
        "start": {
            "time": _iso(wall_ns),
            "unix_ns": wall_ns,
            "monotonic_ns": mono_ns,
        },
        "end": None,
        "status": "running",
        "exit": None,
        "settings": settings,
        "machine": machine,
        "env": allowed_env(env),
        "launch": {"env": launch_env(env), "torchrun": torchrun_args(redact_argv(argv))},
        "root_pid": None,
        "warnings": [],
    }
    if offset_ns:
        meta["test_clock_offset_s"] = offset_ns / 1e9
    return meta


def finish_meta(
    meta: dict[str, Any], *, status: str, exit_code: int | None, signal: int | None
) -> None:
    """Record the end of the run in ``meta`` (not yet written)."""
    wall_ns = time.time_ns() + int(float(meta.get("test_clock_offset_s") or 0) * 1e9)
    meta["end"] = {
        "time": _iso(wall_ns),
        "unix_ns": wall_ns,
        "monotonic_ns": time.monotonic_ns(),
    }
    meta["status"] = status
    if signal is not None:
        shell_status: int | None = 128 + signal
    else:
        shell_status = exit_code
    meta["exit"] = {"code": exit_code, "signal": signal, "status": shell_status}


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    """Write meta.json atomically (a reader never sees half a file)."""
    write_atomic(directory / META_NAME, json.dumps(meta, indent=2, sort_keys=False) + "\n")


def read_meta(directory: Path) -> dict[str, Any]:
    path = directory / META_NAME
    if not path.is_file():
        raise NotASession(
            f"{directory} is not a probe session (no {META_NAME})",
            hint="A session is the directory `probe doctor` prints at the end of a run.",
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise NotASession(f"{path} cannot be read: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise NotASession(f"{path} is not a probe session's meta.json")
    version = meta.get("format")
    if (
        not isinstance(version, list)
        or len(version) != 2
        or not all(isinstance(v, int) for v in version)
    ):
        raise NotASession(f"{path} has no valid format version")
    if version[0] > fmt.FORMAT_MAJOR:
        writer = meta.get("probe_version", "a newer probe")
        raise SessionVersionError(
            f"this session was written by probe {writer} in format {version[0]}.{version[1]}; "
            f"this probe ({__version__}) reads format {fmt.FORMAT_MAJOR}.x only",
            hint="Upgrade probe (pip install -U probe-doctor) to read it.",
        )
    return meta


def _iso(wall_ns: int) -> str:
    return (
        _dt.datetime.fromtimestamp(wall_ns / 1e9, tz=_dt.timezone.utc)
        .astimezone()
        .isoformat(timespec="seconds")
    )


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
