"""The HTML page, without a browser: self-contained, at most 2 MB, every untrusted string escaped;
the Markdown of the recommendation texts; the CLI writing the report; when to open a browser."""

from __future__ import annotations

import io
import re
import shlex
from pathlib import Path

import pytest

from probe.analysis.diagnosis import VERDICTS, diagnose
from probe.cli import browser, main
from probe.report import html, markdown, recommendations
from probe.report.page import build_page
from probe.report.recommendations.__main__ import main as recommendations_main
from tests.unit.report_sessions import EVIL, crowded_session, evil_session, long_session
from tests.unit.synthetic_runs import Run

MAX_BYTES = 2 * 1024 * 1024


def render(session_dir: Path) -> str:
    d = diagnose(_session(session_dir))
    return html.render(build_page(d), session_dir=str(session_dir))


def _session(path: Path):  # type: ignore[no-untyped-def]
    from probe.session.reader import Session

    return Session(path)


@pytest.fixture(scope="module")
def input_bound_page(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("report") / "s"
    Run(wait=0.02).build(path)
    return render(path)


def test_page_is_self_contained(input_bound_page: str) -> None:
    page = input_bound_page
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]*\bsrc=", page), "scripts are inlined"
    assert "<link" not in page
    outside_scripts = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S)
    assert "@import" not in outside_scripts and "@font-face" not in outside_scripts
    # Links in the texts are plain anchors; nothing is loaded from a URL.
    assert not re.search(r"""(src|srcset|data|poster)=["']?\s*(https?:)?//""", outside_scripts)
    assert not re.search(r"url\(\s*[\"']?\s*(https?:)?//", outside_scripts)
    assert "cdn.bokeh.org" not in page
    # Only Bokeh's core bundle: no widgets, tables, WebGL or MathJax.
    assert "bokeh-widgets" not in page and "MathJax.Hub" not in page
    assert len(page.encode()) < MAX_BYTES


def test_page_has_the_alert_graphs_and_one_panel_per_verdict(input_bound_page: str) -> None:
    page = input_bound_page
    assert 'class="alert sev-' in page
    assert "waits for its input pipeline" in page
    assert 'href="#graph-data-wait"' in page
    assert 'id="graph-data-wait"' in page
    assert 'class="graph marked" id="graph-data-wait"' in page
    articles = re.findall(r'<article class="verdict" id="verdict-([\w-]+)"[^>]*?(hidden)?>', page)
    assert sorted(a for a, _ in articles) == sorted(VERDICTS)
    shown = [a for a, hidden in articles if not hidden]
    assert shown == ["input-bound"]
    assert page.count('role="tab"') == len(VERDICTS)
    assert "Deeper tools to run next" in page
    assert "py-spy record --subprocesses -o loader.svg -- python train.py" in page


def test_untrusted_strings_are_escaped_everywhere(tmp_path: Path) -> None:
    evil_session(tmp_path / "s")
    page = render(tmp_path / "s")
    assert EVIL not in page
    assert "<img" not in page
    assert "s3cr3t" not in page
    escaped = html.e(EVIL)
    assert escaped in page  # shown as text in the header, the process list and the stacks
    # The command in the header: quoted as a shell would, then escaped.
    assert f'<span class="prompt">$</span> <code>python {html.e(shlex.quote(EVIL))} --token' in page
    # Nothing untrusted inside Bokeh's embedded documents either (lane names, as PlainText).
    for script in re.findall(r"<script[^>]*>(.*?)</script>", page, re.S):
        assert "</script" not in script.lower()
        assert "<img" not in script


def test_tex_in_names_does_not_pull_in_mathjax(tmp_path: Path) -> None:
    from probe.testing import SessionBuilder
    from tests.unit.report_sessions import _spans

    b = SessionBuilder(tmp_path / "s", duration_s=5)
    b.process(100)
    b.steps(100, [0.5 + 0.1 * k for k in range(40)])
    b.cpu(100, main=0.9)
    b.system(busy=1.0)
    _spans(b, 100, "$$x^2$$", __import__("numpy").array([1.0]), [0.5], 100)
    b.write()
    page = render(tmp_path / "s")
    assert "MathJax.Hub" not in page
    assert len(page.encode()) < MAX_BYTES


def test_an_hour_long_session_gives_a_page_under_2_mb(tmp_path: Path) -> None:
    long_session(tmp_path / "s", duration=3600)
    page = render(tmp_path / "s")
    assert len(page.encode()) < MAX_BYTES


def test_the_crowded_worst_case_stays_under_2_mb(tmp_path: Path) -> None:
    crowded_session(tmp_path / "s", duration=1200)
    page = render(tmp_path / "s")
    assert len(page.encode()) < MAX_BYTES
    assert "more lanes" in page


def test_a_session_with_no_samples_still_renders(tmp_path: Path) -> None:
    from probe.testing import SessionBuilder

    SessionBuilder(tmp_path / "s", duration_s=0.2).write()
    page = render(tmp_path / "s")
    assert "insufficient-data" in page
    assert "No graph: the session holds no samples" in page
    assert 'id="graph-' not in page


# -- Markdown -------------------------------------------------------------------------------------


def test_markdown_escapes_before_marking_up() -> None:
    out = markdown.to_html("a <b>x</b> & **bold** `<i>` [evil](javascript:alert(1)) *em*")
    assert "<b>" not in out and "<i>" not in out
    assert "&lt;b&gt;x&lt;/b&gt; &amp; <strong>bold</strong>" in out
    assert "<code>&lt;i&gt;</code>" in out
    assert "javascript:" not in out.split("evil")[0] and 'href="javascript' not in out
    assert "<em>em</em>" in out


def test_markdown_lists_with_code_and_links() -> None:
    text = (
        "Intro paragraph\ncontinued.\n\n"
        "1. **First.** Do this:\n"
        "   ```python\n"
        "   x = [i for i in range(3)]  # <ok>\n"
        "   ```\n"
        "2. Second, see [docs](https://example.org/a?b=1&c=2).\n\n"
        "- one\n  more\n- two https://example.org/x.\n"
    )
    out = markdown.to_html(text)
    assert out.startswith("<p>Intro paragraph continued.</p>")
    assert "<ol>\n<li><strong>First.</strong> Do this:\n<pre><code" in out
    assert "x = [i for i in range(3)]  # &lt;ok&gt;" in out
    assert 'href="https://example.org/a?b=1&amp;c=2"' in out
    assert "<ul>\n<li>one more</li>" in out
    assert '<a href="https://example.org/x"' in out and "x</a>." in out


def test_every_recommendation_text_converts() -> None:
    for verdict in recommendations.available():
        rec = recommendations.load(verdict)
        for body in (rec.meaning, *rec.sections.values()):
            out = markdown.to_html(body)
            assert out.count("<pre>") == out.count("</pre>")
            assert out.count("<li>") == out.count("</li>")
            assert "```" not in out, verdict


# -- the CLI and the browser ----------------------------------------------------------------------


def test_probe_report_writes_the_page_next_to_the_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Run(wait=0.02).build(tmp_path / "run1")
    assert main(["report", str(tmp_path / "run1"), "--no-open"]) == 0
    report = tmp_path / "run1.html"
    assert report.is_file()
    assert report.stat().st_size < MAX_BYTES
    err = capsys.readouterr().err
    assert f"report:  {report}" in err
    assert f"again:   probe report {tmp_path / 'run1'}" in err
    assert "verdict: input-bound" in err


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("requested", "env", "tty", "platform", "expected"),
    [
        (True, {"DISPLAY": ":0"}, True, "linux", True),
        (True, {"WAYLAND_DISPLAY": "wayland-0"}, True, "linux", True),
        (True, {}, True, "linux", False),  # no display
        (True, {"DISPLAY": ":0"}, False, "linux", False),  # not a person at a terminal
        (True, {"DISPLAY": ":0", "PROBE_NO_OPEN": "1"}, True, "linux", False),
        (False, {"DISPLAY": ":0"}, True, "linux", False),  # --no-open
        (True, {}, True, "darwin", True),
    ],
)
def test_open_only_for_a_person_with_a_display(
    requested: bool, env: dict[str, str], tty: bool, platform: str, expected: bool
) -> None:
    streams = (_Tty(),) if tty else (io.StringIO(),)
    assert (
        browser.should_open(requested, environ=env, streams=streams, platform=platform) is expected
    )


def test_the_docs_pages_are_the_recommendation_texts_filled_in() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "verdicts"
    for verdict in recommendations.available():
        page = (docs / f"{verdict}.md").read_text(encoding="utf-8")
        assert page == recommendations.docs_page(verdict), (
            f"docs/verdicts/{verdict}.md is stale: run "
            "python -m probe.report.recommendations docs/verdicts"
        )
        assert "{{" not in page
    assert sorted(p.stem for p in docs.glob("*.md")) == sorted(recommendations.available())
    assert sorted(recommendations.available()) == sorted(VERDICTS)
    assert recommendations_main([str(docs), "--check"]) == 0


def test_a_stale_docs_page_is_found_and_rewritten(tmp_path: Path) -> None:
    assert recommendations_main([str(tmp_path), "--check"]) == 1  # none written yet
    assert recommendations_main([str(tmp_path)]) == 0
    assert recommendations_main([str(tmp_path), "--check"]) == 0
    page = tmp_path / "gc-pauses.md"
    page.write_text(page.read_text().replace("15 %", "20 %"))
    assert recommendations_main([str(tmp_path), "--check"]) == 1
    (tmp_path / "not-a-verdict.md").write_text("# stray\n")
    assert recommendations_main([str(tmp_path)]) == 1  # a page for no verdict is reported
    assert not list(tmp_path.glob(".*.tmp"))


def test_thresholds_in_the_texts_come_from_the_constants(monkeypatch: pytest.MonkeyPatch) -> None:
    from probe.analysis.detectors import input_bound
    from probe.units import Share

    text = recommendations.load("input-bound").sections["How probe decides"]
    assert "tested against 5 % (moderate) and 20 % (high)" in text
    monkeypatch.setattr(input_bound, "MODERATE", Share(0.07))
    filled = recommendations.fill("input-bound", recommendations.template("input-bound"))
    assert "tested against 7 % (moderate)" in filled
    with pytest.raises(LookupError, match="NO_SUCH"):
        recommendations.fill("input-bound", "below {{ NO_SUCH }}")


def test_no_text_writes_a_threshold_out() -> None:
    """A unit-carrying constant's value never appears as literal text in the templates' "How
    probe decides": it is cited as {{ NAME }} (counts and plain numbers are not checked: "3"
    would match "3rd")."""
    from probe.units import Bytes, Duration, Rate, Share, text

    for verdict in recommendations.available():
        source = recommendations.parse(verdict, recommendations.template(verdict))
        decides = source.sections.get("How probe decides", "")
        for name, value in recommendations.constants(verdict).items():
            if isinstance(value, (Share, Duration, Bytes, Rate)):
                assert f" {text(value)} " not in decides, (verdict, name, text(value))


def test_a_broken_page_does_not_hide_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    Run().build(tmp_path / "run1")

    def broken(*args: object, **kwargs: object) -> str:
        raise ValueError("boom")

    monkeypatch.setattr(html, "render", broken)
    monkeypatch.delenv("PROBE_DEBUG", raising=False)
    assert main(["report", str(tmp_path / "run1")]) == 0
    err = capsys.readouterr().err
    assert "the report could not be rendered (ValueError: boom)" in err
    assert "verdict: healthy" in err
    assert "report:" not in err
    assert not (tmp_path / "run1.html").exists()
