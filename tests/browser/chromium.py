"""What every browser test needs: Debian's chromium, driven by Playwright, never downloaded."""

from __future__ import annotations

import os

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def need(reason: str) -> None:
    """Skip for ``reason``, or fail where CI asks for the browser (PROBE_REQUIRE_BROWSER=1)."""
    if os.environ.get("PROBE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (PROBE_REQUIRE_BROWSER=1)")
    pytest.skip(reason)
