"""probe load URL: a bounded HTTP load on a server, recorded into a session when there is one."""

from __future__ import annotations

import os
from pathlib import Path

import click

from probe.cli.common import echo
from probe.errors import LoadError
from probe.serve.load import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DURATION_S,
    DEFAULT_TIMEOUT_S,
    MAX_CONCURRENCY,
    MAX_DURATION_S,
    MAX_RATE,
    MAX_REQUESTS,
    MAX_TIMEOUT_S,
    LoadSpec,
    SessionSink,
    parse_header,
    read_body,
    run_load,
    summary_lines,
)
from probe.serve.onport import SESSION_ENV
from probe.session.redact import redact_text


@click.command(short_help="Send HTTP requests to a server and measure their latency.")
@click.argument("url")
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1, MAX_CONCURRENCY),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    help="Connections, each sending its next request when the last one is answered.",
)
@click.option(
    "-d",
    "--duration",
    type=click.FloatRange(0, MAX_DURATION_S, min_open=True),
    default=None,
    metavar="S",
    help=f"Seconds to send requests for (default {DEFAULT_DURATION_S:g} unless --requests).",
)
@click.option(
    "-n",
    "--requests",
    type=click.IntRange(1, MAX_REQUESTS),
    default=None,
    metavar="N",
    help="Requests to send in all (with --duration: whichever limit comes first).",
)
@click.option(
    "-r",
    "--rate",
    type=click.FloatRange(0, MAX_RATE, min_open=True),
    default=None,
    metavar="R",
    help="Send R requests a second on a fixed schedule (open loop) instead of a closed loop.",
)
@click.option("-m", "--method", default=None, help="HTTP method (default GET, POST with --body).")
@click.option(
    "-H", "--header", "headers", multiple=True, metavar="K:V", help="A request header (repeat)."
)
@click.option("-b", "--body", default=None, metavar="TEXT|@FILE", help="The request body.")
@click.option(
    "--timeout",
    type=click.FloatRange(0, MAX_TIMEOUT_S, min_open=True),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    metavar="S",
    help="Per request.",
)
@click.option(
    "--allow-host",
    "allowed_hosts",
    multiple=True,
    metavar="HOST",
    help="Allow loading HOST, which is not a loopback address (repeat).",
)
@click.option(
    "--session",
    "session",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    metavar="DIR",
    help="Record every request into the session DIR (under probe doctor --on-port: its session).",
)
def load(
    url: str,
    concurrency: int,
    duration: float | None,
    requests: int | None,
    rate: float | None,
    method: str | None,
    headers: tuple[str, ...],
    body: str | None,
    timeout: float,
    allowed_hosts: tuple[str, ...],
    session: Path | None,
) -> int:
    """Send HTTP requests to URL for a bounded time and say how fast and how slow they were.

    Only loopback addresses are loaded unless --allow-host names the host; redirects are not
    followed. At the end: requests/s, latency p50/p90/p99/max, statuses, errors by kind and the
    client's own CPU (if near one core, the client may be the limit). Under probe doctor
    --on-port, or with --session, every request is recorded into the session, and the report
    shows requests/s and latency on the server's timeline.

    \b
      probe load http://127.0.0.1:8000/health --duration 5
      probe load http://127.0.0.1:8000/embed -c 16 -n 2000 --body @request.json
      probe doctor --on-port 'probe load http://127.0.0.1:$PORT/embed -d 20' -- python serve.py
    """
    payload = read_body(body) if body is not None else None
    spec = LoadSpec(
        url=url,
        method=(method or ("POST" if payload is not None else "GET")).upper(),
        concurrency=concurrency,
        duration_s=duration,
        requests=requests,
        rate=rate,
        headers=tuple(parse_header(h) for h in headers),
        body=payload,
        timeout_s=timeout,
        allowed_hosts=allowed_hosts,
    )
    spec.check()
    target = session if session is not None else os.environ.get(SESSION_ENV) or None
    sink = SessionSink(target, spec) if target is not None else None
    result = run_load(spec, sink)
    for line in summary_lines(spec, result):
        click.echo(f"probe load: {line}")
    if sink is not None:
        echo(f"probe load: {sink.requests} requests recorded into {sink.directory}")
    if result.interrupted:
        return 130
    if not result.latencies:
        raise LoadError(f"no request to {redact_text(url)} got a response")
    return 0
