"""The page's header: the command and the run, probe's cost, the processes."""

from __future__ import annotations

import datetime as _dt
import shlex
from typing import Any

import numpy as np

from probe.analysis.diagnosis import Diagnosis
from probe.analysis.timeline import UNIT_LABELS, Timeline
from probe.report.graphs import short_label
from probe.report.model import Header, ProcessRow, clean
from probe.report.requests import requests_fact
from probe.session.redact import redact_argv
from probe.units import elapsed, percent, size

MAX_PROCESS_ROWS = 60


def describe_overhead(cost: dict[str, float], duration: float) -> str:
    """probe's measured cost: what collecting took (agents inside, the sampler outside) as a
    share of one core, and the probe process's CPU in all (start-up and analysis included, which
    dominate a short run, so it is not given as a share)."""
    if not cost:
        return "not measured"
    agents = cost.get("agents_cpu_s", 0.0)
    sampler = cost.get("sampler_cpu_s", 0.0)
    share = (agents + sampler) / max(duration, 1e-9)
    return (
        f"collecting took {percent(share)} of one core (agents {agents:.1f} s, sampler "
        f"{sampler:.1f} s of CPU); probe's own process {cost.get('probe_process_cpu_s', 0.0):.1f} s"
    )


def exit_notice(d: Diagnosis) -> str:
    """A sentence for the alert when the command failed: its status and, when the agent saw it,
    the exception that ended the main process."""
    meta = d.timeline.session.meta
    text, ok = describe_exit(meta)
    if ok:
        return ""
    root = meta.get("root_pid")
    infos = list(d.timeline.processes.values())
    main = d.timeline.processes.get(root) if isinstance(root, int) else None
    crashed = next((p for p in [main, *infos] if p is not None and p.exception), None)
    why = f": {crashed.exception}" if crashed is not None else ""
    exc = d.run.get("exception")
    if (
        exc is not None
        and crashed is not None
        and crashed.pid == exc.get("pid")
        and exc.get("where")
    ):
        why += f" (in {exc['where']})"
    fault = d.run.get("crash")
    if not why and fault:
        where = f" in {fault['where']}" if fault.get("where") else ""
        why = f": {fault['error']}{where} (process {fault['pid']})"
    return clean(
        f"The command did not end well ({text}, after {elapsed(d.timeline.duration_s)}){why}.",
        500,
    )


ATTACH_ENDINGS = {
    "detached": "attached, then detached; the process kept running",
    "finished": "attached, then detached; the process kept running",
    "target-exited": "the process exited while probe was attached",
}


def describe_exit(meta: dict[str, Any]) -> tuple[str, bool]:
    """How the run ended, in words, and whether that was a normal end."""
    exit_info = meta.get("exit") or {}
    status = meta.get("status") or ""
    code = exit_info.get("code")
    sig = exit_info.get("signal")
    if sig is not None:
        import signal as _signal

        try:
            name = _signal.Signals(int(sig)).name
        except ValueError:
            name = f"signal {sig}"
        text = f"ended by {name}"
        return (f"interrupted: {text}" if status == "interrupted" else text), False
    if code is not None:
        prefix = "interrupted, " if status == "interrupted" else ""
        return f"{prefix}exit status {code}", code == 0 and status != "interrupted"
    if status == "running":
        return "unknown: probe itself was stopped before the end", False
    if meta.get("kind") == "attach" and status in ATTACH_ENDINGS:
        return ATTACH_ENDINGS[status], True
    if status == "failed-to-start":
        return "the command could not be started", False
    return clean(status or "unknown", 60), False


def header_of(d: Diagnosis) -> Header:
    tl = d.timeline
    meta = tl.session.meta
    host = meta.get("host") or {}
    py = meta.get("python") or {}
    machine = meta.get("machine") or {}
    torch_version = meta.get("torch") or next(
        (str(e["version"]) for e in tl.session.events_of("torch") if e.get("version")), ""
    )
    started = ""
    start_time = (meta.get("start") or {}).get("time")
    if start_time:
        try:
            started = _dt.datetime.fromisoformat(str(start_time)).strftime("%Y-%m-%d %H:%M:%S %z")
        except ValueError:
            started = clean(start_time, 40)
    exit_text, exit_ok = describe_exit(meta)
    steps = len(tl.steps)
    rate = ""
    if steps >= 2:
        span = float(tl.steps.end.max() - tl.steps.start.min())
        rate = f"{steps / max(span, 1e-9):.1f}/s" if span > 0 else ""
    overhead = describe_overhead(tl.probe_cost, tl.duration_s)
    window = f"{d.phases.window_text()}. Phases: {d.phases.summary()}"
    cores = machine.get("effective_cores")
    cores_text = f"{float(cores):g}" if cores else "?"
    if machine.get("cpu_quota_cores"):
        cores_text += " (CPU quota)"
    memory = size(float(machine["memory_total"])) if machine.get("memory_total") else "?"
    if machine.get("memory_limit"):
        memory += f", limit {size(float(machine['memory_limit']))}"
    command = d.run.get("command") or " ".join(shlex.quote(str(a)) for a in meta.get("argv") or [])
    header = Header(
        command=clean(command, 2000),
        started=started,
        duration=elapsed(tl.duration_s),
        exit=exit_text,
        exit_ok=exit_ok,
        host=clean(host.get("hostname") or "?", 100),
        platform=clean(host.get("platform") or "", 120),
        python=clean(py.get("version") or "?", 40),
        torch=clean(torch_version or "not used", 40),
        cores=cores_text,
        memory=memory,
        processes=len(tl.processes),
        python_processes=sum(1 for p in tl.processes.values() if p.python),
        steps=steps,
        steps_rate=rate,
        overhead=overhead,
        window=clean(window, 400),
        name=clean(meta.get("name") or tl.session.path.name, 120),
        facts=[],
    )
    header.facts = [
        ("started", header.started or "?"),
        ("duration", header.duration),
        ("ended", header.exit),
        ("host", header.host),
        ("cores", header.cores),
        ("memory", header.memory),
        ("Python", header.python),
        ("torch", header.torch),
        ("processes", f"{header.processes} ({header.python_processes} profiled inside)"),
        ("steps", f"{steps}" + (f" ({rate})" if rate else "") + _unit(tl)),
        ("start-up", clean(d.phases.startup_text(), 200) or "?"),
        ("probe overhead", overhead),
    ]
    requests = requests_fact(d)
    if requests is not None:  # a server: its unit of work is the request, not the step
        at = next(i for i, (label, _) in enumerate(header.facts) if label == "steps")
        header.facts[at] = ("requests", clean(requests, 200))
    return header


def _unit(tl: Timeline) -> str:
    """What a step is, when it is not an optimizer step or probe.step()."""
    if tl.steps.source in ("optimizer", "probe.step", "none") or not len(tl.steps):
        return ""
    return f", {UNIT_LABELS[tl.steps.source]}"


def process_rows(tl: Timeline) -> list[ProcessRow]:
    rows = []
    order = {
        "main": 0,
        "rank": 1,
        "launcher": 2,
        "worker": 3,
        "helper": 4,
        "compiler": 5,
        "other": 6,
    }
    infos = sorted(
        tl.processes.values(), key=lambda p: (order.get(p.role, 9), p.start_s or 0.0, p.pid)
    )
    for info in infos[:MAX_PROCESS_ROWS]:
        cpu = tl.cpu.get(info.pid)
        cpu_s = float(cpu.sum() * tl.bin_s) if cpu is not None else 0.0
        rss = tl.rss.get(info.pid)
        peak = float(np.nanmax(rss)) if rss is not None and np.isfinite(rss).any() else None
        if info.signal is not None:
            exit_text = f"signal {info.signal}"
        elif info.exit_code is not None:
            exit_text = f"exit {info.exit_code}"
        else:
            exit_text = ""
        if info.exception:
            exit_text = (exit_text + ", " if exit_text else "") + info.exception
        rows.append(
            ProcessRow(
                pid=info.pid,
                role=info.role,
                label=clean(short_label(info, info.pid), 60),
                command=clean(" ".join(shlex.quote(a) for a in redact_argv(info.argv)), 400),
                start=info.start_s,
                end=info.end_s,
                cpu_s=cpu_s,
                peak_rss=peak,
                exit=clean(exit_text, 200),
            )
        )
    return rows
