"""Building the page: everything the HTML page shows, as plain data (``model``), before any HTML.

``build_page(diagnosis)`` decides which graphs exist (a graph with no data is left out, not drawn
empty), what goes on each of them, and what the header, the alert bar and the recommendation
panel say. Every display series is already downsampled here: at most ``MAX_POINTS`` points per
series, chosen as the minimum and the maximum of each time bucket so that a one-sample spike is
still drawn; Gantt lanes keep at most ``MAX_BARS`` bars, merging runs of bars too short to see at
full width. Nothing else of the session goes on the page, so its size does not grow with the
length of the run.

The parts: ``model`` (the types), ``downsample`` (min-max series, merged bars), ``graphs`` (one
builder per graph), ``lanes`` (the timeline's Gantt), ``verdicts`` (the recommendation panel),
``header`` (the run, the processes). The model is plain data, tested without Bokeh; ``html``
renders it (``figures`` draws the graphs, ``templates/`` hold the markup).
"""

from __future__ import annotations

from probe.analysis.diagnosis import HEALTHY, INSUFFICIENT_DATA, Diagnosis
from probe.report import recommendations
from probe.report.downsample import MAX_PAGE_POINTS, minmax
from probe.report.graphs import (
    basename_command,
    cpu_graph,
    data_wait_graph,
    gc_graph,
    lag_graph,
    steps_graph,
    threads_graph,
)
from probe.report.header import exit_notice, header_of, process_rows
from probe.report.lanes import timeline_graph
from probe.report.memory import gpu_graph, memory_graph
from probe.report.model import (
    ACTIVITY_LABELS,
    GRAPH_ORDER,
    VERDICT_GRAPHS,
    Graph,
    Page,
    clean,
    clean_block,
)
from probe.report.requests import add_client_cpu, latency_graph, throughput_graph
from probe.report.verdicts import verdict_views
from probe.units import percent


def build_page(d: Diagnosis) -> Page:
    """The page for one diagnosis (the timeline it was made from is ``d.timeline``)."""
    tl = d.timeline
    # The page follows the processes the analysis judged; when no Python process was profiled
    # (a command that is not Python), the command's own process.
    training = d.training_pids or [p.pid for p in tl.processes.values() if p.role == "main"][:1]
    cpu = cpu_graph(d, training)
    add_client_cpu(cpu, d)
    graphs = [
        g
        for g in (
            throughput_graph(d),
            latency_graph(d),
            cpu,
            threads_graph(tl, training),
            memory_graph(tl, training),
            gpu_graph(tl),
            steps_graph(d, training),
            data_wait_graph(d, training),
            gc_graph(tl, training),
            lag_graph(tl),
            timeline_graph(tl, training),
        )
        if g is not None
    ]
    fit_budget(graphs)
    # The graphs that show the verdict come first, right under the alert; the rest keep the
    # usual order.
    first = VERDICT_GRAPHS.get(d.category, ())
    graphs.sort(
        key=lambda g: (first.index(g.id) if g.id in first else len(first), GRAPH_ORDER.index(g.id))
    )
    present = {g.id for g in graphs}
    views = verdict_views(d, present)
    for view in views:
        if view.status == "issue" and view.id not in (HEALTHY, INSUFFICIENT_DATA):
            for gid in view.graphs:
                graph = next(g for g in graphs if g.id == gid)
                graph.verdicts.append(view.id)
    header = header_of(d)
    alert_title, alert_text, severity = _alert(d)
    also = [(f.id, percent(f.impact)) for f in d.issues[1:] if f.id != INSUFFICIENT_DATA]
    activity = [
        (state, ACTIVITY_LABELS.get(state, state), float(share))
        for state, share in d.activity.items()
        if share >= 0.0005  # what would read "0 %" is left out
    ]
    crash = d.run.get("crash") or {}
    return Page(
        title=f"probe: {d.category} · {clean(basename_command(tl), 80)}",
        header=header,
        verdict=d.category,
        alert_title=clean(alert_title, 300),
        alert_text=clean(alert_text, 1000),
        alert_severity=severity,
        next_step=clean(d.next_step or recommendations.load(d.category).first_step, 300),
        exit_notice=exit_notice(d),
        crash_trace=clean_block(str(crash.get("traceback", "")), 8000),
        crash_pid=int(crash.get("pid", 0)),
        also=also,
        activity=activity,
        graphs=graphs,
        verdicts=views,
        window=(float(d.window[0]), float(d.window[1])) if d.window is not None else None,
        duration=float(tl.duration_s),
        processes=process_rows(tl),
        warnings=[clean(w, 400) for w in d.warnings[:20]],
        window_name="the load" if d.segmentation.method == "load" else "steady state",
    )


def _alert(d: Diagnosis) -> tuple[str, str, str]:
    """The alert under the header: its title, its text and its severity."""
    top = d.top
    if d.category == HEALTHY:
        alert_title = (
            "No issue found: the server kept up with its load"
            if d.serving is not None
            else "No issue found: the run is compute-bound"
        )
        alert_text = d.headline
        severity = "ok"
    elif top is not None:
        alert_title = top.title or recommendations.load(top.id).title
        alert_text = top.summary or top.reason
        severity = top.severity or "moderate"
    else:
        alert_title = "No verdict"
        alert_text = d.headline
        severity = "unknown"
    return alert_title, alert_text, severity


def fit_budget(graphs: list[Graph], max_points: int = MAX_PAGE_POINTS) -> None:
    """Downsample every series further (min-max again, so spikes stay) when the page's series
    together hold more than ``max_points`` points."""
    total = sum(len(s) for g in graphs for s in g.series)
    if total <= max_points:
        return
    factor = max_points / total
    for g in graphs:
        for s in g.series:
            s.x, s.y = minmax(s.x, s.y, max(int(len(s) * factor), 64))


__all__ = ["build_page", "fit_budget"]
