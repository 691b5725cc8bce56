"""The report in a real browser: Debian's chromium, headless, driven by Playwright.

Four reports: a real `probe doctor` run of examples/train_cpu.py, a hand-made gc-pauses run, a
hand-made server under load, and a run whose command, thread, span and function names are an
HTML injection. Each page must load
with no console error and no network request, draw its graphs, name the verdict in the alert,
switch the recommendation panel between verdicts, and show hostile names as text. Screenshots go
to test-artifacts/ for a person to look at.

Skipped when chromium or Playwright is missing, except under PROBE_REQUIRE_BROWSER=1 (CI), where
that is a failure. Playwright never downloads a browser here: it drives the system's chromium.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from probe.cli import main
from tests.conftest import PYTHON, REPO, run_probe
from tests.unit.report_sessions import EVIL, evil_session
from tests.unit.serving_sessions import thread_pool_session
from tests.unit.synthetic_runs import Run, compiled_run, startup_crash
from tests.waiting import PATIENCE_S

pytestmark = pytest.mark.browser

ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """name -> (report path, verdict) for each report."""
    root = tmp_path_factory.mktemp("reports")
    out: dict[str, tuple[Path, str]] = {}
    # A real run: a small CPU training with DataLoader workers.
    result = run_probe(
        [
            "doctor",
            "--no-open",
            "--dest",
            str(root),
            "--name",
            "train",
            "--",
            PYTHON,
            str(REPO / "examples" / "train_cpu.py"),
            "--epochs",
            "1",
            "--samples",
            "12000",
        ],
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    out["train"] = (root / "train.html", _verdict(root / "train"))
    Run(gc_every=0.5, gc_pause=0.08).build(root / "gc")
    evil_session(root / "evil")
    thread_pool_session(root / "server")  # a server under load: requests and latency graphs
    for name in ("gc", "evil", "server"):
        assert main(["report", str(root / name), "--no-open"]) == 0
        out[name] = (root / f"{name}.html", _verdict(root / name))
    return out


def _verdict(session: Path) -> str:
    return str(json.loads((session / "diagnosis.json").read_text())["category"])


class Opened:
    def __init__(self, browser: Any, path: Path, width: int = 1440) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", self._dialog)
        self.page.goto(path.resolve().as_uri())
        # Bokeh says when a document is idle: every root has rendered (each graph section then
        # holds a canvas). Wait for that, not for a fixed time a loaded machine may need more of.
        self.page.wait_for_function(
            "() => window.Bokeh && Bokeh.documents.length > 0"
            " && Bokeh.documents.every((doc) => doc.is_idle)",
            timeout=PATIENCE_S * 1000,
        )

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def close(self) -> None:
        self.context.close()


@pytest.mark.parametrize("name", ["train", "gc", "evil", "server"])
def test_report_renders_offline_and_names_the_verdict(
    browser: Any, reports: dict[str, tuple[Path, str]], name: str
) -> None:
    path, verdict = reports[name]
    opened = Opened(browser, path)
    page = opened.page
    try:
        sections = page.locator("section.graph")
        assert sections.count() >= 4
        for k in range(sections.count()):
            section = sections.nth(k)
            assert section.locator("canvas").count() > 0, section.get_attribute("id")
        assert page.locator("#alert .verdict-id").inner_text() == verdict
        assert page.locator("#alert .alert-title").inner_text().strip()
        article = page.locator(f"#verdict-{verdict}")
        assert article.is_visible()
        # The alert's links lead to graphs that exist and are marked for the verdict.
        for link in page.locator("#alert .graph-link").all():
            target = page.locator(f"#graph-{link.get_attribute('data-graph')}")
            assert target.count() == 1
            if verdict not in ("healthy", "insufficient-data"):
                assert "marked" in (target.get_attribute("class") or "")
        # Hover over a plot: the tooltip must not break anything.
        box = page.locator("section.graph canvas").first.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.6)
        page.wait_for_timeout(300)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"report-{name}.png"), full_page=True)
        page.screenshot(path=str(ARTIFACTS / f"report-{name}-top.png"))
        assert not opened.errors, opened.errors
        assert not opened.dialogs, opened.dialogs
        outside = [u for u in opened.requests if not u.startswith(("file:", "data:", "blob:"))]
        assert not outside, f"the page loaded from the network: {outside}"
    finally:
        opened.close()


def test_recommendation_panel_switches_between_verdicts(
    browser: Any, reports: dict[str, tuple[Path, str]]
) -> None:
    path, verdict = reports["gc"]
    assert verdict == "gc-pauses"
    opened = Opened(browser, path)
    page = opened.page
    try:
        gc_graph = page.locator("#graph-gc")
        assert "marked" in (gc_graph.get_attribute("class") or "")
        other = "memory-growth"
        page.locator(f'.tab[data-verdict="{other}"]').click()
        assert page.locator(f"#verdict-{other}").is_visible()
        assert not page.locator(f"#verdict-{verdict}").is_visible()
        assert (
            page.locator(f'.tab[data-verdict="{other}"]').get_attribute("aria-selected") == "true"
        )
        assert "Not detected" in page.locator(f"#verdict-{other}").inner_text()
        assert "When present" in page.locator(f"#verdict-{other}").inner_text()
        # A verdict that was not found marks no graph and shades no issue window.
        assert "marked" not in (gc_graph.get_attribute("class") or "")
        visible_windows = page.evaluate(
            """() => {
              const out = [];
              for (const doc of Bokeh.documents)
                for (const m of doc.all_models)
                  if (typeof m.name === "string" && m.name.startsWith("windows:") && m.visible)
                    out.push(m.name);
              return out;
            }"""
        )
        assert visible_windows == []
        page.locator(f'.tab[data-verdict="{verdict}"]').click()
        assert page.locator(f"#verdict-{verdict}").is_visible()
        assert "marked" in (gc_graph.get_attribute("class") or "")
        # "Read more" opens how probe decides, the next steps with code, the references.
        more = page.locator(f"#verdict-{verdict} details.more")
        more.locator("summary").click()
        assert more.locator("pre code").first.is_visible()
        assert "gc.freeze()" in more.inner_text()
        page.screenshot(path=str(ARTIFACTS / "report-gc-panel.png"))
        assert not opened.errors, opened.errors
    finally:
        opened.close()


def test_hostile_names_show_as_text(browser: Any, reports: dict[str, tuple[Path, str]]) -> None:
    path, _ = reports["evil"]
    opened = Opened(browser, path)
    page = opened.page
    try:
        assert EVIL in page.locator("header .command").inner_text()
        page.locator("#processes summary").click()
        assert EVIL in page.locator("#processes").inner_text()
        assert page.locator("img").count() == 0
        texts = page.evaluate(
            """() => {
              const out = [];
              for (const doc of Bokeh.documents)
                for (const m of doc.all_models)
                  if (typeof m.text === "string") out.push(m.text);
              return out;
            }"""
        )
        assert any("</script><img src=x" in t for t in texts), texts
        page.screenshot(path=str(ARTIFACTS / "report-evil-timeline.png"), full_page=True)
        assert not opened.dialogs, opened.dialogs
        assert not opened.errors, opened.errors
    finally:
        opened.close()


def test_narrow_window_stacks_the_panel_under_the_graphs(
    browser: Any, reports: dict[str, tuple[Path, str]]
) -> None:
    path, _ = reports["train"]
    opened = Opened(browser, path, width=900)
    try:
        page = opened.page
        graphs = page.locator("main.graphs").bounding_box()
        panel = page.locator("#panel").bounding_box()
        assert graphs is not None and panel is not None
        assert panel["y"] >= graphs["y"] + graphs["height"] - 1
        page.screenshot(path=str(ARTIFACTS / "report-train-narrow.png"), full_page=True)
        assert not opened.errors, opened.errors
    finally:
        opened.close()


def test_a_compiled_run_shows_its_phases_and_compiled_steps_as_the_models_work(
    browser: Any, tmp_path: Path
) -> None:
    compiled_run(tmp_path / "compiled", recompile_every=0, recompile_s=0.0)
    startup_crash(tmp_path / "crash")
    for name in ("compiled", "crash"):
        assert main(["report", str(tmp_path / name), "--no-open"]) == 0
    opened = Opened(browser, tmp_path / "compiled.html")
    page = opened.page
    try:
        legend = page.locator(".activity-legend").inner_text()
        assert "in torch" in legend and "compiling" not in legend
        labels = page.evaluate(
            """() => [...Bokeh.documents[0].all_models]
                .filter(m => m.type === "LegendItem").map(m => m.label.value)"""
        )
        for phase in ("phase: start-up", "phase: the loop (analysed)", "torch.compile compiling"):
            assert phase in labels, labels
        assert (
            "Phases: start-up 0-5.2 s (importing 3.0 s; compiling 2.0 s)"
            in page.locator("header .window").inner_text()
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report-compiled-top.png"))
        assert not opened.errors, opened.errors
    finally:
        opened.close()
    opened = Opened(browser, tmp_path / "crash.html")
    try:
        notice = opened.page.locator(".exit-notice").inner_text()
        assert "FileNotFoundError" in notice and "(in load_data (train.py:12))" in notice
        assert opened.page.locator("#alert .verdict-id").inner_text() == "insufficient-data"
        assert not opened.errors, opened.errors
    finally:
        opened.close()
