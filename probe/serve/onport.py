"""``probe doctor --on-port CMD``: run CMD against the server once it listens, then stop it.

The server (probe doctor's command) starts as usual but not as the terminal's foreground job, so
that Ctrl-C reaches probe alone, which stops things in order: first the load command, then the
server. The sequence:

1. Wait until a process of the server's tree listens on a TCP port (``probe.serve.ports``); with
   ``port`` given, until that port is listened on. The server ending first, or no port within
   ``startup_timeout`` seconds, is a ``ServerNotListening`` error carrying its last output lines.
2. Run CMD through ``/bin/sh -c`` in its own process group, ``$PORT`` and ``${PORT}`` replaced
   by the port and ``PORT`` set in its environment (plus ``PROBE_LOAD_SESSION``, where
   ``probe load`` records its requests).
3. When CMD ends, stop the server: SIGINT to its process group, then SIGTERM after ``grace_s``
   seconds, then SIGKILL after as long again. Should the server end first, CMD is stopped the
   same way.

Ctrl-C (or SIGTERM, SIGHUP) sent to probe at any point stops CMD, then the server, the same way;
a second one skips the grace periods. SIGQUIT, SIGUSR1 and SIGUSR2 go to the server as usual.
The server's standard output and error pass through probe (so that the last lines can be shown
when it never listens); both commands get /dev/null as standard input.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from probe.errors import ServerNotListening
from probe.launcher import INTERRUPTING_SIGNALS, Launcher, RunResult
from probe.serve.ports import Listener, listeners

DEFAULT_STARTUP_TIMEOUT_S = 120.0
GRACE_S = 5.0  # between SIGINT and SIGTERM, and between SIGTERM and SIGKILL
POLL_S = 0.05
RESCAN_S = 1.0  # during the load: which of the tree's processes hold the socket
SESSION_ENV = "PROBE_LOAD_SESSION"  # where `probe load` records its requests
OUTPUT_TAIL_LINES = 20
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
_PORT_REF = re.compile(r"\$(?:PORT\b|\{PORT\})")


def substitute_port(command: str, port: int) -> str:
    """``$PORT`` and ``${PORT}`` in CMD replaced by the port (the shell would expand them too,
    but not inside single quotes)."""
    return _PORT_REF.sub(str(port), command)


def choose_listener(found: Sequence[Listener], port: int | None) -> Listener | None:
    """The port to load: the one asked for, else the lowest the server listens on."""
    if port is not None:
        return next((listener for listener in found if listener.port == port), None)
    return found[0] if found else None


@dataclass
class OnPortResult:
    server: RunResult
    command: RunResult | None  # None when CMD never started
    listener: Listener | None
    others: list[Listener]  # ports the server listened on besides the chosen one
    stopped_with: list[str] = field(default_factory=list)  # signals probe sent the server
    interrupted_by: int | None = None  # the signal the user sent probe, if any
    server_ended_first: bool = False
    startup_s: float | None = None
    failure: ServerNotListening | None = None  # no port: the error to report once recorded

    @property
    def interrupted(self) -> bool:
        return self.interrupted_by is not None

    @property
    def status(self) -> int:
        """probe's exit status: CMD's if it failed, else the server's (stopped by probe: 0)."""
        server = self.server.status
        if self.server_ended_first:
            return server if server != 0 or self.command is None else self.command.status
        if self.command is None:  # interrupted before the load began
            return 128 + (self.interrupted_by or signal.SIGINT)
        if self.command.status != 0:
            return self.command.status
        if not self.stopped_with:
            return server
        sent = {int(getattr(signal, name)) for name in self.stopped_with}
        if self.server.signal in sent or self.server.exit_code in {0} | {128 + s for s in sent}:
            return 0
        return server

    def to_meta(self, command: str) -> dict[str, Any]:
        """What meta.json keeps of it (``serve``)."""
        cmd = self.command
        return {
            "command": command,
            "port": self.listener.port if self.listener else None,
            "address": self.listener.address if self.listener else None,
            "listen_pids": list(self.listener.pids) if self.listener else [],
            "other_ports": [other.port for other in self.others],
            "startup_s": round(self.startup_s, 3) if self.startup_s is not None else None,
            "command_exit": (
                {"code": cmd.exit_code, "signal": cmd.signal, "status": cmd.status}
                if cmd is not None
                else None
            ),
            "stopped_with": list(self.stopped_with),
            "server_ended_first": self.server_ended_first,
        }


class OutputTail:
    """Copies a child's output pipe to probe's own stream and keeps its last lines."""

    def __init__(self, source: Any, target_fd: int, lines: int = OUTPUT_TAIL_LINES) -> None:
        self._source = source
        self._target_fd = target_fd
        self._tail: collections.deque[bytes] = collections.deque(maxlen=lines)
        self._partial = b""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._copy, name="probe-output", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        fd = self._source.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            try:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(self._target_fd, view) :]
            except OSError:
                pass  # probe's own stream is gone: keep draining so the server never blocks
            with self._lock:
                lines = (self._partial + chunk).split(b"\n")
                self._partial = lines.pop()[-4096:]
                self._tail.extend(line[-500:] for line in lines)

    def lines(self) -> list[str]:
        """The last lines written (the unfinished one included)."""
        with self._lock:
            out = list(self._tail) + ([self._partial] if self._partial else [])
        maxlen = self._tail.maxlen or len(out)
        return [line.decode("utf-8", "replace").rstrip("\r") for line in out[-maxlen:]]

    def close(self, timeout: float = 1.0) -> None:
        """Wait for the pipe's end (every writer gone) for at most ``timeout`` seconds."""
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._source.close()


class OnPort:
    """Drives one ``--on-port`` run: wait for the port, run CMD, stop the server."""

    def __init__(
        self,
        server: Launcher,
        command: str,
        environ: Mapping[str, str],
        *,
        session_dir: str,
        port: int | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_S,
        grace_s: float = GRACE_S,
        say: Callable[[str], None] = lambda message: None,
        outputs: Sequence[OutputTail] = (),
    ) -> None:
        self.server = server
        self.command_text = command
        self.environ = dict(environ)
        self.session_dir = session_dir
        self.port = port
        self.startup_timeout = startup_timeout
        self.grace_s = grace_s
        self.say = say
        self.outputs = list(outputs)
        self._signals: list[int] = []
        self._old: dict[int, Any] = {}
        self._server_ended: RunResult | None = None
        self._holders: set[int] = set()  # the tree's processes seen holding the loaded socket

    # -- signals -------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum in INTERRUPTING_SIGNALS:
            self._signals.append(signum)
        else:
            self.server.send(signum)

    def _install(self) -> None:
        for sig in (*INTERRUPTING_SIGNALS, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            self._old[sig] = signal.signal(sig, self._on_signal)

    def _restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()

    # -- the run -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def handling_signals(self) -> Iterator[None]:
        """probe's own handlers for the whole run: enter before the server starts, so that no
        Ctrl-C can fall between its start and ``run``."""
        self._install()
        try:
            yield
        finally:
            self._restore()

    def run(self) -> OnPortResult:
        """Everything after the server started (inside ``handling_signals``); returns once both
        have ended."""
        return self._run()

    def _run(self) -> OnPortResult:
        started = time.monotonic()
        listener, found, failure = self._wait_for_port(started)
        startup_s = time.monotonic() - started
        if listener is None:
            server, sent = self._stop(self.server)
            return OnPortResult(
                server=server,
                command=None,
                listener=None,
                others=found,
                stopped_with=sent,
                interrupted_by=self._interrupted_by,
                failure=failure,
            )
        others = [f for f in found if f.port != listener.port]
        also = f" (also {_ports(others)}; choose with --port)" if others else ""
        command = substitute_port(self.command_text, listener.port)
        self.say(f"probe: the server listens on port {listener.port}{also}; running: {command}")
        self._holders = set(listener.pids)
        result = self._run_command(command, listener.port)
        # Processes that took the socket over later (uvicorn --workers, gunicorn's workers).
        result.listener = Listener(listener.port, listener.address, tuple(sorted(self._holders)))
        result.others = others
        result.startup_s = startup_s
        return result

    @property
    def _interrupted_by(self) -> int | None:
        return self._signals[0] if self._signals else None

    def _wait_for_port(
        self, started: float
    ) -> tuple[Listener | None, list[Listener], ServerNotListening | None]:
        """The listener to load, or None with why (an error, or the user's Ctrl-C)."""
        found: list[Listener] = []
        while True:
            ended = self.server.poll()
            if ended is not None:
                self._server_ended = ended
                message = f"the server ended ({_describe(ended)}) before it listened on a TCP port"
                return None, found, self._not_listening(message)
            if self._signals:
                return None, found, None
            found = listeners(self.server.pid)
            chosen = choose_listener(found, self.port)
            if chosen is not None:
                return chosen, found, None
            if time.monotonic() - started > self.startup_timeout:
                what = f"on port {self.port}" if self.port is not None else "on a TCP port"
                seen = f" (it listens on {_ports(found)})" if found else ""
                message = (
                    f"the server did not listen {what} within {self.startup_timeout:g} s{seen}"
                )
                return None, found, self._not_listening(message)
            time.sleep(POLL_S)

    def _run_command(self, command: str, port: int) -> OnPortResult:
        env = {**self.environ, "PORT": str(port), SESSION_ENV: self.session_dir}
        load = Launcher(
            ["/bin/sh", "-c", command],
            env,
            stdin=subprocess.DEVNULL,
            use_terminal=False,
            forward_signals=False,
        )
        load.start()
        next_scan = time.monotonic() + RESCAN_S
        while True:
            if time.monotonic() >= next_scan:
                next_scan = time.monotonic() + RESCAN_S
                for found in listeners(self.server.pid):
                    if found.port == port:
                        self._holders.update(found.pids)
            done = load.poll()
            if done is not None:
                server, sent = self._stop(self.server)
                return OnPortResult(server, done, None, [], sent, self._interrupted_by)
            if self._signals:
                done, _ = self._stop(load)
                server, sent = self._stop(self.server)
                return OnPortResult(server, done, None, [], sent, self._interrupted_by)
            server_done = self.server.poll()
            if server_done is not None:
                self._server_ended = server_done
                self.say(
                    f"probe: the server ended ({_describe(server_done)}) before the load "
                    "command did; stopping the load command"
                )
                done, _ = self._stop(load)
                return OnPortResult(
                    server_done, done, None, [], [], self._interrupted_by, server_ended_first=True
                )
            time.sleep(POLL_S)

    def _stop(self, launcher: Launcher) -> tuple[RunResult, list[str]]:
        """SIGINT, then SIGTERM, then SIGKILL, ``grace_s`` apart (no wait after a new Ctrl-C)."""
        sent: list[str] = []
        if launcher is self.server and self._server_ended is not None:
            return self._server_ended, sent
        for sig in STOP_SIGNALS:
            ended = launcher.poll()
            if ended is not None:
                return ended, sent
            launcher.send(sig)
            sent.append(signal.Signals(sig).name)
            signals_before = len(self._signals)
            deadline = time.monotonic() + (self.grace_s if sig != signal.SIGKILL else 60.0)
            while time.monotonic() < deadline:
                ended = launcher.poll()
                if ended is not None:
                    return ended, sent
                if len(self._signals) > signals_before and sig != signal.SIGKILL:
                    break  # asked again: on to the next signal now
                time.sleep(POLL_S)
        return launcher.wait(), sent

    def _not_listening(self, message: str) -> ServerNotListening:
        tail = [line for output in self.outputs for line in output.lines()]
        hint = (
            "The server's last output lines:\n" + "\n".join(f"  | {line}" for line in tail)
            if tail
            else "The server wrote nothing."
        )
        return ServerNotListening(message, hint=hint)


def _ports(found: Sequence[Listener]) -> str:
    return ", ".join(str(f.port) for f in found)


def _describe(result: RunResult) -> str:
    if result.signal is not None:
        try:
            return f"killed by {signal.Signals(result.signal).name}"
        except ValueError:
            return f"killed by signal {result.signal}"
    return f"exit status {result.exit_code}"


__all__ = [
    "DEFAULT_STARTUP_TIMEOUT_S",
    "SESSION_ENV",
    "OnPort",
    "OnPortResult",
    "OutputTail",
    "ServerNotListening",
    "choose_listener",
    "substitute_port",
]
