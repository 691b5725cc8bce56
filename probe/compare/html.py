"""The comparison as one self-contained HTML page, in the report's style.

From the top: the two sides (commands, runs), the answer with its interval, the verdict change
and the issues' moves; the measures as a forest plot of their 95 % intervals and as a table; the
two sides' step-time distributions overlaid, with each run's median; the runs' timelines (step
time, memory, CPU) aligned on the start of their steady states; each run in a table.

Bokeh's JavaScript is inlined (the page opens offline, like the report); the page's markup is a
Jinja2 template with autoescaping, so every string from the sessions (commands, paths) is
escaped, and Bokeh gets those strings as data only.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from probe import __version__
from probe.compare import words
from probe.compare.compare import Comparison, Row, SideRuns
from probe.compare.measures import RATIO, RunData, describe_unit
from probe.compare.render import CompareOutputs, ComparisonRenderer

FloatArray = npt.NDArray[np.float64]

SIDE_COLORS = {"A": "#1f5fa8", "B": "#f28e2b"}
VERDICT_COLORS = {"better": "#2b8a3e", "worse": "#c92a2a", "none": "#5e6875"}
FOREST_LIMIT = 1.0  # the forest plot's axis: -100 % to +100 % of A's value; beyond, an arrow
TIMELINE_BUCKETS = 300  # per run and graph, at most: the median of each bucket of steps or bins
TIMELINE_PER_BUCKET = 5  # at least this many steps or bins a bucket: a level, not each step
NOT_RELATIVE = ("rss_slope",)  # measures no relative change describes (they change sign)
RELATIVE_MIN = 0.1  # a difference is drawn relative to A's value when A is this share of B's
HIST_BINS = 60
TOOLS = "xpan,xbox_zoom,xwheel_zoom,reset,save"


@dataclass
class ForestRow:
    title: str
    change: float | None  # relative to A's value
    low: float | None
    high: float | None
    text: str
    color: str


def render(comparison: Comparison) -> str:
    """The whole page as one HTML document."""
    import jinja2
    from bokeh.embed import components
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    from bokeh.resources import INLINE
    from markupsafe import Markup

    figures = {
        "forest": _forest(comparison),
        "distribution": _distribution(comparison),
        **_timelines(comparison),
    }
    figures = {k: v for k, v in figures.items() if v is not None}
    script, div_list = components(list(figures.values()))
    divs = dict(zip(figures, div_list))
    bundle = bundle_for_objs_and_resources(list(figures.values()), INLINE)
    js = "\n".join(code.replace("</script", "<\\/script") for code in bundle.js_raw)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(
        resources.files("probe.compare").joinpath("templates/compare.html").read_text("utf-8")
    )
    c = comparison
    primary = c.primary
    tone = "none"
    if primary is not None and primary.better is not None:
        tone = "better" if primary.better else "worse"
    return template.render(
        version=__version__,
        sides=[_side_view(s) for s in (c.a, c.b)],
        design=words.design(c),
        headline=words.headline(c),
        tone=tone,
        result=primary.result if primary is not None else "",
        verdict_change=words.verdict_change(c),
        issues=[words.issue_change(i, c) for i in c.issues],
        rows=[_row_view(r) for r in c.rows],
        forest_left_out=forest_rows(c)[1],
        runs=[_run_view(s.label, r) for s in (c.a, c.b) for r in s.runs],
        warnings=c.warnings,
        unit=describe_unit(c.unit) if c.unit else "",
        bokeh_js=Markup(js),
        bokeh_script=Markup(script),
        divs_markup={k: Markup(v) for k, v in divs.items()},
        colors=SIDE_COLORS,
    )


def _side_view(side: SideRuns) -> dict[str, Any]:
    return {
        "label": side.label,
        "path": side.path,
        "commands": side.commands,
        "runs": len(side.runs),
        "verdict": words.side_verdict(side),
    }


def _row_view(row: Row) -> dict[str, Any]:
    better = row.better
    return {
        "title": row.measure.title,
        "a": words.value(row.measure, row.a),
        "b": words.value(row.measure, row.b),
        "change": words.change(row.measure, row.change) if row.change is not None else "",
        "interval": words.interval(row),
        "smallest": words.smallest(row),
        "p": words.p_value(row.p_value),
        "verdict": words.row_verdict(row),
        "tone": "none" if better is None else ("better" if better else "worse"),
        "note": row.note,
    }


def _run_view(label: str, run: RunData) -> dict[str, Any]:
    median = float(np.median(run.step_dur)) if run.steps else None
    return {
        "side": label,
        "name": run.name,
        "path": run.path,
        "verdict": run.category,
        "steps": run.steps,
        "median": words.duration(median) if median is not None else "",
        "window": f"{run.window[0]:.1f}-{run.window[1]:.1f} s",
        "exit": "" if run.exit_status in (0, None) else str(run.exit_status),
    }


# -- the forest plot -----------------------------------------------------------------------------


def forest_rows(comparison: Comparison) -> tuple[list[ForestRow], list[str]]:
    """Each measure's change and interval relative to A's value (B / A - 1), which puts them on
    one axis, and the titles of the rows that cannot be drawn so: a difference whose A is zero or
    a small fraction of B's (GC share 0 % -> 0.5 %: no relative change says anything), a slope
    (which can change sign), a row without a change."""
    out = []
    left_out = []
    for row in comparison.rows:
        if row.change is None or row.measure.id in NOT_RELATIVE:
            left_out.append(row.measure.title)
            continue
        if row.measure.scale == RATIO:
            scale = 1.0
        elif row.a is not None and abs(row.a) > RELATIVE_MIN * abs(row.b or 0.0):
            scale = 1.0 / abs(row.a)
        else:
            left_out.append(row.measure.title)
            continue
        better = row.better
        tone = "none" if better is None else ("better" if better else "worse")
        text = words.change(row.measure, row.change)
        if row.low is not None:
            text += f" ({words.interval(row)})"
        out.append(
            ForestRow(
                title=row.measure.title,
                change=row.change * scale,
                low=row.low * scale if row.low is not None else None,
                high=row.high * scale if row.high is not None else None,
                text=f"{text} {row.confidence}".rstrip(),
                color=VERDICT_COLORS[tone],
            )
        )
    return out, left_out


def _forest(comparison: Comparison) -> Any:
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d
    from bokeh.models.annotations import Span
    from bokeh.plotting import figure

    rows, _ = forest_rows(comparison)
    if not rows:
        return None
    titles = [r.title for r in rows][::-1]
    lim = FOREST_LIMIT

    def clip(x: float | None) -> float:
        return float(np.clip(x if x is not None else 0.0, -lim, lim))

    data = {
        "y": [r.title for r in rows],
        "x": [clip(r.change) for r in rows],
        "low": [clip(r.low if r.low is not None else r.change) for r in rows],
        "high": [clip(r.high if r.high is not None else r.change) for r in rows],
        "color": [r.color for r in rows],
        "text": [r.text for r in rows],
    }
    fig = figure(
        y_range=FactorRange(factors=titles),
        x_range=Range1d(start=-lim * 1.05, end=lim * 1.05),
        height=46 + 30 * len(rows),
        sizing_mode="stretch_width",
        tools="",
        toolbar_location=None,
        min_border_left=200,
        output_backend="canvas",
    )
    source = ColumnDataSource(data)
    fig.segment("low", "y", "high", "y", source=source, line_color="color", line_width=3)
    dots = fig.scatter("x", "y", source=source, size=9, color="color")
    fig.add_layout(Span(location=0, dimension="height", line_color="#1d232b", line_width=1))
    fig.xaxis.axis_label = "change from A (B / A - 1; differences relative to A's value)"
    fig.xaxis.axis_label_text_font_style = "normal"
    fig.xaxis[0].formatter = _percent_formatter()
    fig.ygrid.grid_line_color = None
    fig.outline_line_color = None
    fig.add_tools(HoverTool(renderers=[dots], tooltips=[("", "@y"), ("change", "@text")]))
    fig.toolbar.logo = None
    return fig


def _percent_formatter() -> Any:
    from bokeh.models import CustomJSTickFormatter

    return CustomJSTickFormatter(
        code="return (tick > 0 ? '+' : '') + Math.round(tick * 100) + ' %';"
    )


# -- the distributions ---------------------------------------------------------------------------


def step_histograms(
    comparison: Comparison, bins: int = HIST_BINS
) -> tuple[FloatArray, dict[str, FloatArray]] | None:
    """Shared log-spaced bin edges and, per side, the share of its steps in each bin (each run
    weighs the same, whatever its length)."""
    sides = {s.label: [r.step_dur for r in s.runs if r.steps] for s in (comparison.a, comparison.b)}
    if not all(sides.values()):
        return None
    pooled = np.concatenate([d for runs in sides.values() for d in runs])
    pooled = pooled[pooled > 0]
    if not len(pooled):
        return None
    lo, hi = np.quantile(pooled, [0.005, 0.995])
    if hi <= lo:
        lo, hi = lo * 0.9, hi * 1.1
    edges = np.geomspace(lo, hi, bins + 1)
    shares = {}
    for label, runs in sides.items():
        total = np.zeros(bins)
        for d in runs:
            counts, _ = np.histogram(np.clip(d, lo, hi), edges)
            total += counts / max(len(d), 1)
        shares[label] = total / len(runs)
    return edges, shares


def _distribution(comparison: Comparison) -> Any:
    from bokeh.models import ColumnDataSource, DataRange1d, HoverTool
    from bokeh.models.annotations import Legend, LegendItem, Span
    from bokeh.plotting import figure

    hist = step_histograms(comparison)
    if hist is None:
        return None
    edges, shares = hist
    fig = figure(
        height=260,
        sizing_mode="stretch_width",
        x_axis_type="log",
        y_range=DataRange1d(start=0),
        tools=TOOLS,
        active_drag="xbox_zoom",
        toolbar_location="right",
        output_backend="canvas",
    )
    items = []
    for side in (comparison.a, comparison.b):
        color = SIDE_COLORS[side.label]
        source = ColumnDataSource(
            {
                "left": edges[:-1] * 1000,
                "right": edges[1:] * 1000,
                "top": shares[side.label] * 100,
            }
        )
        quads = fig.quad(
            left="left",
            right="right",
            bottom=0,
            top="top",
            source=source,
            fill_color=color,
            fill_alpha=0.35,
            line_color=color,
            line_alpha=0.8,
        )
        fig.add_tools(
            HoverTool(
                renderers=[quads],
                tooltips=[
                    ("", side.label),
                    ("step time", "@left{0.[00]}-@right{0.[00]} ms"),
                    ("steps", "@top{0.0} %"),
                ],
            )
        )
        medians = [float(np.median(r.step_dur)) * 1000 for r in side.runs if r.steps]
        rug = fig.scatter(
            medians,
            [0.0] * len(medians),
            marker="triangle",
            size=10,
            color=color,
            line_color="#1d232b",
        )
        overall = float(np.exp(np.mean(np.log(medians)))) if medians else None
        if overall is not None:
            fig.add_layout(
                Span(location=overall, dimension="height", line_color=color, line_width=2)
            )
        n = len(side.runs)
        run_word = "runs" if n > 1 else "run"
        quad_list: list[Any] = [quads]
        rug_list: list[Any] = [rug]
        items.append(LegendItem(label=f"{side.label} ({n} {run_word})", renderers=quad_list))
        items.append(LegendItem(label=f"{side.label}: each run's median", renderers=rug_list))
    fig.xaxis.axis_label = "step time (ms, log scale)"
    fig.yaxis.axis_label = "share of steps (%)"
    for axis in (fig.xaxis, fig.yaxis):
        axis.axis_label_text_font_style = "normal"
    fig.add_layout(Legend(items=items, location="top_right", label_text_font_size="11px"), "right")
    fig.outline_line_color = None
    fig.toolbar.logo = None
    return fig


# -- the timelines -------------------------------------------------------------------------------


def bucket_medians(
    t: FloatArray, y: FloatArray, buckets: int = TIMELINE_BUCKETS
) -> tuple[FloatArray, FloatArray]:
    """The median of ``y`` in each of at most ``buckets`` consecutive equal-count groups, at the
    groups' median time: a run's level over time, whatever its length."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    if len(t) <= buckets:
        return t, y
    edges = np.linspace(0, len(t), buckets + 1).astype(np.int64)
    tm = np.array([np.median(t[a:b]) for a, b in zip(edges[:-1], edges[1:])])
    ym = np.array([np.median(y[a:b]) for a, b in zip(edges[:-1], edges[1:])])
    return tm, ym


def _timelines(comparison: Comparison) -> dict[str, Any]:
    from bokeh.models import ColumnDataSource, DataRange1d, HoverTool, Range1d
    from bokeh.models.annotations import Legend, LegendItem
    from bokeh.plotting import figure

    longest = max(
        (r.window[1] - r.window[0] for s in (comparison.a, comparison.b) for r in s.runs),
        default=1.0,
    )
    x_range = Range1d(start=0.0, end=max(longest, 1e-3), bounds=(0.0, max(longest, 1e-3)))
    graphs: dict[str, Any] = {}
    specs: list[tuple[str, str, float, Any]] = [
        ("steps", "step time (ms)", 1000.0, lambda r: (r.step_end, r.step_dur)),
        ("memory", "RSS, all processes (MB)", 1 / 2**20, lambda r: (r.bin_t, r.rss_total)),
        ("cpu", "CPU, all processes (cores)", 1.0, lambda r: (r.bin_t, r.cpu_total)),
    ]
    for key, label, factor, series in specs:
        has_data = [len(series(r)[0]) > 0 for s in (comparison.a, comparison.b) for r in s.runs]
        if not any(has_data):
            continue
        fig = figure(
            height=220,
            sizing_mode="stretch_width",
            x_range=x_range,
            y_range=DataRange1d() if key == "steps" else DataRange1d(start=0),
            tools=TOOLS,
            active_drag="xbox_zoom",
            toolbar_location="right",
            output_backend="canvas",
        )
        items = []
        for side in (comparison.a, comparison.b):
            renderers: list[Any] = []
            for run in side.runs:
                t, y = series(run)
                if not len(t):
                    continue
                tm, ym = bucket_medians(
                    t, y, min(TIMELINE_BUCKETS, max(len(t) // TIMELINE_PER_BUCKET, 1))
                )
                source = ColumnDataSource(
                    {
                        "x": tm.astype(np.float32),
                        "y": (ym * factor).astype(np.float32),
                        "run": [f"{side.label}/{run.name}"] * len(tm),
                    }
                )
                renderers.append(
                    fig.line(
                        "x",
                        "y",
                        source=source,
                        line_color=SIDE_COLORS[side.label],
                        line_width=1.6,
                        line_alpha=0.75,
                    )
                )
            if renderers:
                fig.add_tools(
                    HoverTool(
                        renderers=renderers,
                        tooltips=[("", "@run"), ("time", "@x{0.0} s"), ("value", "@y{0.[000]}")],
                    )
                )
                items.append(LegendItem(label=side.label, renderers=renderers))
        fig.xaxis.axis_label = "seconds since the steady state began"
        fig.yaxis.axis_label = label
        for axis in (fig.xaxis, fig.yaxis):
            axis.axis_label_text_font_style = "normal"
        fig.add_layout(
            Legend(items=items, location="top_left", orientation="horizontal", border_line_alpha=0),
            "above",
        )
        fig.outline_line_color = None
        fig.toolbar.logo = None
        graphs[f"timeline-{key}"] = fig
    return graphs


class HtmlRenderer(ComparisonRenderer):
    name = "html"
    suffix = ".html"

    def render(self, comparison: Comparison, outputs: CompareOutputs) -> str:
        return render(comparison)


__all__ = ["HtmlRenderer", "bucket_medians", "forest_rows", "render", "step_histograms"]
