"""probe.serve: listening ports from /proc, the --on-port rules, and probe load's parts."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from probe.errors import LoadError
from probe.launcher import RunResult
from probe.serve import load as load_mod
from probe.serve.load import (
    LoadResult,
    LoadSpec,
    SessionSink,
    check_target,
    default_headers,
    parse_header,
    read_body,
    redact_command,
    run_load,
    summary_lines,
)
from probe.serve.onport import (
    OnPortResult,
    OutputTail,
    choose_listener,
    substitute_port,
)
from probe.serve.ports import Listener, listeners, parse_address, parse_listening
from probe.session import format as fmt
from probe.session.meta import new_meta, write_meta
from probe.session.reader import Session
from tests.conftest import run_probe

# -- ports ------------------------------------------------------------------------------------

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 333 1
   3: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 0 1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue
   0: 00000000000000000000000000000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 444 1
   1: 00000000000000000000000001000000:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 555 1
"""  # noqa: E501


def test_proc_net_tcp_addresses_are_decoded() -> None:
    assert parse_address("0100007F:1F90") == ("127.0.0.1", 8080)
    assert parse_address("00000000000000000000000001000000:0050") == ("::1", 80)
    assert parse_address("0000000000000000FFFF00000100007F:1F90") == ("127.0.0.1", 8080)
    with pytest.raises(ValueError, match="not a /proc/net/tcp address"):
        parse_address("0100:1F90")


def test_only_listening_sockets_with_an_inode_are_kept() -> None:
    assert parse_listening(TCP) == {111: ("127.0.0.1", 8080), 222: ("0.0.0.0", 80)}
    assert parse_listening(TCP6) == {444: ("::", 8081), 555: ("::1", 8082)}


def test_the_tree_s_listening_sockets_are_found(tmp_path: Path) -> None:
    # A fake /proc: the root pid 10 holds socket 111, its child 11 holds 555 and a file.
    proc = tmp_path / "proc"
    (proc / "10" / "net").mkdir(parents=True)
    (proc / "10" / "net" / "tcp").write_text(TCP)
    (proc / "10" / "net" / "tcp6").write_text(TCP6)
    for pid, links in {10: ["socket:[111]", "/dev/null"], 11: ["socket:[555]", "pipe:[7]"]}.items():
        fd = proc / str(pid) / "fd"
        fd.mkdir(parents=True)
        for n, target in enumerate(links):
            (fd / str(n)).symlink_to(target)
    from probe.serve import ports

    original = ports.tree_pids
    ports.tree_pids = lambda root: [10, 11]  # type: ignore[assignment]
    try:
        found = listeners(10, proc=str(proc))
    finally:
        ports.tree_pids = original  # type: ignore[assignment]
    assert found == [Listener(8080, "127.0.0.1", (10,)), Listener(8082, "::1", (11,))]


def test_a_real_listening_socket_of_this_process_is_found() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        found = {f.port: f for f in listeners(os.getpid())}
        assert found[port].address == "127.0.0.1"
        assert found[port].pids == (os.getpid(),)
    assert port not in {f.port for f in listeners(os.getpid())}


def test_port_choice_and_substitution() -> None:
    found = [Listener(8000, "127.0.0.1", (1,)), Listener(9090, "0.0.0.0", (1,))]
    assert choose_listener(found, None) == found[0]
    assert choose_listener(found, 9090) == found[1]
    assert choose_listener(found, 7000) is None
    assert choose_listener([], None) is None
    assert (
        substitute_port("probe load http://127.0.0.1:$PORT/x '${PORT}' $PORTS $PORT_X", 8000)
        == "probe load http://127.0.0.1:8000/x '8000' $PORTS $PORT_X"
    )


# -- exit status ------------------------------------------------------------------------------


def _run(code: int | None = 0, sig: int | None = None) -> RunResult:
    return RunResult(1, code, sig, 0, 1, [])


@pytest.mark.parametrize(
    ("command", "server", "stopped_with", "ended_first", "interrupted_by", "expected"),
    [
        # the load succeeded, the server stopped by probe's SIGINT: success, however it ended
        (_run(0), _run(None, signal.SIGINT), ["SIGINT"], False, None, 0),
        (_run(0), _run(0), ["SIGINT"], False, None, 0),
        (_run(0), _run(130), ["SIGINT"], False, None, 0),
        (_run(0), _run(None, signal.SIGKILL), ["SIGINT", "SIGTERM", "SIGKILL"], False, None, 0),
        # ...unless it failed in its own way while stopping
        (_run(0), _run(1), ["SIGINT"], False, None, 1),
        # the load command failed: its status
        (_run(3), _run(None, signal.SIGINT), ["SIGINT"], False, None, 3),
        (_run(130), _run(None, signal.SIGINT), ["SIGINT"], False, signal.SIGINT, 130),
        # the server ended first: its status, or the load's if the server's was 0
        (_run(None, signal.SIGINT), _run(2), [], True, None, 2),
        (_run(1), _run(0), [], True, None, 1),
        # interrupted before the load began
        (None, _run(None, signal.SIGINT), ["SIGINT"], False, signal.SIGINT, 130),
        (None, _run(None, signal.SIGTERM), ["SIGINT", "SIGTERM"], False, signal.SIGTERM, 143),
    ],
)
def test_exit_status_rules(
    command: RunResult | None,
    server: RunResult,
    stopped_with: list[str],
    ended_first: bool,
    interrupted_by: int | None,
    expected: int,
) -> None:
    result = OnPortResult(
        server=server,
        command=command,
        listener=None,
        others=[],
        stopped_with=stopped_with,
        interrupted_by=interrupted_by,
        server_ended_first=ended_first,
    )
    assert result.status == expected


def test_output_tail_passes_output_through_and_keeps_the_last_lines(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    target = tmp_path / "out"
    with open(target, "wb") as sink, os.fdopen(read_end, "rb") as source:
        tail = OutputTail(source, sink.fileno(), lines=3)
        os.write(write_end, b"one\ntwo\nthree\nfour\nfive")
        os.close(write_end)
        tail.close(timeout=5)
    assert target.read_bytes() == b"one\ntwo\nthree\nfour\nfive"
    assert tail.lines() == ["three", "four", "five"]


# -- probe load: its parts --------------------------------------------------------------------


def test_load_spec_bounds_are_refused() -> None:
    url = "http://127.0.0.1:1/"
    for spec in (
        LoadSpec(url, concurrency=0),
        LoadSpec(url, concurrency=load_mod.MAX_CONCURRENCY + 1),
        LoadSpec(url, duration_s=0),
        LoadSpec(url, duration_s=load_mod.MAX_DURATION_S + 1),
        LoadSpec(url, requests=0),
        LoadSpec(url, rate=0),
        LoadSpec(url, timeout_s=0),
    ):
        with pytest.raises(LoadError):
            spec.check()
    LoadSpec(url, requests=5).check()
    assert LoadSpec(url).time_limit_s == load_mod.DEFAULT_DURATION_S
    assert LoadSpec(url, requests=5).time_limit_s == load_mod.MAX_DURATION_S
    assert LoadSpec(url, requests=5, duration_s=2).time_limit_s == 2


def test_only_loopback_or_named_hosts_are_loaded() -> None:
    for ok in ("http://127.0.0.1:8000/x", "http://localhost/", "https://[::1]:8443/"):
        check_target(ok)
    for refused in ("http://10.1.2.3/", "http://192.168.0.10:8000/predict"):
        with pytest.raises(LoadError) as err:
            check_target(refused)
        assert "--allow-host" in (err.value.hint or "")
    check_target("http://10.1.2.3/", allowed_hosts=("10.1.2.3",))
    for bad in ("ftp://127.0.0.1/", "127.0.0.1:8000", "http:///x"):
        with pytest.raises(LoadError):
            check_target(bad)


def test_headers_bodies_and_redaction(tmp_path: Path) -> None:
    assert parse_header("Content-Type: text/plain") == ("Content-Type", "text/plain")
    assert parse_header("X-Empty:") == ("X-Empty", "")
    with pytest.raises(LoadError):
        parse_header("no colon")
    body = tmp_path / "req.json"
    body.write_bytes(b'{"text": "hi"}')
    assert read_body(f"@{body}") == b'{"text": "hi"}'
    assert read_body("plain") == b"plain"
    with pytest.raises(LoadError):
        read_body(f"@{tmp_path / 'missing'}")
    assert default_headers(b'{"a": 1}', ()) == {"Content-Type": "application/json"}
    assert default_headers(b"a=1", ()) == {}
    assert default_headers(b"{}", (("content-type", "text/x"),)) == {"content-type": "text/x"}
    command = (
        "probe load http://u:pw@127.0.0.1:$PORT/x?token=abc -H 'Authorization: Bearer s3cret' "
        "--header 'X-Trace: 1'"
    )
    redacted = redact_command(command)
    assert "pw" not in redacted
    assert "abc" not in redacted
    assert "s3cret" not in redacted
    assert "X-Trace: 1" in redacted


def test_summary_lines() -> None:
    result = LoadResult(sent=4, wall_s=2.0, cpu_s=1.9)
    for value in (0.010, 0.020, 0.030):
        result.latencies.append(value)
    result.statuses[200] = 3
    result.errors["timeout"] = 1
    lines = summary_lines(LoadSpec("http://127.0.0.1/", concurrency=2), result)
    assert lines[0] == "4 requests in 2.0 s: 2.0 requests/s (2 connections)"
    assert lines[1] == "latency: p50 20.0 ms  p90 30.0 ms  p99 30.0 ms  max 30.0 ms"
    assert lines[2] == "status: 200 x 3"
    assert lines[3] == "errors: timeout x 1"
    assert lines[4].startswith("client CPU: 1.90 s, 95 % of one core - the client itself")


# -- probe load: a real run against a local server ---------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 500 if self.path == "/fail" else 200
        body = b"hello"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length) + self.headers.get("X-Echo", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _session(tmp_path: Path) -> Path:
    directory = tmp_path / "s"
    directory.mkdir()
    meta = new_meta(
        kind="doctor", name="s", argv=["serve"], cwd="/", settings={}, machine={}, environ={}
    )
    write_meta(directory, meta)
    return directory


def test_a_counted_load_records_every_request(server: str, tmp_path: Path) -> None:
    directory = _session(tmp_path)
    spec = LoadSpec(f"{server}/echo", method="POST", concurrency=3, requests=40, body=b"abc")
    sink = SessionSink(directory, spec)
    result = run_load(spec, sink, handle_signals=False)
    assert result.sent == 40
    assert len(result.latencies) == 40
    assert result.statuses == {200: 40}
    assert not result.errors
    session = Session(directory)
    requests = session.table("request")
    assert len(requests) == 40
    assert set(requests["status"].tolist()) == {200}
    assert set(requests["bytes"].tolist()) == {3}
    assert set(requests["worker"].tolist()) <= {0, 1, 2}
    assert (requests["dur"] > 0).all()
    assert len(session.table("client")) >= 1
    assert set(session.table("request")["pid"].tolist()) == {os.getpid()}
    (start,) = session.events_of("load")
    assert start["concurrency"] == 3
    assert start["requests"] == 40
    (end,) = session.events_of("load_end")
    assert end["responses"] == 40
    assert [f.header.get("writer") for f in session.files] == ["load"]


def test_errors_are_counted_by_kind(server: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens once the socket is closed
    result = run_load(
        LoadSpec(f"http://127.0.0.1:{closed}/", requests=5, concurrency=1), handle_signals=False
    )
    assert result.errors == {"connect": 5}
    assert not result.latencies
    failing = run_load(LoadSpec(f"{server}/fail", requests=6, concurrency=2), handle_signals=False)
    assert failing.statuses == {500: 6}


def test_a_rate_limited_load_keeps_to_its_schedule(server: str) -> None:
    result = run_load(
        LoadSpec(server, rate=50, duration_s=1.0, concurrency=4), handle_signals=False
    )
    # 50 a second for one second: the schedule, not the server's speed, sets the count.
    assert 45 <= result.sent <= 51
    assert result.wall_s < 2.0


def test_a_timed_load_stops_at_its_duration(server: str) -> None:
    result = run_load(LoadSpec(server, duration_s=0.5, concurrency=2), handle_signals=False)
    assert result.sent > 0
    assert 0.5 <= result.wall_s < 1.5
    q = result.quantiles()
    assert q["p50"] <= q["p90"] <= q["p99"] <= q["max"]
    assert np.isclose(result.rate, result.completed / result.wall_s)


def test_the_command_records_into_the_session_it_is_given(server: str, tmp_path: Path) -> None:
    # probe load as a person runs it beside a session (--session), with a header and a body file
    directory = _session(tmp_path)
    body = tmp_path / "req.json"
    body.write_bytes(b'{"text": "hi"}')
    result = run_probe(
        [
            "load",
            f"{server}/embed",
            "--requests",
            "12",
            "--concurrency",
            "2",
            "--body",
            f"@{body}",
            "--header",
            "X-Echo: !",
            "--session",
            str(directory),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "probe load: 12 requests in " in result.stdout
    assert "probe load: status: 200 x 12" in result.stdout
    assert f"probe load: 12 requests recorded into {directory}" in result.stderr
    session = Session(directory)
    requests = session.table("request")
    assert len(requests) == 12
    # the body file was POSTed and the header sent: the server echoed both
    assert set(requests["bytes"].tolist()) == {len(b'{"text": "hi"}!')}
    (start,) = session.events_of("load")
    assert start["method"] == "POST"
    assert start["body_bytes"] == len(b'{"text": "hi"}')
    assert "X-Echo" in start["headers"]
    assert len(session.table("client")) >= 1


def test_recording_refuses_a_directory_that_is_not_a_session(tmp_path: Path) -> None:
    with pytest.raises(LoadError):
        SessionSink(tmp_path, LoadSpec("http://127.0.0.1/"))


def test_the_request_kind_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "session-format.md").read_text()
    assert f"# The session format (version {fmt.FORMAT_MAJOR}.{fmt.FORMAT_MINOR})" in doc
    for kind in (fmt.REQUEST, fmt.CLIENT):
        assert f"| {kind.code} | {kind.name} |" in doc
    for error in fmt.REQUEST_ERRORS:
        assert error in doc
