"""The attach's in-process side, in this very process: the agent starts, then removes everything it
installed when its lease ends; the dormant listener answers only its own user's requests."""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.agent import attached, listener, runtime
from probe.session.meta import new_meta, write_meta
from probe.session.reader import Session
from tests.waiting import wait_until


@pytest.fixture
def session_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "s"
    directory.mkdir()
    write_meta(
        directory, new_meta(kind="attach", name="s", argv=[], cwd=".", settings={}, machine={})
    )
    return directory


def config(directory: Path, **extra: object) -> dict[str, object]:
    return {
        "dir": str(directory),
        "session": directory.name,
        "stack_hz": 50,
        "flush_ms": 50,
        "stop_file": str(directory / "attach.stop"),
        **extra,
    }


def status(directory: Path) -> dict[str, object]:
    path = Path(attached.status_path(str(directory), os.getpid()))
    return json.loads(path.read_text()) if path.exists() else {}


def wait_for_state(directory: Path, state: str) -> dict[str, object]:
    def reached() -> dict[str, object]:
        doc = status(directory)
        return doc if doc.get("state") == state else {}

    return wait_until(reached, lambda: f"a {state!r} status; last: {status(directory)}")


def installed() -> dict[str, object]:
    return {
        "gc_callbacks": list(gc.callbacks),
        "meta_path": list(sys.meta_path),
        "threading_atexits": list(getattr(threading, "_threading_atexits", [])),
        "frames": len(sys._current_frames()),
        "probe_agent": sys.modules["probe"]._agent,  # type: ignore[attr-defined]
    }


@pytest.fixture
def no_attach_left() -> Iterator[None]:
    yield
    agent = runtime.attached()
    if agent is not None:  # a failed test: do not leave the agent running in pytest
        agent.stop(detach=True)
        runtime._attached = None


@pytest.mark.usefixtures("no_attach_left")
def test_the_agent_removes_everything_once_the_stop_file_appears(session_dir: Path) -> None:
    before = installed()
    assert attached.start(config(session_dir), method="test") is None
    doc = wait_for_state(session_dir, "attached")
    assert doc["method"] == "test" and doc["session"] == "s"
    agent = runtime.attached()
    assert agent is not None and agent.origin == "attach"
    during = installed()
    assert len(during["gc_callbacks"]) == len(before["gc_callbacks"]) + 1  # type: ignore[arg-type]
    assert during["probe_agent"] is agent
    # Stopped once it has sampled a stack, however long its thread took to get a CPU.
    wait_until(lambda: agent.stacks.samples > 0, "the agent's first stack sample")
    (session_dir / "attach.stop").touch()
    doc = wait_for_state(session_dir, "detached")
    assert doc["reason"] == "probe attach ended" and doc["errors"] == 0
    assert agent._thread_done.wait(2.0)
    assert runtime.attached() is None
    assert installed() == before
    assert agent.buffer._file is not None and agent.buffer._file._fd == -1  # closed
    session = Session(session_dir)
    assert [f.header["origin"] for f in session.files] == ["attach"]
    assert len(session.table("stack")) > 0


@pytest.mark.usefixtures("no_attach_left")
def test_a_second_attach_is_refused_while_one_records(session_dir: Path) -> None:
    assert attached.start(config(session_dir), method="test") is None
    try:
        reason = attached.start(config(session_dir), method="test")
        assert reason is not None and "already recorded by another probe attach" in reason
    finally:
        (session_dir / "attach.stop").touch()
        wait_for_state(session_dir, "detached")


def test_a_late_start_after_the_attach_ended_does_nothing(session_dir: Path) -> None:
    (session_dir / "attach.stop").touch()
    assert attached.start(config(session_dir), method="gdb") == "probe attach ended"
    assert runtime.attached() is None
    assert not list(session_dir.glob("*.rec"))


def test_the_lease_ends_with_the_stop_file_the_deadline_or_probe_gone(tmp_path: Path) -> None:
    me = attached.process_start_ticks(os.getpid())
    lease = attached.Lease(config(tmp_path, watch_pid=os.getpid(), watch_start=me))
    assert lease.over() is None
    (tmp_path / "attach.stop").touch()
    assert lease.over() == "probe attach ended"
    past = attached.Lease({"deadline_ns": time.monotonic_ns() - 1})
    assert past.over() == "the attach deadline passed"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert attached.Lease({"watch_pid": gone.pid, "watch_start": 1}).over() == (
        "the probe attach process is gone"
    )
    reused = attached.Lease({"watch_pid": os.getpid(), "watch_start": (me or 0) + 1})
    assert reused.over() == "the probe attach process is gone"


# -- the dormant listener -------------------------------------------------------------------------


def test_socket_dirs_prefer_the_runtime_dir() -> None:
    assert listener.socket_dirs({"XDG_RUNTIME_DIR": "/run/user/7"}, 7) == [
        "/run/user/7/probe",
        "/tmp/probe-7",
    ]
    assert listener.socket_dirs({"XDG_RUNTIME_DIR": "relative"}, 7) == ["/tmp/probe-7"]


def test_a_socket_dir_others_can_enter_or_own_is_refused(tmp_path: Path) -> None:
    private = tmp_path / "p"
    private.mkdir(mode=0o700)
    assert listener.private_dir_problem(str(private), os.getuid()) is None
    private.chmod(0o755)
    assert "open to other users" in str(listener.private_dir_problem(str(private), os.getuid()))
    assert "belongs to another user" in str(listener.private_dir_problem(str(private), 12345))
    (tmp_path / "f").write_text("")
    assert "not a directory" in str(listener.private_dir_problem(str(tmp_path / "f"), 0))


def request(path: str, doc: dict[str, object] | bytes) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(path)
        sock.sendall(doc if isinstance(doc, bytes) else json.dumps(doc).encode() + b"\n")
        reply: dict[str, object] = json.loads(listener.read_line(sock))
        return reply


@pytest.fixture
def listening(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    path = listener.listen()
    assert path == str(run / "probe" / f"{os.getpid()}.sock")
    assert listener.listen() == path  # once per process
    yield path
    listener.stop()
    assert not os.path.exists(path)


@pytest.mark.usefixtures("no_attach_left")
def test_the_listener_switches_the_agent_on_and_off(listening: str, session_dir: Path) -> None:
    assert oct(os.stat(os.path.dirname(listening)).st_mode & 0o777) == "0o700"
    hello = request(listening, {"cmd": "ping"})
    assert hello["ok"] and hello["pid"] == os.getpid()
    assert request(listening, b"hello\n") == {"ok": False, "reason": "not a probe request"}
    assert not request(listening, {"cmd": "attach", "config": {"dir": "/nonexistent"}})["ok"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
        control.settimeout(20)
        control.connect(listening)
        peer_pid, peer_uid, _ = listener.peer_credentials(control)
        assert (peer_pid, peer_uid) == (os.getpid(), os.getuid())
        control.sendall(json.dumps({"cmd": "attach", "config": config(session_dir)}).encode())
        control.sendall(b"\n")
        assert json.loads(listener.read_line(control))["ok"]
        assert runtime.attached() is not None
        wait_for_state(session_dir, "attached")
        # Another caller is turned away while this attach records.
        busy = request(listening, {"cmd": "ping"})
        assert busy == {"ok": False, "reason": "another probe attach is recording this process"}
        control.sendall(b'{"cmd": "detach"}\n')
        assert json.loads(listener.read_line(control)) == {"ok": True, "state": "detached"}
    assert wait_for_state(session_dir, "detached")["method"] == "listener"
    assert runtime.attached() is None
    assert request(listening, {"cmd": "ping"})["ok"]  # listening again


@pytest.mark.usefixtures("no_attach_left")
def test_a_closed_control_connection_ends_the_attach(listening: str, session_dir: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
        control.settimeout(20)
        control.connect(listening)
        control.sendall(json.dumps({"cmd": "attach", "config": config(session_dir)}).encode())
        control.sendall(b"\n")
        assert json.loads(listener.read_line(control))["ok"]
    doc = wait_for_state(session_dir, "detached")
    assert doc["reason"] == "the probe attach connection closed"


def test_probe_listen_env_and_the_cli_never_listening(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    env = dict(os.environ, PROBE_LISTEN="1", XDG_RUNTIME_DIR=str(run))
    code = "import probe.agent.listener as l; print(l.current_path())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip().endswith(".sock")
    cli = (
        "import probe.agent.listener as l, probe.cli\n"
        "probe.cli.main(['--version'])\n"
        "print(l.current_path())\n"
    )
    out = subprocess.run([sys.executable, "-c", cli], env=env, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "None"
    assert list((run / "probe").iterdir()) == []
    off = dict(env, PROBE_LISTEN="0")
    out = subprocess.run([sys.executable, "-c", code], env=off, capture_output=True, text=True)
    assert out.stdout.strip() == "None"


def test_listen_warns_and_returns_none_when_it_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import probe

    shared = tmp_path / "probe"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setattr(listener, "socket_dirs", lambda environ, uid: [str(shared)])
    with pytest.warns(RuntimeWarning, match="open to other users"):
        assert probe.listen() is None
    assert listener.current_path() is None
