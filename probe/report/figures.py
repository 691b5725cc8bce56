"""The page's graphs as Bokeh figures: one figure per ``model.Graph``, all on one x range.

``embed(page)`` makes the figures and returns what the page template places: Bokeh's inline
JavaScript (only the core bundle: no widgets, no MathJax), the script that builds the documents,
and one ``<div>`` per graph id. Panning or zooming one figure moves them all.

Looks are chosen here, by the style names the model uses (``Series.style``, ``Rule.style``, lane
styles). The only untrusted text that reaches Bokeh (Gantt lane names, which hold thread and span
names) goes in as ``PlainText``, so that Bokeh parses it neither as HTML nor as TeX; legend labels
and tooltips are drawn as text on the canvas.

A figure is made in stages, and the order in which they add models is the order of the page's
Bokeh documents: the frame (ranges, axes), the shading (analysed window, bands, issue windows),
the glyphs (phase ribbon, lanes, series, rules), the hover tool, the legend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probe.report.model import Bands, Graph, Page, Series, VerdictView

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


@dataclass
class Embedded:
    """What the page template places: Bokeh's JavaScript, its documents' script, a div a graph."""

    js: list[str] = field(default_factory=list)  # the bundle's scripts, inline
    script: str = ""  # <script> elements that build the figures into the divs
    divs: dict[str, str] = field(default_factory=dict)  # graph id -> <div> markup


def embed(page: Page) -> Embedded:
    """The figures of every graph on the page, ready to place (nothing for a page without
    graphs: no Bokeh JavaScript either)."""
    from bokeh.embed import components
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    from bokeh.models import Range1d
    from bokeh.resources import INLINE

    pad = max(page.duration * 0.01, 0.05)
    x_range = Range1d(start=0.0, end=page.duration, bounds=(-pad, page.duration + pad))
    figures = {g.id: figure_for(g, page, x_range) for g in page.graphs}
    if not figures:
        return Embedded()
    script, div_list = components(list(figures.values()))
    bundle = bundle_for_objs_and_resources(list(figures.values()), INLINE)
    return Embedded(
        js=[inline_script(code) for code in bundle.js_raw],
        script=script,
        divs=dict(zip(figures, div_list)),
    )


def inline_script(code: str) -> str:
    """Script text safe inside a ``<script>`` element: Bokeh's bundle never contains
    "</script", but a closing tag inside would end the element."""
    return code.replace("</script", "<\\/script")


def figure_for(graph: Graph, page: Page, x_range: Any) -> Any:
    """One graph's figure, sharing ``x_range`` with the others."""
    fig = _frame(graph, x_range)
    items = _shade(fig, graph, page)
    hover = _glyphs(fig, graph, items)
    if hover:
        _hover(fig, hover, graph.y_label)
    if items:
        _legend(fig, items)
    return fig


def _frame(graph: Graph, x_range: Any) -> Any:
    """The empty figure: its size, y range and axes, its tools."""
    from bokeh.models import Range1d
    from bokeh.plotting import figure

    n_lanes = len(graph.lanes.names) if graph.lanes is not None else 0
    if graph.lanes is not None:
        height = max(120, 34 + 26 * n_lanes + 60)
        y_range = Range1d(start=n_lanes - 0.5, end=-0.5)
    elif graph.y_log:
        height = GRAPH_HEIGHT
        low = _log_floor(graph.series)
        y_range = Range1d(start=low, end=max(graph.y_max, low * 10) * 1.5)
    else:
        height = GRAPH_HEIGHT
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
    return fig


def _shade(fig: Any, graph: Graph, page: Page) -> list[Any]:
    """Under the data: the analysed window and its edges, the phase ribbon (CPU graph), the
    graph's bands (warm-up), and where each issue that this graph shows was seen (only the
    selected verdict's are visible). Returns the ribbon's legend entries."""
    from bokeh.models.annotations import BoxAnnotation, Span

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
    return items


def _glyphs(fig: Any, graph: Graph, items: list[Any]) -> list[Any]:
    """The data: the Gantt's lanes, the series, the reference rules; their legend entries go
    into ``items``. Returns the renderers the hover tool reads (lines and points)."""
    from bokeh.models import FixedTicker, PlainText
    from bokeh.models.annotations import LegendItem, Span

    if graph.lanes is not None:
        items.extend(_lanes(fig, graph))
        fig.yaxis.ticker = FixedTicker(ticks=list(range(len(graph.lanes.names))))
        fig.yaxis.major_label_overrides = {
            i: PlainText(text=name) for i, name in enumerate(graph.lanes.names)
        }
        fig.ygrid.grid_line_color = None
        fig.yaxis.major_tick_line_color = None
        fig.yaxis.major_label_text_font_size = "11px"
    hover = []
    for s in graph.series:
        renderer = _series(fig, s)
        if s.kind != "area":
            hover.append(renderer)
        items.append(LegendItem(label=s.label, renderers=[renderer]))
    for rule in graph.rules:
        look: dict[str, Any] = {
            "line_color": COLORS.get(rule.style, "#555555"),
            "line_dash": "dashed" if rule.style == "limit" else "dotted",
            "line_width": 1.5,
        }
        fig.add_layout(Span(location=rule.y, dimension="width", **look))
        # A legend entry for the rule: an invisible glyph carrying its look.
        ghost: Any = fig.line([0.0], [rule.y], **look)
        items.append(LegendItem(label=rule.label, renderers=[ghost]))
    return hover


def _hover(fig: Any, renderers: list[Any], y_label: str) -> None:
    from bokeh.models import HoverTool

    fig.add_tools(
        HoverTool(
            renderers=renderers,
            tooltips=[
                ("", "$name"),
                ("time", "@x{0.00} s"),
                ("value", "@y{0.[000]} " + _unit_text(y_label)),
            ],
            mode="mouse",
        )
    )


def _legend(fig: Any, items: list[Any]) -> None:
    """One legend above the plot, in as many rows as its labels need (Bokeh does not wrap)."""
    from bokeh.models.annotations import Legend

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
    width = sum(34 + 6.2 * len(str(item.label.value)) for item in items)
    rows = math.ceil(width / LEGEND_ROW_PX)
    if rows > 1:
        legend.nrows = rows
    fig.add_layout(legend, "above")


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
        return fig.scatter("x", "y", source=source, size=4, color=color, alpha=0.7, name=s.label)
    return fig.line(
        "x",
        "y",
        source=source,
        line_color=color,
        line_width=1.6 if s.style != "machine" else 1.2,
        line_dash=DASHES.get(s.style, "solid"),
        name=s.label,
    )


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


__all__ = ["Embedded", "embed", "figure_for", "inline_script"]
