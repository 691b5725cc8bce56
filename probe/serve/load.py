"""The load generator behind ``probe load``: an HTTP client on aiohttp (``probe-doctor[serve]``).

``concurrency`` connections each send a request, read the whole response, and send the next
(a closed loop), until ``duration_s`` has passed or ``requests`` have been sent, whichever comes
first; the run never lasts longer than ``MAX_DURATION_S`` nor sends more than ``MAX_REQUESTS``.
With ``rate``, requests are sent on a fixed schedule instead (``rate`` a second, an open loop)
by at most ``concurrency`` connections at once; a request sent after its scheduled time because
every connection was busy is counted as late, with how late, so a server that cannot keep up is
seen as such (rather than its latency being measured only from when the client got round to it).

Requests go to loopback addresses only, or to the hosts named in ``allowed_hosts``; redirects
are not followed (the 3xx is the answer) and no proxy from the environment is used.

Every request can be recorded into a session (``SessionSink``): ``request`` records in a file
of its own, ``load-<pid>.rec``, and the client's own CPU every ``FLUSH_S`` (``client``
records); see docs/session-format.md.
"""

from __future__ import annotations

import array
import asyncio
import collections
import ipaddress
import json
import math
import os
import re
import signal
import socket
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import LoadError
from probe.session import format as fmt
from probe.session.meta import META_NAME
from probe.session.redact import REDACTED, is_secret_name, redact_text
from probe.session.writer import RecordBuffer

MAX_CONCURRENCY = 1000
MAX_DURATION_S = 3600.0
MAX_REQUESTS = 10_000_000
MAX_RATE = 100_000.0
MAX_TIMEOUT_S = 600.0
DEFAULT_DURATION_S = 10.0
DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT_S = 10.0
FLUSH_S = 0.25
MAX_BODY_BYTES = 64 * 2**20
# A request whose connection was taken this long after its scheduled time (--rate) was late:
# every connection was busy when it was due.
LATE_S = 0.001
# The client runs on one thread: past this share of one core it adds queueing of its own, and
# the latencies it measures are partly its own.
BUSY_CLIENT_SHARE = 0.8
QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class LoadSpec:
    """What to send, how much and how fast."""

    url: str
    method: str = "GET"
    concurrency: int = DEFAULT_CONCURRENCY
    duration_s: float | None = None  # None with `requests` set: at most MAX_DURATION_S
    requests: int | None = None
    rate: float | None = None  # requests a second in all; None: a closed loop
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    allowed_hosts: tuple[str, ...] = ()

    @property
    def time_limit_s(self) -> float:
        if self.duration_s is not None:
            return self.duration_s
        return DEFAULT_DURATION_S if self.requests is None else MAX_DURATION_S

    def check(self) -> None:
        """Refuse what cannot run: bounds, the URL, a host that is neither loopback nor named."""
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise LoadError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
        if self.duration_s is not None and not 0 < self.duration_s <= MAX_DURATION_S:
            raise LoadError(f"--duration must be more than 0 and at most {MAX_DURATION_S:g} s")
        if self.requests is not None and not 1 <= self.requests <= MAX_REQUESTS:
            raise LoadError(f"--requests must be between 1 and {MAX_REQUESTS}")
        if self.rate is not None and not 0 < self.rate <= MAX_RATE:
            raise LoadError(f"--rate must be more than 0 and at most {MAX_RATE:g} a second")
        if not 0 < self.timeout_s <= MAX_TIMEOUT_S:
            raise LoadError(f"--timeout must be more than 0 and at most {MAX_TIMEOUT_S:g} s")
        check_target(self.url, self.allowed_hosts)

    def describe(self) -> dict[str, Any]:
        """The spec as the session keeps it: URL redacted, header values left out."""
        return {
            "url": redact_text(self.url),
            "method": self.method,
            "concurrency": self.concurrency,
            "duration_s": self.duration_s,
            "requests": self.requests,
            "rate": self.rate,
            "timeout_s": self.timeout_s,
            "headers": [name for name, _ in self.headers],
            "body_bytes": len(self.body) if self.body is not None else 0,
        }


def parse_header(text: str) -> tuple[str, str]:
    """``"K: V"`` -> ``("K", "V")``."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise LoadError(f"a header is NAME:VALUE, not {text!r}")
    return name.strip(), value.strip()


def read_body(text: str) -> bytes:
    """The request body: the text itself, or ``@FILE``'s bytes."""
    if not text.startswith("@"):
        return text.encode()
    path = Path(text[1:])
    try:
        if path.stat().st_size > MAX_BODY_BYTES:
            raise LoadError(f"the body file {path} is larger than {MAX_BODY_BYTES >> 20} MB")
        return path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read the body file {path}: {exc.strerror or exc}") from exc


def default_headers(body: bytes | None, headers: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """The headers sent: the user's, plus a JSON content type for a JSON body that has none."""
    out = dict(headers)
    if body is not None and not any(k.lower() == "content-type" for k in out):
        try:
            json.loads(body)
        except ValueError:
            pass
        else:
            out["Content-Type"] = "application/json"
    return out


def check_target(url: str, allowed_hosts: tuple[str, ...] = ()) -> None:
    """Refuse a URL that is not http(s), or whose host is neither loopback nor allowed."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadError(f"not an http:// or https:// URL: {redact_text(url)}")
    host = parts.hostname
    if host.lower() in {h.lower() for h in allowed_hosts}:
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or 80, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise LoadError(f"cannot resolve {host}: {exc}") from exc
    addresses = {str(info[4][0]).split("%")[0] for info in infos}
    if addresses and all(ipaddress.ip_address(a).is_loopback for a in addresses):
        return
    raise LoadError(
        f"{host} is not a loopback address; probe load only loads this machine unless told",
        hint=f"To load {host}, name it: --allow-host {host}",
    )


def redact_command(command: str) -> str:
    """A load command line as the session keeps it: URL secrets, secret header values."""
    out = redact_text(command)
    for flag in ("--header", "-H"):
        out = _redact_header_values(out, flag)
    return out


def _redact_header_values(text: str, flag: str) -> str:
    pattern = re.compile(
        rf"(?P<lead>{re.escape(flag)}[ =](?P<q>['\"]?))(?P<name>[^:'\"\s]+)\s*:(?P<value>[^'\"]*)"
    )

    def _sub(m: re.Match[str]) -> str:
        if is_secret_name(m.group("name")):
            return f"{m.group('lead')}{m.group('name')}: {REDACTED}"
        return m.group(0)

    return pattern.sub(_sub, text)


# -- recording --------------------------------------------------------------------------------


class SessionSink:
    """Records requests into a session directory, in a file of this process's own."""

    def __init__(self, session_dir: str | os.PathLike[str], spec: LoadSpec) -> None:
        directory = Path(session_dir)
        if not (directory / META_NAME).is_file():
            raise LoadError(f"{directory} is not a probe session (no {META_NAME})")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise LoadError(f"cannot write to the session {directory}: permission denied")
        self.directory = directory
        self.buffer = RecordBuffer(
            str(directory), f"load-{os.getpid()}", {"writer": "load", "pid": os.getpid()}
        )
        self.buffer.event({"type": "load", "t": time.monotonic_ns(), **spec.describe()})
        self.requests = 0

    def request(
        self, t: int, dur: int, status: int, error: int, nbytes: int, worker: int, late: int
    ) -> None:
        self.buffer.add(fmt.REQUEST, t, dur, status, error, nbytes, worker, late)
        self.requests += 1

    def flush(self) -> None:
        self.buffer.add(fmt.CLIENT, time.monotonic_ns(), time.process_time_ns())
        try:
            self.buffer.flush()
        except OSError as exc:
            raise LoadError(f"cannot record into {self.directory}: {exc.strerror}") from exc

    def close(self, result: LoadResult) -> None:
        self.buffer.event(
            {
                "type": "load_end",
                "t": time.monotonic_ns(),
                "sent": result.sent,
                "responses": len(result.latencies),
                "errors": dict(result.errors),
                "late": result.late,
                "cpu_s": round(result.cpu_s, 4),
                "wall_s": round(result.wall_s, 4),
                "interrupted": result.interrupted,
            }
        )
        self.flush()
        self.buffer.close()


# -- running ----------------------------------------------------------------------------------


@dataclass
class LoadResult:
    sent: int = 0
    latencies: array.array[float] = field(default_factory=lambda: array.array("d"))
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    late: int = 0  # requests sent late (--rate)
    late_max_s: float = 0.0
    interrupted: bool = False

    @property
    def completed(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    @property
    def rate(self) -> float:
        return self.completed / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def client_share(self) -> float:
        """The client's CPU as a share of one core over the run."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def quantiles(self) -> dict[str, float]:
        """Latency quantiles of the requests that got a response (nearest rank), and the max."""
        values = sorted(self.latencies)
        if not values:
            return {}
        out = {
            f"p{round(q * 100)}": values[max(math.ceil(q * len(values)) - 1, 0)] for q in QUANTILES
        }
        out["max"] = values[-1]
        return out


def _error_kind(exc: BaseException, aiohttp: Any) -> str:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(exc, (aiohttp.ServerDisconnectedError, ConnectionError)):
        return "disconnected"
    if isinstance(exc, aiohttp.ClientOSError):
        return "disconnected"
    if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientResponseError)):
        return "protocol"
    return "other"


def import_client() -> Any:
    try:
        import aiohttp
    except ImportError as exc:
        raise LoadError(
            "probe load needs aiohttp, which is not installed",
            hint="Install it with: pip install 'probe-doctor[serve]'",
        ) from exc
    return aiohttp


class _Run:
    """One load run: the workers, the schedule, the bounds, the records."""

    def __init__(self, spec: LoadSpec, sink: SessionSink | None, aiohttp: Any) -> None:
        self.spec = spec
        self.sink = sink
        self.aiohttp = aiohttp
        self.result = LoadResult()
        self.headers = default_headers(spec.body, spec.headers)
        self.start = 0.0
        self.deadline = 0.0
        self.slots = 0  # requests taken by a worker so far
        self.stopping = False

    def _next(self) -> float | None:
        """The time the next request is due (now for a closed loop), or None: the run is over."""
        spec = self.spec
        if self.stopping or (spec.requests is not None and self.slots >= spec.requests):
            return None
        due = self.start if spec.rate is None else self.start + self.slots / spec.rate
        if max(due, time.monotonic()) >= self.deadline:
            return None
        self.slots += 1
        return due

    async def worker(self, index: int, session: Any) -> None:
        aiohttp = self.aiohttp
        spec = self.spec
        while True:
            due = self._next()
            if due is None:
                return
            now = time.monotonic()
            # Late: no connection was free when the request was due (not the timer's jitter).
            late = max(now - due, 0.0) if spec.rate is not None else 0.0
            if due > now:
                await asyncio.sleep(due - now)
            if late >= LATE_S:
                self.result.late += 1
                self.result.late_max_s = max(self.result.late_max_s, late)
            t0 = time.monotonic_ns()
            status = error = nbytes = 0
            self.result.sent += 1
            try:
                async with session.request(
                    spec.method,
                    spec.url,
                    data=spec.body,
                    headers=self.headers,
                    allow_redirects=False,
                ) as response:
                    nbytes = len(await response.read())
                    status = response.status
            except Exception as exc:
                kind = _error_kind(exc, aiohttp)
                error = fmt.REQUEST_ERRORS.index(kind) + 1
                self.result.errors[kind] += 1
            t1 = time.monotonic_ns()
            if status:
                self.result.latencies.append((t1 - t0) / 1e9)
                self.result.statuses[status] += 1
            if self.sink is not None:
                self.sink.request(t0, t1 - t0, status, error, nbytes, index, int(late * 1e9))

    async def flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            if self.sink is not None:
                self.sink.flush()

    async def main(self, handle_signals: bool) -> LoadResult:
        aiohttp = self.aiohttp
        spec = self.spec
        loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(limit=spec.concurrency, limit_per_host=spec.concurrency)
        timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
        cpu0 = time.process_time()
        self.start = time.monotonic()
        self.deadline = self.start + min(spec.time_limit_s, MAX_DURATION_S)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, trust_env=False, auto_decompress=True
        ) as session:
            workers = [
                asyncio.ensure_future(self.worker(i, session)) for i in range(spec.concurrency)
            ]
            flusher = asyncio.ensure_future(self.flusher())

            def stop() -> None:
                self.stopping = True
                self.result.interrupted = True
                for task in workers:
                    task.cancel()

            if handle_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop)
            try:
                done = await asyncio.gather(*workers, return_exceptions=True)
            finally:
                flusher.cancel()
                if handle_signals:
                    for sig in (signal.SIGINT, signal.SIGTERM):
                        loop.remove_signal_handler(sig)
            for outcome in done:
                if isinstance(outcome, BaseException) and not isinstance(
                    outcome, asyncio.CancelledError
                ):
                    raise outcome
        self.result.wall_s = time.monotonic() - self.start
        self.result.cpu_s = time.process_time() - cpu0
        return self.result


def run_load(
    spec: LoadSpec, sink: SessionSink | None = None, *, handle_signals: bool = True
) -> LoadResult:
    """Run the load (blocking). SIGINT and SIGTERM end it early, with what was measured so far."""
    spec.check()
    aiohttp = import_client()
    result = asyncio.run(_Run(spec, sink, aiohttp).main(handle_signals))
    if sink is not None:
        sink.close(result)
    return result


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms"


def summary_lines(spec: LoadSpec, result: LoadResult) -> list[str]:
    """What ``probe load`` prints at the end."""
    lines = [
        f"{result.completed} requests in {result.wall_s:.1f} s: {result.rate:.1f} requests/s "
        f"({spec.concurrency} connections"
        + (f", {spec.rate:g}/s scheduled" if spec.rate is not None else "")
        + (", interrupted" if result.interrupted else "")
        + ")"
    ]
    q = result.quantiles()
    if q:
        lines.append(
            "latency: " + "  ".join(f"{name} {_duration(value)}" for name, value in q.items())
        )
    if result.statuses:
        lines.append(
            "status: " + ", ".join(f"{code} x {n}" for code, n in sorted(result.statuses.items()))
        )
    if result.errors:
        lines.append(
            "errors: " + ", ".join(f"{kind} x {n}" for kind, n in result.errors.most_common())
        )
    if result.late:
        lines.append(
            f"late: {result.late} requests sent after their scheduled time (up to "
            f"{_duration(result.late_max_s)}): every connection was busy, the server did not "
            "keep up with the rate"
        )
    share = result.client_share
    lines.append(
        f"client CPU: {result.cpu_s:.2f} s, {100 * share:.0f} % of one core"
        + (
            " - the client itself may have been the limit; lower --concurrency or run it elsewhere"
            if share >= BUSY_CLIENT_SHARE and result.wall_s >= 1.0
            else ""
        )
    )
    return lines


__all__ = [
    "LoadResult",
    "LoadSpec",
    "SessionSink",
    "check_target",
    "parse_header",
    "read_body",
    "redact_command",
    "run_load",
    "summary_lines",
]
