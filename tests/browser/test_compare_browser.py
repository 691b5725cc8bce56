"""The compare page in a real browser: Debian's chromium, headless, driven by Playwright.

Two sides of hand-built runs (B 40 % faster, its input-bound verdict gone) whose command holds an
HTML injection: the page must load with no console error, no dialog and no network request,
draw every graph, say the answer and one table row per measure, and show the command as text.
A screenshot goes to test-artifacts/ for a person to look at.

Skipped when chromium or Playwright is missing, except under PROBE_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from probe.cli import main
from tests.conftest import REPO
from tests.unit.compare_runs import noisy_steps, write_run

pytestmark = pytest.mark.browser

ARTIFACTS = REPO / "test-artifacts"
EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def page_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compare-page")
    argv = ["python", "train.py", "--tag", EVIL]
    for k in range(3):
        write_run(
            root / "before" / f"run-{k + 1}",
            noisy_steps(300, step=0.05, seed=k),
            argv=argv,
            wait_share=0.4,
        )
        write_run(
            root / "after" / f"run-{k + 1}",
            noisy_steps(300, step=0.03, seed=10 + k),
            argv=[*argv, "--workers", "2"],
        )
    page = root / "compare.html"
    code = main(["compare", str(root / "before"), str(root / "after"), "--html", str(page)])
    assert code == 0
    return page


def test_compare_page_renders_offline_and_gives_the_answer(browser: Any, page_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda r: requests.append(r.url))

    def dismiss(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    try:
        page.goto(page_path.resolve().as_uri())
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=20_000)
        page.wait_for_timeout(800)
        for section in ("forest", "distribution", "timelines"):
            assert page.locator(f"#{section} canvas").count() > 0, section
        assert page.locator("#answer h1").inner_text().startswith("B is faster: step time -4")
        assert "input-bound (high, 40 %) -> healthy" in page.locator("#answer").inner_text()
        rows = page.locator("#measures tbody tr:not(:has(td.note))")
        assert rows.count() >= 5
        assert rows.first.locator("td").first.inner_text() == "step time (median)"
        assert "faster" in rows.first.locator("td.verdict").inner_text()
        assert EVIL in page.locator("header.top").inner_text()  # shown as text, not markup
        box = page.locator("#distribution canvas").first.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.6)
        page.wait_for_timeout(300)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)
        assert not errors, errors
        assert not dialogs, dialogs
        outside = [u for u in requests if not u.startswith(("file:", "data:", "blob:"))]
        assert not outside, f"the page loaded from the network: {outside}"
    finally:
        context.close()
