"""How a run ended: its exit status or signal, the uncaught exception that ended it and the
program's own frame it was raised in."""

from __future__ import annotations

import os
from typing import Any

from probe.analysis.stacks import is_library_file
from probe.analysis.timeline import Timeline


def ending(tl: Timeline) -> str:
    """How the run ended, in a few words ("exit status 0", "FileNotFoundError: ...")."""
    meta = tl.session.meta
    exit_info = meta.get("exit") or {}
    exc = exception_of(tl)
    if exc is not None:
        where = f" in {exc['where']}" if exc.get("where") else ""
        text = f"{exc['type']}: {exc['message']}" if exc.get("message") else exc["type"]
        return f"{text}{where}"[:300]
    if exit_info.get("signal") is not None:
        return f"ended by signal {exit_info['signal']}"
    if exit_info.get("code") is not None:
        return f"exit status {exit_info['code']}"
    return str(meta.get("status") or "unknown")


def exception_of(tl: Timeline) -> dict[str, Any] | None:
    """The uncaught exception that ended the run's main process (the root's first), with the
    program's own innermost frame: ``type``, ``message``, ``pid``, ``where``, ``file``, ``line``,
    ``func``. None when no process ended with one."""
    root = tl.session.meta.get("root_pid")
    infos = sorted(
        (p for p in tl.processes.values() if p.exception_type),
        key=lambda p: (p.pid != root, p.role not in ("main", "rank"), p.start_s or 0.0),
    )
    if not infos:
        return None
    info = infos[0]
    out: dict[str, Any] = {
        "type": info.exception_type,
        "message": info.exception_message or "",
        "pid": info.pid,
    }
    frame = program_frame(info.exception_frames)
    if frame is not None:
        file, line, func = frame
        out.update(
            where=f"{func} ({os.path.basename(file)}:{line})", file=file, line=line, func=func
        )
    return out


def program_frame(frames: list[tuple[str, int, str]]) -> tuple[str, int, str] | None:
    """The innermost frame of the program's own code (not a library's, not ``<string>``); the
    innermost frame of all when the program has none."""
    for file, line, func in reversed(frames):
        if not file.startswith("<") and not is_library_file(file):
            return file, line, func
    return frames[-1] if frames else None


def ended_abnormally(tl: Timeline) -> bool:
    exit_info = tl.session.meta.get("exit") or {}
    code = exit_info.get("code")
    if exit_info.get("signal") is not None or (code is not None and code != 0):
        return True
    return exception_of(tl) is not None
