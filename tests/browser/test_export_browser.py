"""The exports opened by a real consumer: speedscope's own release, from its npm package, in
headless Chromium. speedscope imports the speedscope JSON, the folded stacks and the Chrome trace
(its Trace Event importer replays every B/E pair and complains about any that do not nest), for
every kind of real session: one process, DataLoader workers, two torchrun ranks, a crash.

The package is installed from the npm registry into a temporary directory (pinned version), or
taken from PROBE_SPEEDSCOPE_DIR. Skipped without Chromium, Playwright or npm, except under
PROBE_REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from probe.cli import main
from tests.browser.chromium import need
from tests.conftest import REPO
from tests.export_checks import check_speedscope, check_trace_events, parse_collapsed
from tests.export_sessions import KINDS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SPEEDSCOPE = "speedscope@1.25.0"
ARTIFACTS = REPO / "test-artifacts"
IMPORTERS = {
    "speedscope": "Importing as speedscope json file",
    "collapsed": "Importing as collapsed stack format",
    "chrome-trace": "Importing as Trace Event Format profile",
}


@pytest.fixture(scope="session")
def speedscope(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """speedscope's index.html from its npm package (session-scoped, and asked for before the
    recorded sessions, so that a machine without the browser skips before recording them)."""
    if shutil.which("chromium") is None:
        need("Debian's chromium is not installed (apt-get install chromium)")
    given = os.environ.get("PROBE_SPEEDSCOPE_DIR")
    if given:
        root = Path(given)
    else:
        npm = shutil.which("npm")
        if npm is None:
            need("npm is not installed (apt-get install npm)")
        root = tmp_path_factory.mktemp("speedscope")
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(root), SPEEDSCOPE],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            need(f"npm install {SPEEDSCOPE} failed: {result.stderr.strip()[-300:]}")
    index = root / "node_modules" / "speedscope" / "dist" / "release" / "index.html"
    if not index.is_file():
        need(f"no speedscope release at {index}")
    return index


def open_in_speedscope(
    browser: Any, index: Path, profile: Path, tmp_path: Path, shot: str
) -> tuple[str, int, list[str]]:
    """Load ``profile`` the way speedscope's own command line does (a script that calls
    ``speedscope.loadFileFromBase64``, named in the URL's hash); returns the page title once the
    import is done, how many profiles (threads) speedscope made of it, and everything it said on
    the console."""
    loader = tmp_path / f"{profile.name}.js"
    data = base64.b64encode(profile.read_bytes()).decode()
    loader.write_text(f"speedscope.loadFileFromBase64({json.dumps(profile.name)}, '{data}')")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    said: list[str] = []
    page.on("console", lambda m: said.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: said.append(f"pageerror: {e}"))
    page.on("dialog", lambda d: (said.append(f"dialog: {d.message}"), d.dismiss()))
    try:
        page.goto(f"file://{index}#localProfilePath={loader}")
        page.wait_for_function("document.title.endsWith(' - speedscope')", timeout=60_000)
        page.wait_for_timeout(300)  # one frame drawn
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"speedscope-{shot}.png"))
        shown = re.search(r"\((\d+)/(\d+)\)", page.inner_text("body"))
        return page.title(), int(shown[2]) if shown else 1, said
    finally:
        page.close()


def problems(said: list[str]) -> list[str]:
    """What speedscope said that means it did not read the file as written: warnings (B/E that
    do not nest, frames left open), errors, failed imports, alerts."""
    bad = ("warning: ", "error: ", "pageerror: ", "dialog: ")
    return [
        s
        for s in said
        if (s.startswith(bad) and "GL Driver Message" not in s) or "Failed to load" in s
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_speedscope_opens_every_export_of_every_kind(
    speedscope: Path,
    recorded_sessions: dict[str, Path],
    browser: Any,
    kind: str,
    tmp_path: Path,
) -> None:
    session = recorded_sessions[kind]
    for fmt, name in (
        ("speedscope", f"{kind}.speedscope.json"),
        ("collapsed", f"{kind}.collapsed.txt"),
        ("chrome-trace", f"{kind}.trace.json"),
    ):
        out = tmp_path / name
        assert main(["export", str(session), "-f", fmt, "-o", str(out)]) == 0
        title, profiles, said = open_in_speedscope(
            browser, speedscope, out, tmp_path, f"{kind}-{fmt}"
        )
        assert f"log: {IMPORTERS[fmt]}" in said, said
        assert not problems(said), problems(said)
        if fmt == "speedscope":
            doc = json.loads(out.read_text())
            check_speedscope(doc)
            assert title == f"{doc['name']} - speedscope"
            assert profiles == len(doc["profiles"])  # one per sampled thread
        elif fmt == "collapsed":
            assert parse_collapsed(out.read_text())
            assert title == f"{name} - speedscope"
        else:
            facts = check_trace_events(json.loads(out.read_text()))
            assert profiles == len(facts.slice_names_by_track)  # one per track with slices
