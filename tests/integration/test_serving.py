"""probe doctor --on-port with probe load: a real server, a real load, on 127.0.0.1 only.

The server is tests/integration/programs/http_server.py (standard library, no torch): each test
takes a few seconds. The FastAPI scenarios run in test_scenarios.py.
"""

from __future__ import annotations

import json
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

from probe.session.reader import Session
from tests.conftest import PROGRAMS, PYTHON, end_process, probe_env, run_probe
from tests.waiting import recorded, wait_until

SERVER = [PYTHON, str(PROGRAMS / "http_server.py")]
LOAD = f"{shlex.quote(PYTHON)} -m probe load"


def doctor(tmp_path: Path, on_port: str, *server_args: str, extra: tuple[str, ...] = ()):
    return run_probe(
        [
            "doctor",
            "--no-open",
            "--dest",
            str(tmp_path),
            "--name",
            "s",
            *extra,
            "--on-port",
            on_port,
            "--",
            *SERVER,
            *server_args,
        ],
        timeout=120,
    )


def test_the_load_runs_against_the_server_which_probe_then_stops(tmp_path: Path) -> None:
    out = tmp_path / "verdict.json"
    result = doctor(
        tmp_path,
        f"{LOAD} http://127.0.0.1:$PORT/predict -n 300 -c 4",
        extra=("--json", str(out)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the server's own output passes through probe, and it was stopped by SIGINT
    assert "server starting" in result.stdout
    assert "server stopped" in result.stdout
    assert "loading the model (not really)" in result.stderr
    assert "probe load: 300 requests in" in result.stdout
    assert "latency: p50" in result.stdout
    assert "status: 200 x 300" in result.stdout
    session = Session(tmp_path / "s")
    serve = session.meta["serve"]
    port = serve["port"]
    assert f"the server listens on port {port}; running: " in result.stderr
    assert serve["address"] == "127.0.0.1"
    assert serve["listen_pids"] == [session.meta["root_pid"]]
    assert serve["stopped_with"] == ["SIGINT"]
    assert serve["command_exit"] == {"code": 0, "signal": None, "status": 0}
    assert serve["command"].endswith("/predict -n 300 -c 4")
    assert session.meta["status"] == "finished"
    requests = session.table("request")
    assert len(requests) == 300
    assert set(requests["status"].tolist()) == {200}
    start, end = session.meta["start"]["monotonic_ns"], session.meta["end"]["monotonic_ns"]
    assert start < int(requests["t"].min()) and int(requests["t"].max()) < end
    # the server's start-up: until it listened, before the load's first request
    assert 0 < serve["startup_s"] < (int(requests["t"].min()) - start) / 1e9
    # the analysed window is the load's, and the run counts requests
    verdict = json.loads(out.read_text())
    assert verdict["run"]["requests"] == 300
    assert 290 <= verdict["requests"]["count"] <= 300  # those sent from the first answer on
    assert verdict["requests"]["latency_ms"]["p50"] > 0
    first_answer = (int((requests["t"] + requests["dur"]).min()) - start) / 1e9
    assert abs(verdict["window"][0] - first_answer) < 0.01
    assert (tmp_path / "s.html").is_file()


def test_the_load_command_s_failure_is_probe_s_exit_status(tmp_path: Path) -> None:
    result = doctor(tmp_path, "echo port=$PORT; exit 3", extra=("--collect-only",))
    assert result.returncode == 3, result.stderr[-2000:]
    session = Session(tmp_path / "s")
    assert f"port={session.meta['serve']['port']}" in result.stdout
    assert session.meta["serve"]["command_exit"]["status"] == 3
    assert session.meta["serve"]["stopped_with"] == ["SIGINT"]


def test_repeat_runs_the_server_under_its_load_each_time(tmp_path: Path) -> None:
    """doctor --repeat with --on-port: each numbered run is a server session under the load."""
    result = run_probe(
        [
            "doctor",
            "--collect-only",
            "--dest",
            str(tmp_path),
            "--repeat",
            "2",
            "--on-port",
            "echo port=$PORT",
            "--",
            *SERVER,
        ],
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-1", "run-2"]
    ports = [Session(tmp_path / f"run-{k}").meta["serve"]["port"] for k in (1, 2)]
    assert [f"port={port}" in result.stdout for port in ports] == [True, True]
    assert all(
        Session(tmp_path / f"run-{k}").meta["serve"]["stopped_with"] == ["SIGINT"] for k in (1, 2)
    )


def test_a_server_that_never_listens_is_an_error_with_its_output(tmp_path: Path) -> None:
    started = time.monotonic()
    result = doctor(
        tmp_path,
        "echo never",
        "--never-listen",
        extra=("--collect-only", "--startup-timeout", "2"),
    )
    assert result.returncode == 1
    assert time.monotonic() - started < 60
    assert "probe: error: the server did not listen on a TCP port within 2 s" in result.stderr
    assert "  | loading the model (not really)" in result.stderr
    assert "  | server starting" in result.stderr
    assert "never" not in result.stdout
    assert Session(tmp_path / "s").meta["status"] == "failed-to-start"


def test_a_server_that_exits_before_listening_is_an_error(tmp_path: Path) -> None:
    result = doctor(tmp_path, "echo never", "--exit-before-listen", "4", extra=("--collect-only",))
    assert result.returncode == 1
    assert "the server ended (exit status 4) before it listened on a TCP port" in result.stderr
    assert "  | cannot load the model" in result.stderr


def test_port_chooses_among_several(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        wanted = s.getsockname()[1]
    result = doctor(
        tmp_path,
        "echo loading $PORT",
        "--extra-port",
        "--port",
        str(wanted),
        extra=("--collect-only", "--port", str(wanted)),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"loading {wanted}" in result.stdout
    serve = Session(tmp_path / "s").meta["serve"]
    assert serve["port"] == wanted
    assert len(serve["other_ports"]) == 1


def test_a_server_that_ignores_sigint_is_terminated(tmp_path: Path) -> None:
    result = doctor(tmp_path, "true", "--ignore-sigint", extra=("--collect-only",))
    assert result.returncode == 0, result.stderr[-2000:]
    session = Session(tmp_path / "s")
    assert session.meta["serve"]["stopped_with"] == ["SIGINT", "SIGTERM"]
    assert session.meta["exit"]["signal"] == signal.SIGTERM


def test_a_server_that_fails_while_stopping_gives_its_status(tmp_path: Path) -> None:
    result = doctor(tmp_path, "true", "--exit-on-sigint", "5", extra=("--collect-only",))
    assert result.returncode == 5


def test_a_server_ending_first_stops_the_load(tmp_path: Path) -> None:
    result = doctor(
        tmp_path,
        f"{LOAD} http://127.0.0.1:$PORT/ -d 60 -c 2",
        "--die-after",
        "2",
        extra=("--collect-only",),
    )
    assert result.returncode == 7, result.stderr[-2000:]
    assert "the server ended (exit status 7) before the load command did" in result.stderr
    serve = Session(tmp_path / "s").meta["serve"]
    assert serve["server_ended_first"] is True
    assert serve["stopped_with"] == []


def test_ctrl_c_stops_the_load_then_the_server_and_writes_the_report(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "probe",
            "doctor",
            "--no-open",
            "--dest",
            str(tmp_path),
            "--name",
            "s",
            "--on-port",
            f"{LOAD} http://127.0.0.1:$PORT/ -d 60 -c 2",
            "--",
            *SERVER,
        ],
        env=probe_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stderr is not None
        line = ""
        while "running:" not in line:
            line = proc.stderr.readline()
            assert line, "probe ended before it ran the load command"
        # the load runs: its requests reach the session (flushed every 250 ms)
        wait_until(lambda: recorded(tmp_path / "s", "request") > 10, "probe load's requests")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        end_process(proc)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted)" in out  # probe load's summary: it was stopped, and said so
    assert "server stopped" in out
    assert "probe: interrupted: the load and the server were stopped" in err
    session = Session(tmp_path / "s")
    assert session.meta["status"] == "interrupted"
    assert session.meta["serve"]["stopped_with"] == ["SIGINT"]
    assert len(session.table("request")) > 10
    assert (tmp_path / "s.html").is_file()
    assert (tmp_path / "s" / "diagnosis.json").is_file()


def test_probe_load_alone(tmp_path: Path) -> None:
    # Outside probe doctor, without --session: it prints, records nothing, needs no session.
    result = run_probe(["load", "http://10.9.8.7:1/", "-n", "1"], cwd=tmp_path)
    assert result.returncode == 1
    assert "not a loopback address" in result.stderr
    assert "--allow-host 10.9.8.7" in result.stderr
