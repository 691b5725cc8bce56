"""The two sides of a comparison: which sessions each holds, and whether they can be compared.

A side is a session directory (one run) or a directory of sessions (several runs of one
command, as ``probe doctor --repeat N --dest DIR`` writes them: ``DIR/run-1`` ... ``DIR/run-N``).
Only meta.json is read here; the analysis comes later. Everything that makes the input unfit
raises ``CompareError`` (exit status 2) with a sentence that says what to give instead.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import CompareError, SessionError
from probe.session.meta import META_NAME, read_meta

_PYTHON = re.compile(r"^(python|pypy)[0-9.]*$")
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class SessionRef:
    path: Path
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def argv(self) -> list[str]:
        return [str(a) for a in self.meta.get("argv") or []]

    @property
    def command(self) -> str:
        return " ".join(shlex.quote(a) for a in self.argv)


@dataclass
class Side:
    label: str  # "A" or "B"
    path: Path
    sessions: list[SessionRef]
    warnings: list[str] = field(default_factory=list)

    @property
    def program(self) -> str:
        return program(self.sessions[0].argv)

    @property
    def commands(self) -> list[str]:
        """The distinct command lines of the side's runs, in run order."""
        return list(dict.fromkeys(s.command for s in self.sessions))


def program(argv: list[str]) -> str:
    """What a command runs, without its arguments: the executable's name (every Python is
    ``python``), and for an interpreter or a launcher the module (``-m``) or the script it runs.

    ``python train.py --workers 4`` and ``/venv/bin/python3.11 ./train.py`` run the same
    program; ``python eval.py`` another one.
    """
    if not argv:
        return ""
    exe = os.path.basename(argv[0])
    if _PYTHON.match(exe):
        exe = "python"
    rest = argv[1:]
    for i, arg in enumerate(rest):
        if arg == "-m" and i + 1 < len(rest):
            return f"{exe} -m {rest[i + 1]}"
        if arg.endswith(".py") and not arg.startswith("-"):
            return f"{exe} {os.path.basename(arg)}"
    if "-c" in rest:
        return f"{exe} -c"
    return exe


def _natural(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(name)]


def load_side(path: Path, label: str) -> Side:
    """The sessions of one side; ``CompareError`` when there are none or one cannot be read."""
    if not path.exists():
        raise CompareError(f"{label}: {path} does not exist")
    if not path.is_dir():
        raise CompareError(f"{label}: {path} is a file, not a session or a directory of sessions")
    if (path / META_NAME).is_file():
        candidates = [path]
    else:
        candidates = sorted(
            (p for p in path.iterdir() if p.is_dir() and (p / META_NAME).is_file()),
            key=lambda p: _natural(p.name),
        )
    if not candidates:
        raise CompareError(
            f"{label}: {path} holds no probe session",
            hint="Give a session directory (DEST/NAME, as probe doctor prints it) or a directory "
            "of sessions (probe doctor --repeat N --dest DIR -- CMD).",
        )
    sessions = []
    for candidate in candidates:
        try:
            sessions.append(SessionRef(candidate, read_meta(candidate)))
        except SessionError as exc:
            raise CompareError(f"{label}: {exc.message}", hint=exc.hint) from exc
    side = Side(label, path, sessions)
    programs = sorted({program(s.argv) for s in sessions})
    if len(programs) > 1:
        raise CompareError(
            f"{label}: {path} holds runs of different programs ({', '.join(programs)})",
            hint="A side is several runs of one command; put each command's runs in its own "
            "directory.",
        )
    if len(side.commands) > 1:
        side.warnings.append(
            f"{label}'s runs do not all have the same arguments: {'; '.join(side.commands)}"
        )
    for s in sessions:
        status = s.meta.get("status")
        exit_info = s.meta.get("exit") or {}
        code = exit_info.get("status") if isinstance(exit_info, dict) else None
        if status not in ("finished", None) or code not in (0, None):
            what = f"exit status {code}" if code not in (0, None) else f"status {status}"
            side.warnings.append(f"{label}: {s.path} did not finish cleanly ({what})")
    return side


def check_sides(a: Side, b: Side, *, any_program: bool = False) -> list[str]:
    """Refuse sides that run different programs (unless ``any_program``: the commands were
    chosen as they are, and only that the programs differ is said); the warnings to show when
    they only differ in their arguments."""
    a_paths = {s.path.resolve() for s in a.sessions}
    b_paths = {s.path.resolve() for s in b.sessions}
    if a_paths & b_paths:
        raise CompareError(
            "A and B share sessions: " + ", ".join(sorted(str(p) for p in a_paths & b_paths)[:3]),
            hint="Compare runs before a change with runs after it.",
        )
    warnings: list[str] = []
    if a.program != b.program:
        if not any_program:
            raise CompareError(
                f"A and B ran different programs: A {a.program!r}, B {b.program!r}",
                hint="Compare runs of one program (the change in its arguments, code or "
                "environment); pass --any-program to compare them anyway.",
            )
        warnings.append(f"A and B ran different programs: A {a.program!r}, B {b.program!r}")
    elif a.commands != b.commands and not any_program:
        warnings.append(
            f"A and B ran {a.program!r} with different arguments: A {'; '.join(a.commands)} - "
            f"B {'; '.join(b.commands)}"
        )
    return warnings
