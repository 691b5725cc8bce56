"""The browser tests hold one Chromium (and Playwright's driver) for the whole module: the
per-test check for leftover threads and processes ignores those, and the module checks instead
that closing the browser left nothing behind."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from tests.browser.chromium import CHROMIUM_ARGS, need


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (Debian's, through Playwright)."""
    executable = shutil.which("chromium")
    if executable is None:
        need("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need("the playwright Python package is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _ours(proc: psutil.Process) -> bool:
    """Alive, and not Playwright's driver or Chromium."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        text = " ".join([proc.name(), *proc.cmdline()]).lower()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return not any(word in text for word in ("chrom", "playwright", "node"))


@pytest.fixture(autouse=True)
def _leaves_nothing_behind() -> Iterator[None]:
    threads_before = set(threading.enumerate())
    yield
    leftover = [
        t
        for t in threading.enumerate()
        if t not in threads_before and t.is_alive() and not t.name.startswith("asyncio_")
    ]
    children = [c for c in psutil.Process().children(recursive=True) if _ours(c)]
    for child in children:
        child.kill()
    assert not leftover, f"test left threads running: {leftover}"
    assert not children, f"test left processes running: {[c.cmdline() for c in children]}"
