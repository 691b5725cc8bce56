"""The report of a server under load: requests/s and latency over time, the client's CPU.

Graph builders in the style of ``probe.report.graphs`` (one per graph, ``None`` without data),
on the page's shared time axis so that a latency spike lines up with the CPU, the event-loop lag,
the GC pauses and the stacks of the same moment; and the header's line about requests.

Requests are put in time buckets by when they were answered. The bucket is ``BUCKET_S`` long,
longer for long runs (at most ``MAX_BUCKETS`` buckets), so each quantile stands on enough
requests; the page's series are then downsampled min-max like every other.
"""

from __future__ import annotations

import numpy as np

from probe.analysis.diagnosis import Diagnosis
from probe.analysis.timeline import FloatArray
from probe.report.downsample import minmax
from probe.report.model import Graph, Rule, Series, clean
from probe.units import duration, percent

BUCKET_S = 0.5
MAX_BUCKETS = 600


def _series(
    label: str, x: FloatArray, y: FloatArray, style: str, kind: str = "line", unit: str = ""
) -> Series:
    xs, ys = minmax(x, y)
    return Series(label=clean(label, 80), x=xs, y=ys, style=style, kind=kind, unit=unit)


def _buckets(d: Diagnosis) -> FloatArray:
    tl = d.timeline
    width = max(BUCKET_S, tl.duration_s / MAX_BUCKETS)
    return np.arange(0.0, tl.duration_s + width, width)


def throughput_graph(d: Diagnosis) -> Graph | None:
    """Requests answered per second, and failed ones, over the run."""
    reqs = d.timeline.requests
    if not len(reqs):
        return None
    edges = _buckets(d)
    width = float(edges[1] - edges[0])
    x = (edges[:-1] + edges[1:]) / 2
    answered = np.histogram(reqs.end[reqs.responded], bins=edges)[0] / width
    series = [_series("answered", x, answered, "main", unit="requests/s")]
    failed = ~reqs.responded | (reqs.status >= 500)
    if failed.any():
        rate = np.histogram(reqs.end[failed], bins=edges)[0] / width
        series.append(_series("failed (no response or 5xx)", x, rate, "wait", unit="requests/s"))
    sent = np.histogram(reqs.start, bins=edges)[0] / width
    series.append(_series("sent", x, sent, "machine", unit="requests/s"))
    top = float(max(s.y.max(initial=0.0) for s in series))
    return Graph(
        id="requests",
        title="Requests per second",
        description=(
            "Requests the load generator sent and got answered, per second. Under a steady "
            "load the answered rate is the server's throughput; dips line up with what held "
            "the server back on the other graphs."
        ),
        y_label="requests/s",
        series=series,
        y_max=max(top, 1.0) * 1.12,
    )


def latency_graph(d: Diagnosis) -> Graph | None:
    """Latency quantiles of the requests answered in each bucket."""
    reqs = d.timeline.requests
    ok = reqs.select(reqs.responded)
    if len(ok) < 2:
        return None
    edges = _buckets(d)
    which = np.clip(np.searchsorted(edges, ok.end, side="right") - 1, 0, len(edges) - 2)
    order = np.argsort(which, kind="stable")
    which, dur = which[order], ok.dur[order]
    buckets, first = np.unique(which, return_index=True)
    groups = np.split(dur, first[1:])
    median = float(np.median(ok.dur))
    scale, unit = (1.0, "s") if median >= 2.0 else (1000.0, "ms")
    x = (edges[buckets] + edges[buckets + 1]) / 2
    series = []
    for q, style in ((50, "median"), (90, "main"), (99, "wait")):
        y = np.array([np.percentile(g, q, method="inverted_cdf") for g in groups]) * scale
        series.append(_series(f"p{q}", x, y, style, unit=unit))
    top = float(ok.dur.max()) * scale
    y_log = top > 20 * median * scale and median > 0
    rules = []
    serving = d.serving
    latency = serving.latency() if serving is not None else {}
    if latency:
        rules.append(
            Rule(f"p99 of the load: {duration(latency['p99'])}", latency["p99"] * scale, "limit")
        )
    return Graph(
        id="latency",
        title="Request latency",
        description=(
            f"Latency of the requests answered in each {edges[1] - edges[0]:g} s (p50, p90, "
            "p99), from sending the request to reading the whole response, as the client saw "
            "it. Latency that rises with no more work done is time spent waiting: behind a "
            "blocked event loop, for the GIL, or in line for a busy worker."
            + (" The axis is logarithmic." if y_log else "")
        ),
        y_label=unit,
        series=series,
        rules=rules,
        y_log=bool(y_log),
        y_max=top * 1.12,
    )


def add_client_cpu(graph: Graph | None, d: Diagnosis) -> None:
    """The load generator's own CPU on the CPU graph: was the client or the server the limit?"""
    reqs = d.timeline.requests
    if graph is None or not reqs.client_cpu:
        return
    edges = _buckets(d)
    x = (edges[:-1] + edges[1:]) / 2
    total = np.zeros(len(x))
    for t, cpu in reqs.client_cpu.values():
        if len(t) >= 2:
            at = np.interp(edges, t, cpu, left=cpu[0], right=cpu[-1])
            total += np.diff(at) / np.diff(edges)
    graph.series.append(_series("probe load (the client)", x, total, "workers", unit="cores"))
    graph.y_max = max(graph.y_max, float(total.max(initial=0.0)) * 1.12)


def requests_fact(d: Diagnosis) -> str | None:
    """The header's line about requests: how many, how fast, how slow, the client's CPU."""
    serving = d.serving
    if serving is None:
        return None
    parts = [f"{len(d.timeline.requests)}", f"{serving.rate:.1f}/s under load"]
    latency = serving.latency()
    if latency:
        parts.append(f"p50 {duration(latency['p50'])}, p99 {duration(latency['p99'])}")
    errors = sum(serving.requests.errors_by_kind().values())
    if errors:
        parts.append(f"{errors} without a response")
    parts.append(f"client CPU {percent(serving.client_cpu)} of a core")
    return parts[0] + " (" + "; ".join(parts[1:]) + ")"


__all__ = ["add_client_cpu", "latency_graph", "requests_fact", "throughput_graph"]
