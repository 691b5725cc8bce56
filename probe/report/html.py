"""The HTML report: the page (``page.build_page`` makes its model) rendered through Jinja2
templates, with the graphs as Bokeh figures (``figures``).

The page opens from disk with no network: Bokeh's JavaScript is inlined (only the core bundle),
the page's own CSS and script are package files (``static/``) inlined at render time, there are no
web fonts and no external URL is loaded (links in the recommendation texts are plain anchors).

Markup lives in ``templates/`` (one template per region of the page, in page order: header,
alert, graphs, processes, panel with one article per verdict, footer). The environment escapes
every value automatically; only what probe made itself goes in as ``Markup``: Bokeh's divs and
scripts, the CSS and script files, and the recommendation texts once converted by
``markdown.to_html`` (which escapes before it marks up). Every string from the session (argv,
paths, process, thread, function and span names) is therefore escaped, and in Bokeh goes in as
data, never as markup (see ``figures``).
"""

from __future__ import annotations

import functools
import os
import shlex
from importlib import resources

import jinja2
from markupsafe import Markup, escape

from probe import __version__
from probe.analysis.diagnosis import Diagnosis
from probe.report import figures, markdown
from probe.report.model import Page, VerdictView
from probe.report.page import build_page
from probe.report.renderer import Outputs, Renderer
from probe.units import percent, size

STATUS_TEXT = {"issue": "found", "not-detected": "not detected", "insufficient-data": "not judged"}
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
    "gpu-sync": "#e15759",
}
READ_MORE = ("How probe decides", "Next steps", "References")


def e(text: object) -> str:
    """``text`` escaped for HTML (text or an attribute's value), as the templates escape it."""
    return str(escape(text))


def render(page: Page, *, session_dir: str | None = None) -> str:
    """The whole page as one HTML document."""
    template = _environment().get_template("page.html.j2")
    embedded = figures.embed(page)
    return template.render(
        page=page,
        # Markup: made by probe or Bokeh, never from a session's string as markup (Bokeh's
        # documents carry those as JSON data, in a script element that cannot be closed early).
        embedded=figures.Embedded(
            js=[Markup(code) for code in embedded.js],
            script=Markup(embedded.script),
            divs={k: Markup(div) for k, div in embedded.divs.items()},
        ),
        css=Markup(_static("report.css")),
        page_js=Markup(figures.inline_script(_static("report.js"))),
        session_dir=session_dir,
        version=__version__,
    )


class HtmlRenderer(Renderer):
    """The report: the page for the diagnosis, built (``page.build_page``) and rendered."""

    name = "html"
    suffix = ".html"

    def render(self, diagnosis: Diagnosis, outputs: Outputs) -> str:
        page = build_page(diagnosis)
        return render(page, session_dir=str(diagnosis.timeline.session.path))


@functools.cache
def _static(name: str) -> str:
    return (resources.files("probe.report") / "static" / name).read_text(encoding="utf-8")


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("probe.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        percent=percent,
        size=size,
        basename=os.path.basename,
        shell_quote=shlex.quote,
        markdown=_markdown,
    )
    env.globals.update(
        status_text=STATUS_TEXT,
        activity_colors=ACTIVITY_COLORS,
        seen=_seen,
        read_more=_read_more,
        deeper_tools=_deeper_tools,
    )
    return env


def _markdown(text: str) -> Markup:
    return Markup(markdown.to_html(text))  # to_html escapes the text before it marks it up


def _substitute(text: str, substitutions: dict[str, str]) -> str:
    for placeholder, value in substitutions.items():
        text = text.replace(placeholder, value)
    return text


def _seen(a: float | None, b: float | None) -> str:
    """When a process was seen, for the process table."""
    if a is None:
        return ""
    return f"{a:.1f}–{b:.1f} s" if b is not None else f"from {a:.1f} s"


def _read_more(v: VerdictView) -> list[tuple[str, str]]:
    """The folded sections of a verdict's article: (title, Markdown text)."""
    rec = v.recommendation
    more = [("What it means", rec.meaning)] if v.status == "issue" and rec.meaning else []
    return more + [(title, rec.sections[title]) for title in READ_MORE if rec.sections.get(title)]


def _deeper_tools(v: VerdictView) -> str:
    """The "Deeper tools" section with this run's own command in its examples."""
    return _substitute(v.recommendation.sections.get("Deeper tools") or "", v.substitutions)


__all__ = ["HtmlRenderer", "e", "render"]
