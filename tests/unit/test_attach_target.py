"""Which process probe attach was pointed at (from a hand-built /proc), whether it may be debugged,
and which way of injecting is chosen. Nothing is attached here."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from probe.attach import permissions
from probe.attach.inject import InjectionFailed, InjectionRefused, Plan, best_reason, inject
from probe.attach.target import (
    Target,
    alive,
    ancestors,
    descendants,
    inspect,
    looks_like_python,
    python_version_from,
)
from probe.errors import AttachError


def fake_process(
    proc: Path,
    pid: int,
    *,
    ppid: int = 1,
    comm: str = "python3",
    state: str = "S",
    uid: int = 1000,
    tgid: int | None = None,
    argv: tuple[str, ...] = ("python3", "train.py"),
    exe: str | None = "/usr/bin/python3.11",
    maps: str = "",
    start: int = 100,
) -> None:
    base = proc / str(pid)
    base.mkdir(parents=True)
    rest = " ".join(["0"] * 17)
    (base / "stat").write_text(f"{pid} ({comm}) {state} {ppid} {rest} {start} 0 0\n")
    (base / "status").write_text(
        f"Name:\t{comm}\nTgid:\t{tgid or pid}\nPid:\t{pid}\nTracerPid:\t0\n"
        f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
    )
    (base / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (base / "environ").write_bytes(b"HOME=/home/u\0XDG_RUNTIME_DIR=/run/user/1000\0")
    (base / "maps").write_text(maps)
    if exe is not None:
        (base / "exe").symlink_to(exe)
    (base / "cwd").symlink_to("/work")


def test_inspect_reads_owner_command_environment_and_python(tmp_path: Path) -> None:
    maps = "7f00-7f01 r-xp 0 08:01 1 /usr/lib/libpython3.12.so.1.0\n"
    fake_process(tmp_path, 42, argv=("python3", "train.py", "--lr", "3"), maps=maps)
    target = inspect(42, proc=tmp_path, my_uid=1000)
    assert target.argv == ["python3", "train.py", "--lr", "3"]
    assert target.python == (3, 12)  # libpython beats the executable's name
    assert target.cwd == "/work" and target.exe == "/usr/bin/python3.11"
    assert target.environ == {"HOME": "/home/u", "XDG_RUNTIME_DIR": "/run/user/1000"}
    assert target.describe() == "process 42 (python3 train.py --lr 3)"


def test_a_command_line_with_newlines_is_described_on_one_line(tmp_path: Path) -> None:
    fake_process(tmp_path, 42, argv=("python3", "-c", "import x\nrun()\n"))
    assert inspect(42, proc=tmp_path, my_uid=1000).describe() == (
        "process 42 (python3 -c import x run())"
    )


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({}, "no process with id 42"),
        ({"state": "Z"}, "has already exited"),
        ({"tgid": 40}, "42 is a thread of process 40, not a process"),
        ({"uid": 0}, "belongs to another user (uid 0)"),
    ],
)
def test_what_cannot_be_attached_says_why(
    tmp_path: Path, setup: dict[str, object], message: str
) -> None:
    if setup:
        fake_process(tmp_path, 42, **setup)  # type: ignore[arg-type]
    with pytest.raises(AttachError, match=re.escape(message)) as info:
        inspect(42, proc=tmp_path, my_uid=1000)
    if "another user" in message:
        assert info.value.hint is not None and "sudo -u" in info.value.hint


def test_root_may_attach_to_anyone(tmp_path: Path) -> None:
    fake_process(tmp_path, 42, uid=1000)
    assert inspect(42, proc=tmp_path, my_uid=0).uid == 1000


def test_probe_refuses_to_attach_to_itself() -> None:
    with pytest.raises(AttachError, match="itself"):
        inspect(os.getpid())


def test_non_python_processes_have_no_version(tmp_path: Path) -> None:
    fake_process(tmp_path, 42, comm="sleep", argv=("sleep", "60"), exe="/usr/bin/sleep")
    target = inspect(42, proc=tmp_path, my_uid=1000)
    assert target.python is None and not target.is_python


@pytest.mark.parametrize(
    ("maps", "exe", "expected"),
    [
        (b"", "/usr/bin/python3.11", (3, 11)),
        (b"", "/opt/conda/bin/python3.13t", (3, 13)),
        (b"", "/usr/bin/python3.10 (deleted)", (3, 10)),
        (b"/usr/lib/x86_64-linux-gnu/libpython3.9.so.1.0\n", "/usr/bin/uwsgi", (3, 9)),
        (b"", "/usr/bin/bash", None),
        (b"", None, None),
    ],
)
def test_python_version_from_maps_or_executable(
    maps: bytes, exe: str | None, expected: tuple[int, int] | None
) -> None:
    assert python_version_from(maps, exe) == expected


def test_an_executable_called_python_is_asked_its_version() -> None:
    assert looks_like_python("/venv/bin/python") and looks_like_python("/usr/bin/python3")
    assert not looks_like_python("/usr/bin/pythonista") and not looks_like_python(None)


def test_descendants_parents_first_and_alive_checks_the_start_time(tmp_path: Path) -> None:
    fake_process(tmp_path, 10)
    fake_process(tmp_path, 11, ppid=10)
    fake_process(tmp_path, 12, ppid=11)
    fake_process(tmp_path, 13, ppid=10, state="Z")
    fake_process(tmp_path, 20, ppid=1)
    assert descendants(10, tmp_path) == [11, 12]
    assert alive(11, 100, tmp_path)
    assert not alive(11, 999, tmp_path)  # the pid was reused by another process
    assert not alive(13, 100, tmp_path) and not alive(99, 100, tmp_path)


# -- may it be debugged ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "cap", "expected"),
    [
        (None, False, None),
        (0, False, None),
        (1, True, None),
        (1, False, "ptrace_scope is 1"),
        (2, True, None),
        (2, False, "only root"),
        (3, True, "until the next reboot"),
    ],
)
def test_ptrace_scope_and_capabilities(scope: int | None, cap: bool, expected: str | None) -> None:
    reason = permissions.ptrace_obstacle(0, scope=scope, cap=cap)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason
        assert "PROBE_LISTEN=1" in reason  # what would allow it without a debugger


def test_an_already_traced_process_is_named() -> None:
    reason = permissions.ptrace_obstacle(555, scope=0, cap=True)
    assert reason is not None and "traced by process 555" in reason


def test_yama_scope_and_capabilities_are_read(tmp_path: Path) -> None:
    (tmp_path / "scope").write_text("2\n")
    assert permissions.yama_scope(tmp_path / "scope") == 2
    assert permissions.yama_scope(tmp_path / "missing") is None
    (tmp_path / "status").write_text("Name:\tx\nCapEff:\t0000000000080000\n")
    assert permissions.has_cap_sys_ptrace(tmp_path / "status")
    (tmp_path / "status").write_text("CapEff:\t0000000000000000\n")
    assert not permissions.has_cap_sys_ptrace(tmp_path / "status")


def test_a_refused_ptrace_in_a_container_names_the_capability(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(permissions, "yama_scope", lambda: None)
    monkeypatch.setattr(permissions, "in_container", lambda: True)
    monkeypatch.setattr(permissions, "has_cap_sys_ptrace", lambda: False)
    reason = permissions.explain_failure("ptrace: Operation not permitted.")
    assert "--cap-add=SYS_PTRACE" in reason and "SYS_PTRACE" in reason


# -- which way is chosen ---------------------------------------------------------------------------


class FakeInjector:
    def __init__(self, name: str, unavailable: str | None = None, fails: str | None = None):
        self.name = name
        self._unavailable = unavailable
        self._fails = fails
        self.seconds = 0.25
        self.tried = False

    def unavailable(self, target: Target) -> str | None:
        return self._unavailable

    def inject(self, target: Target, plan: Plan) -> None:
        self.tried = True
        if self._fails:
            raise InjectionFailed(self._fails)


def _target() -> Target:
    return Target(42, 1, 1000, "python3", ["python3"], 1, "S", python=(3, 11))


def test_the_first_way_that_works_is_used_and_the_others_say_why(tmp_path: Path) -> None:
    plan = Plan(tmp_path, {"dir": str(tmp_path)}, "/x", "0")
    listener = FakeInjector("listener", unavailable="the job does not listen")
    remote = FakeInjector("remote_exec", unavailable="sys.remote_exec needs Python 3.14; ...")
    gdb = FakeInjector("gdb")
    result = inject(_target(), plan, [listener, remote, gdb])
    assert result.queued and result.method == "gdb" and result.seconds == 0.25
    assert set(result.tried) == {"listener", "remote_exec"}
    assert not listener.tried and not remote.tried


def test_when_nothing_works_the_debuggers_reason_is_the_one_shown(tmp_path: Path) -> None:
    plan = Plan(tmp_path, {"dir": str(tmp_path)}, "/x", "0")
    result = inject(
        _target(),
        plan,
        [
            FakeInjector("listener", unavailable="the job does not listen"),
            FakeInjector("remote_exec", unavailable="sys.remote_exec needs Python 3.14; 3.11"),
            FakeInjector("gdb", fails="ptrace was refused (...)"),
        ],
    )
    assert not result.queued and result.method is None
    assert result.reason == "ptrace was refused (...)"
    assert best_reason({"listener": "the job does not listen"}) == "the job does not listen"


def test_a_job_that_answers_no_is_not_tried_with_a_debugger(tmp_path: Path) -> None:
    plan = Plan(tmp_path, {"dir": str(tmp_path)}, "/x", "0")

    class Refusing(FakeInjector):
        def inject(self, target: Target, plan: Plan) -> None:
            raise InjectionRefused("already recorded by probe doctor (session x)")

    gdb = FakeInjector("gdb")
    result = inject(_target(), plan, [Refusing("listener"), gdb])
    assert not result.queued and result.reason == "already recorded by probe doctor (session x)"
    assert not gdb.tried


def test_ancestors_walk_up_to_the_top(tmp_path: Path) -> None:
    fake_process(tmp_path, 10, ppid=1)
    fake_process(tmp_path, 11, ppid=10)
    fake_process(tmp_path, 12, ppid=11)
    assert ancestors(12, tmp_path) == [11, 10, 1]
    assert ancestors(99, tmp_path) == []
