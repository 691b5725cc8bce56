"""The HTML page of a multi-node job (probe.analysis.multinode): one page for all its nodes.

What it shows, on the job's aligned time axis (seconds since the reference session's start):
the job and how its clocks were aligned; the verdicts with where they hold; each rank's step
time; a rank x step heat map of the time each step spent blocked in collectives (the straggler
is the row that waits least, a slow node a block of such rows); each node's CPU and memory; the
ranks grouped by node in a table. Like the one-session report it opens from disk with no
network (Bokeh's core bundle inlined, no external URL), and every string from the sessions is
escaped: with ``html.escape`` in the page; in Bokeh, labels drop ``$`` (no TeX), and hover
tooltips show values and renderer names as text.

Kept apart from probe/report/html.py, whose page model is that of one session.
"""

from __future__ import annotations

import html
import shlex
from typing import Any

import numpy as np
import numpy.typing as npt

from probe import __version__
from probe.analysis.multinode import JobDiagnosis, RankResult, SessionResult
from probe.units import percent

FloatArray = npt.NDArray[np.float64]

e = html.escape

NODE_COLORS = (
    "#1f5fa8",
    "#d62728",
    "#2ca02c",
    "#f28e2b",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)
MAX_LINE_POINTS = 1500  # per rank on the step-time graph (block medians beyond)
MAX_HEAT_COLUMNS = 600  # steps of the heat map (block means beyond)
TOOLS = "xpan,xbox_zoom,xwheel_zoom,reset,save"
WIDTH = 1000


def render_job(d: JobDiagnosis, *, again: list[str] | None = None) -> str:
    """The whole page as one HTML document."""
    from bokeh.embed import components
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    from bokeh.resources import INLINE

    rows = _rank_rows(d)
    figures: dict[str, Any] = {}
    x_range = _x_range(d)
    steps = _step_figure(d, rows, x_range)
    if steps is not None:
        figures["steps"] = steps
    heat = _heat_figure(rows)
    if heat is not None:
        figures["wait"] = heat
    figures["cpu"] = _host_figure(d, x_range, "cpu")
    figures["memory"] = _host_figure(d, x_range, "memory")
    script, div_list = components(list(figures.values()))
    divs = dict(zip(figures, div_list))
    bundle = bundle_for_objs_and_resources(list(figures.values()), INLINE)
    # Bokeh's bundle never holds "</script", but a closing tag inside would end the element
    codes = [code.replace("</script", "<\\/script") for code in bundle.js_raw]
    js = "\n".join(f'<script type="text/javascript">\n{code}\n</script>' for code in codes)
    return _page(d, rows, divs, js, script, again or [])


# -- data -----------------------------------------------------------------------------------------


def _rank_rows(d: JobDiagnosis) -> list[tuple[SessionResult, RankResult]]:
    """Every rank with its session, grouped by node (in the job's node order), then by rank."""
    order = {node: i for i, node in enumerate(d.nodes)}
    pairs = [(s, k) for s in d.sessions for k in s.ranks]
    return sorted(pairs, key=lambda p: (order.get(p[0].node, 0), p[1].rank))


def _node_color(d: JobDiagnosis, node: str) -> str:
    return NODE_COLORS[d.nodes.index(node) % len(NODE_COLORS)] if node in d.nodes else "#555"


def _label(text: str) -> str:
    """A label Bokeh draws (a legend item, an axis tick): never read as TeX."""
    return text.replace("$", "")


def _aligned(s: SessionResult, local: FloatArray) -> FloatArray:
    if s.clock is None:
        return local
    return s.clock.aligned(local)


def _x_range(d: JobDiagnosis) -> Any:
    from bokeh.models import Range1d

    starts = [float(_aligned(s, np.array([0.0]))[0]) for s in d.sessions]
    ends = [float(_aligned(s, np.array([s.duration_s]))[0]) for s in d.sessions]
    lo, hi = min(starts, default=0.0), max(ends, default=1.0)
    hi = max(hi, lo + 1e-3)
    pad = max((hi - lo) * 0.01, 0.05)
    return Range1d(start=lo, end=hi, bounds=(lo - pad, hi + pad))


def _blocks(n: int, most: int) -> int:
    return max(1, int(np.ceil(n / most)))


def _step_line(s: SessionResult, k: RankResult) -> tuple[FloatArray, FloatArray]:
    """One rank's steps on the job's axis: (end, duration in ms), block medians beyond
    ``MAX_LINE_POINTS``."""
    t = _aligned(s, k.step_end)
    ms = (k.step_end - k.step_start) * 1e3
    block = _blocks(len(t), MAX_LINE_POINTS)
    if block > 1:
        n = len(t) // block * block
        t = t[:n].reshape(-1, block).mean(axis=1)
        ms = np.median(ms[:n].reshape(-1, block), axis=1)
    return np.asarray(t, dtype=np.float64), np.asarray(ms, dtype=np.float64)


def heat_matrix(
    ranks: list[RankResult],
) -> tuple[FloatArray, int, int] | None:
    """Collective wait per step, ms: one row per rank (in the given order), one column per block
    of the job's step indices (at most ``MAX_HEAT_COLUMNS``, block means); nan where unknown.
    Returns (matrix, first step index, steps per column), or None without indexed steps."""
    known = [k.step_index[k.step_index >= 0] for k in ranks]
    if not any(len(i) for i in known):
        return None
    first = int(min(int(i.min()) for i in known if len(i)))
    last = int(max(int(i.max()) for i in known if len(i)))
    block = _blocks(last - first + 1, MAX_HEAT_COLUMNS)
    cols = (last - first) // block + 1
    total = np.zeros((len(ranks), cols))
    count = np.zeros((len(ranks), cols))
    for row, k in enumerate(ranks):
        ok = (k.step_index >= 0) & np.isfinite(k.step_wait)
        col = (k.step_index[ok] - first) // block
        np.add.at(total[row], col, k.step_wait[ok] * 1e3)
        np.add.at(count[row], col, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(count > 0, total / np.maximum(count, 1.0), np.nan)
    return matrix, first, block


# -- figures --------------------------------------------------------------------------------------


def _figure(title: str, x_range: Any, y_label: str, height: int = 260) -> Any:
    from bokeh.plotting import figure

    fig = figure(
        title=title,
        x_range=x_range,
        width=WIDTH,
        height=height,
        tools=TOOLS,
        toolbar_location="above",
        sizing_mode="stretch_width",
    )
    fig.xaxis.axis_label = "seconds on the job's aligned axis"
    fig.yaxis.axis_label = y_label
    return fig


def _step_figure(
    d: JobDiagnosis, rows: list[tuple[SessionResult, RankResult]], x_range: Any
) -> Any | None:
    from bokeh.models import ColumnDataSource, HoverTool

    if not any(len(k.step_end) for _, k in rows):
        return None
    fig = _figure("Step time per rank", x_range, "ms per step")
    renderers = []
    legend_done: set[str] = set()
    for s, k in rows:
        t, ms = _step_line(s, k)
        if not len(t):
            continue
        source = ColumnDataSource({"t": np.round(t, 3), "ms": np.round(ms, 2)})
        kwargs: dict[str, Any] = {}
        if s.node not in legend_done:
            kwargs["legend_label"] = _label(s.node)
            legend_done.add(s.node)
        renderers.append(
            fig.line(
                "t",
                "ms",
                source=source,
                color=_node_color(d, s.node),
                alpha=0.8,
                width=1.2,
                name=f"rank {k.rank} on {s.node}, {s.host}",
                **kwargs,
            )
        )
    fig.add_tools(
        HoverTool(
            renderers=renderers,
            tooltips=[
                ("", "$name"),
                ("t", "@t{0.00} s"),
                ("step", "@ms{0.0} ms"),
            ],
        )
    )
    fig.legend.location = "top_left"
    fig.legend.click_policy = "hide"
    return fig


def _heat_figure(rows: list[tuple[SessionResult, RankResult]]) -> Any | None:
    from bokeh.models import FixedTicker, LinearColorMapper, Range1d
    from bokeh.models.annotations import ColorBar
    from bokeh.palettes import Viridis256
    from bokeh.plotting import figure

    made = heat_matrix([k for _, k in rows])
    if made is None:
        return None
    matrix, first, block = made
    finite = matrix[np.isfinite(matrix)]
    high = float(np.percentile(finite, 98)) if len(finite) else 1.0
    mapper = LinearColorMapper(
        palette=list(reversed(Viridis256)), low=0.0, high=max(high, 1e-3), nan_color="#eeeeee"
    )
    n_rows, n_cols = matrix.shape
    x0, width = float(first), float(n_cols * block)
    fig = figure(
        title="Collective wait per step (ms): rank x step",
        x_range=Range1d(start=x0, end=x0 + width),
        y_range=Range1d(start=-0.5, end=n_rows - 0.5),
        width=WIDTH,
        height=max(160, min(600, 60 + 22 * n_rows)),
        tools="xpan,xbox_zoom,xwheel_zoom,reset,save,hover",
        tooltips=[("step", "$x{0}"), ("wait", "@image{0.0} ms")],
        toolbar_location="above",
        sizing_mode="stretch_width",
    )
    # image rows go bottom-up: the first rank at the top
    fig.image(image=[matrix[::-1]], x=x0, y=-0.5, dw=width, dh=float(n_rows), color_mapper=mapper)
    fig.yaxis.ticker = FixedTicker(ticks=list(range(n_rows)))
    fig.yaxis.major_label_overrides = {
        n_rows - 1 - i: _label(f"rank {k.rank} ({s.node})") for i, (s, k) in enumerate(rows)
    }
    fig.xaxis.axis_label = "step" + (f" (each column {block} steps)" if block > 1 else "")
    fig.add_layout(ColorBar(color_mapper=mapper, title="ms"), "right")
    return fig


def _host_figure(d: JobDiagnosis, x_range: Any, what: str) -> Any:
    from bokeh.models import ColumnDataSource, HoverTool

    title = "CPU per node (cores)" if what == "cpu" else "Memory per node (GB)"
    fig = _figure(title, x_range, "cores" if what == "cpu" else "GB")
    renderers = []
    firsts: dict[str, SessionResult] = {}
    for s in d.sessions:
        firsts.setdefault(s.node, s)
    for node, s in firsts.items():
        h = s.hosts
        t = _aligned(s, h.t)
        color = _node_color(d, node)
        if what == "cpu":
            lines = [
                (h.job_cores, f"{node}: the job", "solid"),
                (h.busy_cores, f"{node}: whole host", "dashed"),
            ]
        else:
            lines = [(h.job_rss / 1e9, f"{node}: the job", "solid")]
            if h.memory_total:
                lines.append(
                    ((h.memory_total - h.mem_available) / 1e9, f"{node}: host in use", "dashed")
                )
        for y, label, dash in lines:
            y = np.where(np.isfinite(y), y, np.nan)
            source = ColumnDataSource({"t": np.round(t, 3), "y": np.round(y, 4)})
            renderers.append(
                fig.line(
                    "t",
                    "y",
                    source=source,
                    color=color,
                    line_dash=dash,
                    name=f"{label} ({s.host})",
                    width=1.4,
                    legend_label=_label(label),
                )
            )
    fig.add_tools(
        HoverTool(
            renderers=renderers, tooltips=[("", "$name"), ("t", "@t{0.0} s"), ("", "@y{0.00}")]
        )
    )
    fig.legend.location = "top_left"
    fig.legend.click_policy = "hide"
    return fig


# -- the page -------------------------------------------------------------------------------------


def _page(
    d: JobDiagnosis,
    rows: list[tuple[SessionResult, RankResult]],
    divs: dict[str, str],
    js: str,
    script: str,
    again: list[str],
) -> str:
    from probe.report.job import clock_line, layout_line

    title = f"probe job report: {d.plan.name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>",
        f"<style>{CSS}</style>",
        js,
        "</head>",
        f'<body data-verdict="{e(d.category)}">',
        '<header><div class="brand"><span class="logo">probe</span> job report'
        f'<span class="name">{e(d.plan.name)}</span></div>',
        f'<p class="fact"><b>job</b> {e(layout_line(d))}</p>',
        f'<p class="fact"><b>clocks</b> {e(clock_line(d))}</p>',
        f'<p class="fact"><b>window</b> {d.window[0]:.1f} s to {d.window[1]:.1f} s on the '
        f"aligned axis (where every node's analysed window overlaps)</p>",
        _warnings(d),
        "</header>",
        "<main>",
        _verdicts(d),
        _graph(divs, "steps", "Each rank's step time, on one axis: the nodes' clocks aligned."),
        _graph(
            divs,
            "wait",
            "Time each step spent blocked in collectives, per rank (grouped by node; darker "
            "is longer). The straggler waits least: its row is the lightest; a slow node is a "
            "block of light rows.",
        ),
        _graph(divs, "cpu", "The job's processes and the whole host, per node."),
        _graph(divs, "memory", "Resident memory of the job's processes, and the host's in use."),
        _rank_table(rows),
        "</main>",
        f"<footer>probe {e(__version__)} · render again: <code>probe report "
        f"{e(' '.join(shlex.quote(a) for a in again))}</code></footer>",
        script,
        "</body>",
        "</html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _warnings(d: JobDiagnosis) -> str:
    if not d.warnings and not d.partial:
        return ""
    items = "".join(f"<li>{e(w)}</li>" for w in d.warnings)
    partial = (
        "<p>Partial: a node is missing or probe lost part of a recording; the verdict rests on "
        "what was kept.</p>"
        if d.partial
        else ""
    )
    return f'<div class="warnings">{partial}<ul>{items}</ul></div>'


def _verdicts(d: JobDiagnosis) -> str:
    if not d.issues:
        return (
            f'<section class="verdict ok"><h2>{e(d.category)}</h2><p>{e(d.headline)}</p></section>'
        )
    out = []
    for issue in d.issues:
        f = issue.finding
        where = issue.where if not issue.across else "across all ranks"
        meta = " · ".join(
            x
            for x in (
                f.severity or "",
                f"costs about {percent(f.impact)}" if f.impact > 0 else "",
                where,
            )
            if x
        )
        next_step = f'<p class="next"><b>next</b> {e(f.next_step)}</p>' if f.next_step else ""
        out.append(
            f'<section class="verdict {e(f.severity or "moderate")}">'
            f'<h2>{e(f.id)}</h2><p class="meta">{e(meta)}</p>'
            f'<p class="title">{e(f.title)}</p><p>{e(f.summary)}</p>{next_step}</section>'
        )
    return "\n".join(out)


def _graph(divs: dict[str, str], key: str, caption: str) -> str:
    if key not in divs:
        return ""
    return (
        f'<section class="graph" id="graph-{key}"><p class="caption">{e(caption)}</p>'
        f"{divs[key]}</section>"
    )


def _rank_table(rows: list[tuple[SessionResult, RankResult]]) -> str:
    head = (
        "<tr><th>node</th><th>host</th><th>rank</th><th>local rank</th><th>steps</th>"
        "<th>median step</th><th>collective wait</th><th>main thread CPU</th><th>session</th>"
        "<th>clock</th></tr>"
    )
    body = []
    for s, k in rows:
        durations = k.step_end - k.step_start
        median = f"{float(np.median(durations)) * 1e3:.1f} ms" if len(durations) else "-"
        wait = k.row.get("wait_share")
        cpu = k.row.get("main_thread_cpu")
        clock = "-"
        if s.clock is not None:
            clock = s.clock.method
            if s.clock.method == "steps":
                clock += f", wall clock corrected by {s.clock.offset_s:+.3f} s"
        cells = [
            s.node,
            s.host,
            str(k.rank),
            "-" if k.local_rank is None else str(k.local_rank),
            str(len(durations)),
            median,
            "-" if wait is None else percent(float(wait)),
            "-" if cpu is None else f"{float(cpu):.2f} cores",
            s.name,
            clock,
        ]
        body.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
    return (
        '<section class="ranks"><h2>Ranks by node</h2>'
        f"<table>{head}{''.join(body)}</table></section>"
    )


CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
header, main, footer { max-width: 1200px; margin: 0 auto; padding: 12px 20px; }
header { background: #fff; border-bottom: 1px solid #dde1e7; }
.brand { font-size: 18px; font-weight: 600; }
.logo { color: #1f5fa8; margin-right: 4px; }
.name { font-weight: 400; color: #5a6372; margin-left: 12px; font-size: 14px; }
.fact { margin: 4px 0; } .fact b { display: inline-block; width: 64px; color: #5a6372; }
.warnings { background: #fff8e6; border: 1px solid #f0d58c; padding: 4px 12px; margin: 8px 0; }
.verdict { background: #fff; border-left: 6px solid #f28e2b; padding: 8px 16px; margin: 12px 0; }
.verdict.high { border-color: #d62728; } .verdict.ok { border-color: #2ca02c; }
.verdict h2 { margin: 0; font-size: 16px; } .verdict .meta { color: #5a6372; margin: 2px 0; }
.verdict .title { font-weight: 600; }
.graph { background: #fff; padding: 8px; margin: 12px 0; } .caption { color: #5a6372; margin: 0; }
.ranks table { border-collapse: collapse; background: #fff; width: 100%; }
.ranks th, .ranks td { border-bottom: 1px solid #e3e6eb; padding: 4px 8px; text-align: left; }
footer { color: #5a6372; }
code { font-family: ui-monospace, monospace; }
"""


__all__ = ["heat_matrix", "render_job"]
