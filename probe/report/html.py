"""The HTML report: the page (probe/report/page.py builds its model) rendered with Bokeh.

The page opens from disk with no network: Bokeh's JavaScript is inlined (only the core bundle;
no widgets, no MathJax), there are no web fonts and no external URL is loaded (links in the
recommendation texts are plain anchors). The graphs are Bokeh figures sharing one x range, so
panning or zooming one moves them all; everything else (header, alert bar, recommendation panel)
is plain HTML with a few lines of script.

Every string from the session is escaped here: with ``html.escape`` in the page, and as data
(never as markup) in Bokeh, where the only untrusted text (Gantt lane names, which hold thread and
span names) goes in as ``PlainText`` so that Bokeh does not parse it as TeX either.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from probe import __version__
from probe.analysis.diagnosis import Diagnosis
from probe.report import markdown
from probe.report.model import Bands, Graph, Page, Series, VerdictView
from probe.report.page import build_page
from probe.report.renderer import Outputs, Renderer
from probe.units import percent, size

e = html.escape

# Looks, by the style names the model uses.
COLORS = {
    "main": "#1f5fa8",
    "proc1": "#17becf",
    "proc2": "#8c564b",
    "proc3": "#e377c2",
    "proc4": "#bcbd22",
    "proc5": "#7f7f7f",
    "proc6": "#9467bd",
    "proc7": "#2ca02c",
    "workers": "#f28e2b",
    "compiler": "#4f9a94",
    "other": "#8a8a8a",
    "machine": "#c5cad1",
    "pool": "#3a9e4a",
    "wait": "#d62728",
    "wait-points": "#f28e2b",
    "median": "#222222",
    "gen0": "#9ecae1",
    "gen1": "#4a8ac4",
    "gen2": "#d62728",
    "cuda": "#8e44ad",
    "cuda-reserved": "#c39bd3",
    "gpu-memory": "#4a235a",
    "limit": "#555555",
    "threshold": "#d62728",
}
DASHES = {"machine": "dashed", "wait": "dotted", "cuda-reserved": "dashed"}
# The phase ribbon (phases.py), then torch.compile's compilations drawn over it.
STATE_COLORS = {
    "start-up": "#fde2b0",
    "warm-up": "#fff3bf",
    "loop": "#b7e4c7",
    "teardown": "#e4e4e4",
    "compiling": "#4f9a94",
}
STATE_NAMES = {
    "start-up": "phase: start-up",
    "warm-up": "phase: warm-up",
    "loop": "phase: the loop (analysed)",
    "teardown": "phase: teardown",
    "compiling": "torch.compile compiling",
}
LANE_COLORS = {
    "steps": ("#5b8fd0", "#2f6db5"),
    "wait": ("#f28e2b", "#f28e2b"),
    "gc": ("#d62728", "#d62728"),
    "span": ("#9467bd", "#9467bd"),
    "fetch": ("#59a14f", "#59a14f"),
}
LANE_NAMES = {
    "steps": "step",
    "wait": "data wait",
    "gc": "GC pause",
    "span": "span",
    "fetch": "batch built",
}
WINDOW_COLOR = "#2b6cb0"
ISSUE_COLOR = "#e03131"
TOOLS = "xpan,xbox_zoom,xwheel_zoom,reset,save"
LEFT_BORDER = 180  # the same on every graph, so that their time axes line up
GRAPH_HEIGHT = 230
LEGEND_ROW_PX = 640  # what a legend row may take at the narrowest usual width


def render(page: Page, *, session_dir: str | None = None) -> str:
    """The whole page as one HTML document."""
    from bokeh.embed import components
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    from bokeh.models import Range1d
    from bokeh.resources import INLINE

    pad = max(page.duration * 0.01, 0.05)
    x_range = Range1d(start=0.0, end=page.duration, bounds=(-pad, page.duration + pad))
    figures = {g.id: _figure(g, page, x_range) for g in page.graphs}
    js = ""
    script = ""
    divs: dict[str, str] = {}
    if figures:
        script, div_list = components(list(figures.values()))
        divs = dict(zip(figures, div_list))
        bundle = bundle_for_objs_and_resources(list(figures.values()), INLINE)
        js = "\n".join(
            f'<script type="text/javascript">\n{_inline_script(code)}\n</script>'
            for code in bundle.js_raw
        )
    return _page_html(page, divs, js, script, session_dir)


class HtmlRenderer(Renderer):
    """The report: the page for the diagnosis, built (``page.build_page``) and rendered."""

    name = "html"
    suffix = ".html"

    def render(self, diagnosis: Diagnosis, outputs: Outputs) -> str:
        page = build_page(diagnosis)
        return render(page, session_dir=str(diagnosis.timeline.session.path))


def _inline_script(code: str) -> str:
    # Bokeh's bundle never contains "</script", but a closing tag inside would end the element.
    return code.replace("</script", "<\\/script")


# -- graphs ---------------------------------------------------------------------------------------


def _figure(graph: Graph, page: Page, x_range: Any) -> Any:
    from bokeh.models import FixedTicker, HoverTool, PlainText, Range1d
    from bokeh.models.annotations import BoxAnnotation, Legend, LegendItem, Span
    from bokeh.plotting import figure

    is_gantt = graph.lanes is not None
    n_lanes = len(graph.lanes.names) if graph.lanes is not None else 0
    height = max(120, 34 + 26 * n_lanes + 60) if is_gantt else GRAPH_HEIGHT
    if is_gantt:
        y_range = Range1d(start=n_lanes - 0.5, end=-0.5)
    elif graph.y_log:
        low = _log_floor(graph.series)
        y_range = Range1d(start=low, end=max(graph.y_max, low * 10) * 1.5)
    else:
        y_range = Range1d(start=0.0, end=graph.y_max if graph.y_max > 0 else 1.0)
    fig = figure(
        height=height,
        sizing_mode="stretch_width",
        x_range=x_range,
        y_range=y_range,
        y_axis_type="log" if graph.y_log else "linear",
        tools=TOOLS,
        active_drag="xbox_zoom",
        active_scroll=None,
        toolbar_location="right",
        min_border_left=LEFT_BORDER,
        min_border_right=10,
        output_backend="canvas",
    )
    fig.toolbar.logo = None
    fig.xaxis.axis_label = "seconds since the start of the run"
    fig.xaxis.axis_label_text_font_style = "normal"
    fig.xaxis.axis_label_text_font_size = "11px"
    fig.yaxis.axis_label = graph.y_label or None
    fig.yaxis.axis_label_text_font_style = "normal"
    fig.grid.grid_line_alpha = 0.35
    fig.outline_line_color = None

    if page.window is not None:
        t0, t1 = page.window
        fig.add_layout(
            BoxAnnotation(
                left=t0,
                right=t1,
                fill_color=WINDOW_COLOR,
                fill_alpha=0.05,
                line_alpha=0,
                level="underlay",
            )
        )
        for edge in (t0, t1):
            fig.add_layout(
                Span(
                    location=edge,
                    dimension="height",
                    line_color=WINDOW_COLOR,
                    line_dash="dashed",
                    line_alpha=0.6,
                    line_width=1,
                )
            )
    items: list[Any] = []
    if graph.states is not None and len(graph.states):
        items.extend(_state_ribbon(fig, graph.states, graph.y_max))
    for band in graph.bands:
        for a, b in zip(band.start, band.end):
            fig.add_layout(
                BoxAnnotation(
                    left=float(a),
                    right=float(b),
                    fill_color="#888888",
                    fill_alpha=0.08,
                    hatch_pattern="/",
                    hatch_alpha=0.25,
                    hatch_color="#888888",
                    line_alpha=0,
                    level="underlay",
                )
            )
    for view in page.verdicts:
        if view.windows is not None and graph.id in view.graphs:
            _issue_windows(fig, view, graph.id, page.verdict)
    if graph.lanes is not None:
        items.extend(_lanes(fig, graph))
        fig.yaxis.ticker = FixedTicker(ticks=list(range(n_lanes)))
        fig.yaxis.major_label_overrides = {
            i: PlainText(text=name) for i, name in enumerate(graph.lanes.names)
        }
        fig.ygrid.grid_line_color = None
        fig.yaxis.major_tick_line_color = None
        fig.yaxis.major_label_text_font_size = "11px"
    hover_renderers = []
    for s in graph.series:
        renderer = _series(fig, s)
        if s.kind != "area":
            hover_renderers.append(renderer)
        items.append(LegendItem(label=s.label, renderers=[renderer]))
    for rule in graph.rules:
        fig.add_layout(
            Span(
                location=rule.y,
                dimension="width",
                line_color=COLORS.get(rule.style, "#555555"),
                line_dash="dashed" if rule.style == "limit" else "dotted",
                line_width=1.5,
            )
        )
        # A legend entry for the rule: an invisible glyph carrying its look.
        ghost: Any = fig.line(
            [0.0],
            [rule.y],
            line_color=COLORS.get(rule.style, "#555555"),
            line_dash="dashed" if rule.style == "limit" else "dotted",
            line_width=1.5,
        )
        items.append(LegendItem(label=rule.label, renderers=[ghost]))
    if hover_renderers:
        fig.add_tools(
            HoverTool(
                renderers=hover_renderers,
                tooltips=[
                    ("", "$name"),
                    ("time", "@x{0.00} s"),
                    ("value", "@y{0.[000]} " + _unit_text(graph.y_label)),
                ],
                mode="mouse",
            )
        )
    if items:
        options: dict[str, Any] = {
            "orientation": "horizontal",
            "click_policy": "hide",
            "label_text_font_size": "11px",
            "glyph_width": 16,
            "glyph_height": 12,
            "label_height": 12,
            "label_standoff": 4,
            "spacing": 12,
            "padding": 2,
            "margin": 0,
            "border_line_alpha": 0,
            "background_fill_alpha": 0,
        }
        legend = Legend(items=items, location="top_left", **options)
        # Bokeh does not wrap a legend: give it as many rows as its labels need.
        width = sum(34 + 6.2 * len(str(item.label.value)) for item in items)
        rows = math.ceil(width / LEGEND_ROW_PX)
        if rows > 1:
            legend.nrows = rows
        fig.add_layout(legend, "above")
    return fig


def _unit_text(unit: str) -> str:
    # Bokeh reads @ and $ in a tooltip template as fields; units are probe's own words.
    return unit.replace("@", "").replace("$", "")


def _log_floor(series: list[Series]) -> float:
    positive = [float(np.min(s.y[s.y > 0])) for s in series if (s.y > 0).any()]
    return max(min(positive) / 2, 1e-3) if positive else 0.1


def _source(data: dict[str, Any]) -> Any:
    from bokeh.models import ColumnDataSource

    # float32 halves what the page carries; time keeps ~10 ms over a day, far below a pixel.
    return ColumnDataSource(
        {
            k: (v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
            for k, v in data.items()
        }
    )


def _series(fig: Any, s: Series) -> Any:
    color = COLORS.get(s.style, "#1f5fa8")
    source = _source({"x": s.x, "y": s.y})
    if s.kind == "area":
        return fig.varea(
            x="x", y1=0.0, y2="y", source=source, fill_color=color, fill_alpha=0.35, name=s.label
        )
    if s.kind == "points":
        renderer = fig.scatter(
            "x", "y", source=source, size=4, color=color, alpha=0.7, name=s.label
        )
    else:
        renderer = fig.line(
            "x",
            "y",
            source=source,
            line_color=color,
            line_width=1.6 if s.style != "machine" else 1.2,
            line_dash=DASHES.get(s.style, "solid"),
            name=s.label,
        )
    return renderer


def _state_ribbon(fig: Any, states: Bands, y_max: float) -> list[Any]:
    from bokeh.models.annotations import LegendItem

    items = []
    kinds = np.array(states.kinds or [])
    for kind, color in STATE_COLORS.items():
        mask = kinds == kind
        if not mask.any():
            continue
        source = _source({"left": states.start[mask], "right": states.end[mask]})
        renderer = fig.quad(
            left="left",
            right="right",
            bottom=y_max * 0.94,
            top=y_max,
            source=source,
            fill_color=color,
            line_alpha=0,
        )
        items.append(LegendItem(label=STATE_NAMES[kind], renderers=[renderer]))
    return items


def _issue_windows(fig: Any, view: VerdictView, graph_id: str, verdict: str) -> None:
    assert view.windows is not None
    source = _source({"x0": view.windows.start, "x1": view.windows.end})
    fig.vstrip(
        x0="x0",
        x1="x1",
        source=source,
        fill_color=ISSUE_COLOR,
        fill_alpha=0.10,
        line_alpha=0,
        level="underlay",
        name=f"windows:{view.id}:{graph_id}",
        visible=view.id == verdict,
    )


def _lanes(fig: Any, graph: Graph) -> list[Any]:
    from bokeh.models import HoverTool
    from bokeh.models.annotations import LegendItem

    lanes = graph.lanes
    assert lanes is not None
    styles = np.array(lanes.style)[lanes.lane] if len(lanes) else np.array([], dtype=str)
    items = []
    renderers = []
    for style in ("steps", "wait", "gc", "fetch", "span"):
        mask = styles == style
        if not mask.any():
            continue
        fills = LANE_COLORS[style]
        parts = [mask]
        if style == "steps":
            # Alternate two shades so that back-to-back steps stay apart.
            index = np.cumsum(mask) - 1
            parts = [mask & (index % 2 == 0), mask & (index % 2 == 1)]
        first = None
        for k, part in enumerate(parts):
            if not part.any():
                continue
            start = lanes.start[part]
            end = lanes.end[part]
            source = _source(
                {
                    "y": lanes.lane[part].astype(np.int16),
                    "left": start,
                    "right": end,
                    "dur": (end - start) * 1000.0,
                    "n": lanes.count[part].astype(np.int32),
                }
            )
            color = fills[k % 2]
            renderer = fig.hbar(
                y="y",
                left="left",
                right="right",
                height=0.7,
                source=source,
                fill_color=color,
                line_color=color if style != "steps" else "#ffffff",
                line_width=1 if style != "steps" else 0.5,
                name=LANE_NAMES[style],
            )
            renderers.append(renderer)
            first = first or renderer
        if first is not None:
            items.append(LegendItem(label=LANE_NAMES[style], renderers=[first]))
    if renderers:
        fig.add_tools(
            HoverTool(
                renderers=renderers,
                tooltips=[
                    ("", "$name"),
                    ("start", "@left{0.000} s"),
                    ("length", "@dur{0.[0]} ms"),
                    ("intervals", "@n"),
                ],
                mode="mouse",
            )
        )
    return items


# -- the page -------------------------------------------------------------------------------------


def _page_html(
    page: Page, divs: dict[str, str], js: str, script: str, session_dir: str | None
) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(page.title)}</title>",
        f"<style>{CSS}</style>",
        js,
        "</head>",
        f'<body data-verdict="{e(page.verdict)}">',
        _header_html(page),
        _alert_html(page),
        '<div class="layout">',
        '<main class="graphs">',
        _key_html(page),
        *(_graph_html(g, divs.get(g.id, ""), page) for g in page.graphs),
        _processes_html(page),
        "</main>",
        _panel_html(page),
        "</div>",
        _footer_html(page, session_dir),
        script,
        f'<script type="text/javascript">{PAGE_JS}</script>',
        "</body>",
        "</html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _header_html(page: Page) -> str:
    h = page.header
    facts = "".join(
        f'<div class="fact{" bad" if k == "ended" and not h.exit_ok else ""}">'
        f"<dt>{e(k)}</dt><dd>{e(v)}</dd></div>"
        for k, v in h.facts
    )
    return (
        '<header class="top">'
        f'<div class="brand"><span class="logo">probe</span> doctor report'
        f'<span class="session">{e(h.name)}</span></div>'
        f'<div class="command" title="the command, as run (secrets redacted)">'
        f'<span class="prompt">$</span> <code>{e(h.command)}</code></div>'
        f'<dl class="facts">{facts}</dl>'
        f'<p class="window">Analysed window: {e(h.window)}</p>' + _warnings_html(page) + "</header>"
    )


def _warnings_html(page: Page) -> str:
    if not page.warnings:
        return ""
    items = "".join(f"<li>{e(w)}</li>" for w in page.warnings)
    return (
        f'<details class="warnings"><summary>{len(page.warnings)} warning'
        f"{'s' if len(page.warnings) != 1 else ''} while reading or analysing the session</summary>"
        f"<ul>{items}</ul></details>"
    )


def _graph_title(page: Page, graph_id: str) -> str:
    g = page.graph(graph_id)
    return g.title if g is not None else graph_id


def _graph_links(page: Page, graph_ids: Iterable[str]) -> str:
    return " · ".join(
        f'<a href="#graph-{e(gid)}" class="graph-link" data-graph="{e(gid)}">'
        f"{e(_graph_title(page, gid))}</a>"
        for gid in graph_ids
    )


def _alert_html(page: Page) -> str:
    view = next((v for v in page.verdicts if v.is_verdict), None)
    sev = page.alert_severity
    badge = {"high": "high", "moderate": "moderate", "ok": "healthy", "unknown": ""}.get(sev, sev)
    impact = ""
    if view is not None and view.impact > 0:
        impact = (
            f'<span class="impact">costs about {e(percent(view.impact))} of the steady state</span>'
        )
    links = ""
    if view is not None and view.graphs:
        links = f'<p class="shown">Shown in: {_graph_links(page, view.graphs)}</p>'
    if page.next_step:
        links += (
            f'<p class="next">First thing to try: <b>{e(page.next_step)}</b> · '
            '<a href="#panel" class="verdict-link" '
            f'data-verdict="{e(page.verdict)}">what to do, and how</a></p>'
        )
    also = ""
    if page.also:
        also = (
            '<p class="also">Also found: '
            + " · ".join(
                f'<a href="#panel" class="verdict-link" data-verdict="{e(vid)}">'
                f"{e(vid)} ({e(share)})</a>"
                for vid, share in page.also
            )
            + "</p>"
        )
    return (
        f'<section class="alert sev-{e(sev)}" id="alert">'
        f'<div class="alert-head"><span class="label">Verdict</span>'
        f'<a href="#panel" class="verdict-id verdict-link" data-verdict="{e(page.verdict)}">'
        f"{e(page.verdict)}</a>"
        + (f'<span class="badge {e(sev)}">{e(badge)}</span>' if badge else "")
        + impact
        + "</div>"
        + (f'<p class="exit-notice">{e(page.exit_notice)}</p>' if page.exit_notice else "")
        + (
            f'<details class="crash" open><summary>Python stacks when process {page.crash_pid} '
            f"crashed (from the fault handler)</summary><pre>{e(page.crash_trace)}</pre></details>"
            if page.crash_trace
            else ""
        )
        + f'<h1 class="alert-title">{e(page.alert_title)}</h1>'
        f'<p class="alert-text">{e(page.alert_text)}</p>'
        + links
        + also
        + _activity_html(page)
        + "</section>"
    )


ACTIVITY_COLORS = {
    "data": "#f28e2b",
    "gc": "#d62728",
    "torch": "#4e79a7",
    "python": "#edc948",
    "io": "#9c755f",
    "wait": "#bab0ac",
    "idle-loop": "#d4d4d4",
    "import": "#b07aa1",
    "compile": "#76b7b2",
    "distributed": "#59a14f",
}


def _activity_html(page: Page) -> str:
    if not page.activity:
        return ""
    total = max(sum(share for _, _, share in page.activity), 1.0)
    bars = "".join(
        f'<span class="seg" style="width:{100 * share / total:.2f}%;'
        f'background:{ACTIVITY_COLORS.get(state, "#999")}" '
        f'title="{e(label)}: {e(percent(share))}"></span>'
        for state, label, share in page.activity
    )
    legend = "".join(
        f'<span class="item"><span class="swatch" style="background:'
        f'{ACTIVITY_COLORS.get(state, "#999")}"></span>{e(label)} <b>{e(percent(share))}</b></span>'
        for state, label, share in sorted(page.activity, key=lambda a: -a[2])
    )
    return (
        '<div class="activity"><div class="activity-label">What the main thread did in the '
        f'analysed window</div><div class="bar">{bars}</div>'
        f'<div class="activity-legend">{legend}</div></div>'
    )


def _key_html(page: Page) -> str:
    if not page.graphs:
        return (
            '<p class="empty">No graph: the session holds no samples (the run may have ended '
            "before probe's first sample).</p>"
        )
    return (
        '<div class="key">'
        '<span class="item"><span class="swatch window"></span>analysed window (steady state)'
        "</span>"
        '<span class="item"><span class="swatch issue"></span>where the selected issue was seen'
        "</span>"
        '<span class="item"><span class="swatch warmup"></span>warm-up steps</span>'
        '<span class="hint">Drag to zoom into a time range (every graph follows), '
        "double-click or ⟲ to reset; click a legend entry to hide it.</span>"
        "</div>"
    )


def _graph_html(graph: Graph, div: str, page: Page) -> str:
    marked = page.verdict in graph.verdicts
    marks = "".join(
        f'<span class="mark" data-verdict="{e(v)}"{"" if v == page.verdict else " hidden"}>'
        f"shows {e(v)}</span>"
        for v in graph.verdicts
    )
    note = f'<p class="note">{e(graph.note)}</p>' if graph.note else ""
    return (
        f'<section class="graph{" marked" if marked else ""}" id="graph-{e(graph.id)}" '
        f'data-verdicts="{e(" ".join(graph.verdicts))}">'
        f"<h2>{e(graph.title)} {marks}</h2>"
        f'<p class="desc">{e(graph.description)}</p>'
        f'<div class="plot">{div}</div>'
        f"{note}</section>"
    )


def _processes_html(page: Page) -> str:
    if not page.processes:
        return ""
    rows = "".join(
        "<tr>"
        f"<td>{p.pid}</td><td>{e(p.role)}</td><td><code>{e(p.command)}</code></td>"
        f"<td>{_span(p.start, p.end)}</td><td>{p.cpu_s:.1f} s</td>"
        f"<td>{size(p.peak_rss) if p.peak_rss is not None else ''}</td><td>{e(p.exit)}</td>"
        "</tr>"
        for p in page.processes
    )
    return (
        '<section class="processes" id="processes"><details>'
        f"<summary>Processes ({page.header.processes})</summary>"
        "<table><thead><tr><th>pid</th><th>role</th><th>command</th><th>seen</th>"
        "<th>CPU</th><th>peak RSS</th><th>exit</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></details></section>"
    )


def _span(a: float | None, b: float | None) -> str:
    if a is None:
        return ""
    return f"{a:.1f}–{b:.1f} s" if b is not None else f"from {a:.1f} s"


STATUS_TEXT = {"issue": "found", "not-detected": "not detected", "insufficient-data": "not judged"}


def _panel_html(page: Page) -> str:
    groups = [
        ("Found", [v for v in page.verdicts if v.status == "issue"]),
        ("Not detected", [v for v in page.verdicts if v.status == "not-detected"]),
        ("Not judged", [v for v in page.verdicts if v.status == "insufficient-data"]),
    ]
    tabs = []
    for name, views in groups:
        if not views:
            continue
        buttons = "".join(
            f'<button type="button" role="tab" class="tab st-{e(v.status)}'
            f'{" sev-" + e(v.severity) if v.severity else ""}" data-verdict="{e(v.id)}" '
            f'aria-selected="{"true" if v.is_verdict else "false"}" '
            f'title="{e(v.title)}">{e(v.id)}</button>'
            for v in views
        )
        tabs.append(f'<div class="tab-group"><span class="group">{e(name)}</span>{buttons}</div>')
    articles = "".join(_verdict_html(v, page) for v in page.verdicts)
    return (
        '<aside class="panel" id="panel" aria-label="Recommendations">'
        '<h2 class="panel-title">What to do</h2>'
        f'<nav class="tabs" role="tablist">{"".join(tabs)}</nav>'
        f"{articles}</aside>"
    )


def _verdict_html(v: VerdictView, page: Page) -> str:
    rec = v.recommendation
    hidden = "" if v.is_verdict else " hidden"
    parts = [
        f'<article class="verdict" id="verdict-{e(v.id)}" data-verdict="{e(v.id)}" '
        f'data-graphs="{e(" ".join(v.graphs))}" role="tabpanel"{hidden}>'
    ]
    if v.status == "issue":
        sev = f" · {v.severity}" if v.severity else ""
        impact = f" · costs about {percent(v.impact)} of the steady state" if v.impact > 0 else ""
        label = "the verdict" if v.is_verdict else "also found"
        parts.append(
            f'<div class="status st-issue sev-{e(v.severity or "none")}">'
            f"{e(v.id)} · {e(label)}{e(sev)}{e(impact)}</div>"
        )
        parts.append(f'<h3 class="v-title">{e(v.title)}</h3>')
        if v.bullets:
            parts.append(
                '<ul class="bullets">' + "".join(f"<li>{e(b)}</li>" for b in v.bullets) + "</ul>"
            )
    else:
        parts.append(
            f'<div class="status st-{e(v.status)}">{e(v.id)} · {e(STATUS_TEXT[v.status])}</div>'
        )
        parts.append(f'<h3 class="v-title">{e(rec.title[:1].upper() + rec.title[1:])}</h3>')
        if v.reason:
            what = "Not detected" if v.status == "not-detected" else "Not judged"
            parts.append(f'<p class="reason"><b>{what}:</b> {e(v.reason)}</p>')
        if rec.meaning:
            parts.append(
                '<div class="meaning"><b>When present:</b> '
                + markdown.to_html(rec.meaning)
                + "</div>"
            )
    if v.graphs:
        parts.append(f'<p class="see">See: {_graph_links(page, v.graphs)}</p>')
    if v.evidence and v.status != "insufficient-data":
        rows = "".join(f"<tr><th>{e(k)}</th><td>{e(val)}</td></tr>" for k, val in v.evidence)
        parts.append(f'<h4>Evidence</h4><table class="evidence">{rows}</table>')
    more = []
    if v.status == "issue" and rec.meaning:
        more.append(f"<h4>What it means</h4>{markdown.to_html(rec.meaning)}")
    for section in ("How probe decides", "Next steps", "References"):
        body = rec.sections.get(section)
        if body:
            more.append(f"<h4>{e(section)}</h4>{markdown.to_html(body)}")
    if more:
        parts.append(
            '<details class="more"><summary>Read more: how probe decides, next steps '
            "with code, references</summary>" + "".join(more) + "</details>"
        )
    tools = rec.sections.get("Deeper tools")
    if tools:
        for placeholder, value in v.substitutions.items():
            tools = tools.replace(placeholder, value)
        parts.append(
            '<div class="tools"><h4>Deeper tools to run next</h4>'
            + markdown.to_html(tools)
            + "</div>"
        )
    if v.stacks:
        parts.append(_stacks_html(v))
    parts.append("</article>")
    return "".join(parts)


def _stacks_html(v: VerdictView) -> str:
    blocks = []
    for k, s in enumerate(v.stacks):
        frames = "".join(
            f'<li><span class="func">{e(f.func)}</span> '
            f'<span class="file" title="{e(f.file)}">'
            f"{e(os.path.basename(f.file))}:{f.line}</span></li>"
            for f in s.frames
        )
        hidden = f'<li class="hidden-frames">… {s.hidden} outer frames</li>' if s.hidden else ""
        blocks.append(
            f'<details class="stack"{" open" if k == 0 else ""}><summary>'
            f"{e(percent(s.share))} of samples · {e(s.state)} · "
            f'<span class="func">{e(s.frames[-1].func if s.frames else "?")}</span>'
            f'</summary><ol class="frames">{hidden}{frames}</ol></details>'
        )
    return (
        '<div class="stacks"><h4>Stacks most seen during the issue</h4>'
        '<p class="hint">Python stacks sampled while the issue was seen, innermost frame last.</p>'
        + "".join(blocks)
        + "</div>"
    )


def _footer_html(page: Page, session_dir: str | None) -> str:
    again = ""
    if session_dir:
        import shlex

        quoted = e(shlex.quote(session_dir))
        again = (
            f" · render again: <code>probe report {quoted}</code>"
            f" · open this run in Perfetto: <code>probe export {quoted} --format chrome-trace"
            "</code> (or speedscope, collapsed, csv)"
        )
    return f"<footer>probe {e(__version__)}{again}</footer>"


CSS = """
:root{--fg:#1d232b;--muted:#5e6875;--line:#e3e7ec;--bg:#f6f7f9;--card:#fff;--high:#c92a2a;
--moderate:#d9480f;--ok:#2b8a3e;--accent:#1f5fa8;--issue:#e03131}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,
sans-serif;color:var(--fg);background:var(--bg)}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;
font-size:12.5px}
a{color:var(--accent)}
header.top{background:#1d232b;color:#e9edf2;padding:14px 24px 10px}
.brand{font-size:13px;color:#aab4c0;letter-spacing:.02em}
.brand .logo{font-weight:700;color:#fff;font-size:16px;margin-right:4px}
.brand .session{margin-left:10px;font-family:ui-monospace,monospace;color:#8f9bab}
.command{margin:6px 0 8px;font-size:15px;overflow-wrap:anywhere}
.command code{font-size:14px;color:#fff;background:none;padding:0}
.command .prompt{color:#6c7a8c}
dl.facts{display:flex;flex-wrap:wrap;gap:4px 22px;margin:0}
.fact{display:flex;gap:6px}
.fact dt{color:#8f9bab}.fact dd{margin:0}.fact.bad dd{color:#ffa8a8;font-weight:600}
.window{margin:6px 0 0;color:#aab4c0;font-size:12.5px}
details.warnings{margin-top:6px;color:#ffd8a8}
details.crash{margin-top:8px}details.crash pre{max-height:320px;overflow:auto;font-size:12px;
background:#f6f7f9;padding:8px;border-radius:4px;white-space:pre-wrap}
section.alert{margin:16px 24px 0;padding:14px 18px;background:var(--card);border-radius:6px;
border-left:8px solid var(--moderate);box-shadow:0 1px 2px rgba(0,0,0,.06)}
section.alert.sev-high{border-left-color:var(--high)}
section.alert.sev-ok{border-left-color:var(--ok)}
section.alert.sev-unknown{border-left-color:#868e96}
.alert-head{display:flex;align-items:center;gap:10px;flex-wrap:wrap;font-size:13px}
.alert-head .label{text-transform:uppercase;letter-spacing:.06em;color:var(--muted);font-size:11px}
.verdict-id{font-family:ui-monospace,monospace;font-weight:600;text-decoration:none}
.badge{padding:1px 8px;border-radius:10px;font-size:11.5px;color:#fff;background:#868e96}
.badge.high{background:var(--high)}.badge.moderate{background:var(--moderate)}
.badge.ok{background:var(--ok)}
.impact{color:var(--muted)}
.exit-notice{margin:8px 0 0;padding:6px 10px;background:#fff4e6;border:1px solid #ffc078;
border-radius:4px;font-weight:600;overflow-wrap:anywhere}
h1.alert-title{font-size:22px;margin:6px 0 4px;line-height:1.25}
.alert-text{margin:0 0 6px;max-width:110ch}
.shown,.also,.next{margin:4px 0}
.activity{margin-top:10px;max-width:900px}
.activity-label{font-size:12px;color:var(--muted);margin-bottom:3px}
.activity .bar{display:flex;height:14px;border-radius:3px;overflow:hidden;background:#eee}
.activity .seg{display:block;height:100%}
.activity-legend{display:flex;flex-wrap:wrap;gap:2px 14px;font-size:12px;margin-top:4px}
.swatch{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;
vertical-align:-1px}
.layout{display:grid;grid-template-columns:minmax(0,1fr) minmax(340px,31%);gap:18px;
padding:16px 24px;align-items:start}
@media (max-width:1100px){.layout{grid-template-columns:minmax(0,1fr)}}
.key{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px;color:var(--muted);margin:0 0 8px}
.key .swatch.window{background:rgba(43,108,176,.15);border:1px dashed #2b6cb0}
.key .swatch.issue{background:rgba(224,49,49,.25)}
.key .swatch.warmup{background:repeating-linear-gradient(45deg,#bbb 0 2px,#eee 2px 5px)}
.key .hint{flex-basis:100%}
section.graph{background:var(--card);border-radius:6px;padding:10px 12px 6px;margin-bottom:14px;
border-left:5px solid transparent;box-shadow:0 1px 2px rgba(0,0,0,.05);scroll-margin-top:12px}
section.graph.marked{border-left-color:var(--issue)}
section.graph.flash{animation:flash 1.2s ease-out}
@keyframes flash{from{box-shadow:0 0 0 4px rgba(224,49,49,.45)}
to{box-shadow:0 1px 2px rgba(0,0,0,.05)}}
section.graph h2{font-size:15px;margin:0 0 2px;display:flex;align-items:center;gap:10px}
.mark{font-size:11.5px;font-weight:600;color:#fff;background:var(--issue);border-radius:10px;
padding:1px 8px}
section.graph:not(.marked) .mark{display:none}
.desc{margin:0 0 4px;color:var(--muted);font-size:12.5px;max-width:120ch}
.note{margin:2px 0 0;color:var(--muted);font-size:12px;font-style:italic}
.plot{min-height:60px}
.processes{background:var(--card);border-radius:6px;padding:10px 12px}
.processes summary{cursor:pointer;font-weight:600}
.processes table{border-collapse:collapse;width:100%;font-size:12.5px;margin-top:6px}
.processes th,.processes td{text-align:left;padding:3px 8px;border-bottom:1px solid var(--line);
vertical-align:top}
.processes td code{overflow-wrap:anywhere}
aside.panel{background:var(--card);border-radius:6px;padding:12px 16px;position:sticky;top:10px;
max-height:calc(100vh - 20px);overflow:auto;box-shadow:0 1px 2px rgba(0,0,0,.05)}
@media (max-width:1100px){aside.panel{position:static;max-height:none}}
.panel-title{font-size:13px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);
margin:0 0 6px}
.tabs{display:flex;flex-direction:column;gap:4px;margin-bottom:10px}
.tab-group{display:flex;flex-wrap:wrap;gap:4px;align-items:center}
.tab-group .group{font-size:11px;color:var(--muted);width:82px}
.tab{font:12px ui-monospace,monospace;border:1px solid var(--line);background:#f8f9fa;
border-radius:12px;padding:2px 9px;cursor:pointer;color:var(--fg)}
.tab.st-issue{border-color:#f1a5a5;background:#fff0f0}
.tab.st-issue.sev-high{border-color:var(--high)}
.tab.st-insufficient-data{color:var(--muted);border-style:dashed}
.tab[aria-selected=true]{background:var(--fg);color:#fff;border-color:var(--fg)}
.status{font-size:12px;color:var(--muted);font-family:ui-monospace,monospace}
.status.st-issue{color:var(--moderate)}.status.sev-high{color:var(--high)}
.v-title{font-size:17px;margin:4px 0 8px;line-height:1.3}
.bullets{padding-left:18px;margin:0 0 8px}.bullets li{margin-bottom:4px}
.reason{margin:0 0 6px}.meaning p{display:inline}.meaning{margin-bottom:8px}
.see{margin:4px 0 8px;font-size:12.5px}
h4{font-size:13px;margin:12px 0 4px}
table.evidence{border-collapse:collapse;font-size:12.5px;width:100%}
table.evidence th{text-align:left;font-weight:normal;color:var(--muted);padding:2px 8px 2px 0;
width:45%;vertical-align:top}
table.evidence td{padding:2px 0;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
details.more{margin-top:10px;border-top:1px solid var(--line);padding-top:6px}
details.more summary,details.stack summary{cursor:pointer;color:var(--accent)}
pre{background:#f3f5f7;border:1px solid var(--line);border-radius:4px;padding:8px;overflow:auto}
li pre{margin:6px 0}
:not(pre)>code{background:#f1f3f5;border-radius:3px;padding:0 3px}
.tools{margin-top:8px;background:#f4f8fd;border-radius:4px;padding:2px 10px 4px}
.stacks .hint{font-size:12px;color:var(--muted);margin:0 0 4px}
details.stack{margin:4px 0}
ol.frames{list-style:none;padding-left:10px;margin:4px 0;font-size:12px;
font-family:ui-monospace,monospace}
ol.frames li{overflow-wrap:anywhere}
ol.frames li:last-child{font-weight:700}
.frames .file{color:var(--muted)}
.hidden-frames{color:var(--muted)}
.empty{color:var(--muted)}
footer{padding:8px 24px 24px;color:var(--muted);font-size:12px}
""".replace("\n", "")

PAGE_JS = """
(function(){
  function $$(sel){return Array.prototype.slice.call(document.querySelectorAll(sel));}
  function toggleWindows(id){
    var docs=(window.Bokeh&&window.Bokeh.documents)||[];
    docs.forEach(function(doc){
      doc.all_models.forEach(function(m){
        if(typeof m.name==="string"&&m.name.indexOf("windows:")===0){
          m.visible=m.name.split(":")[1]===id;
        }
      });
    });
  }
  function select(id){
    $$(".tab").forEach(function(t){t.setAttribute("aria-selected",String(t.dataset.verdict===id));});
    $$("article.verdict").forEach(function(a){a.hidden=a.dataset.verdict!==id;});
    var article=document.getElementById("verdict-"+id);
    var graphs=article?(article.dataset.graphs||"").split(" "):[];
    var isIssue=!!(article&&article.querySelector(".status.st-issue"));
    $$("section.graph").forEach(function(g){
      var shows=isIssue&&(g.dataset.verdicts||"").split(" ").indexOf(id)>=0;
      g.classList.toggle("marked",shows);
      $$("#"+g.id+" .mark").forEach(function(m){m.hidden=m.dataset.verdict!==id;});
    });
    toggleWindows(isIssue?id:"");
  }
  document.addEventListener("click",function(ev){
    var t=ev.target.closest("[data-verdict].tab,.verdict-link");
    if(t){ev.preventDefault();select(t.dataset.verdict);
      if(t.classList.contains("verdict-link")){document.getElementById("panel").scrollIntoView({behavior:"smooth"});}
      return;}
    var g=ev.target.closest(".graph-link");
    if(g){ev.preventDefault();var s=document.getElementById("graph-"+g.dataset.graph);
      if(s){s.scrollIntoView({behavior:"smooth",block:"start"});s.classList.remove("flash");
        void s.offsetWidth;s.classList.add("flash");}}
  });
})();
"""

__all__ = ["HtmlRenderer", "render"]
