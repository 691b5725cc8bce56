"""Opening the report in a browser: only for a person at a terminal with a display, never hanging.

``--open`` is a wish, not an order: probe opens the page only when stdout or stderr is a terminal
(a person is watching), a display exists (``DISPLAY`` or ``WAYLAND_DISPLAY`` on Linux; always on
macOS) and ``PROBE_NO_OPEN`` is not set. It starts the desktop's opener (``xdg-open``, ``open``)
detached and does not wait for it; without one it falls back to ``webbrowser`` on a daemon thread
given a few seconds, because ``webbrowser`` may run a console browser in the foreground.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import webbrowser
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

WEBBROWSER_WAIT_S = 3.0


def should_open(
    requested: bool,
    *,
    environ: Mapping[str, str] | None = None,
    streams: tuple[TextIO, ...] | None = None,
    platform: str | None = None,
) -> bool:
    env = os.environ if environ is None else environ
    if not requested or env.get("PROBE_NO_OPEN", "") not in ("", "0"):
        return False
    outs = (sys.stdout, sys.stderr) if streams is None else streams
    if not any(getattr(s, "isatty", lambda: False)() for s in outs):
        return False
    return has_display(env, platform or sys.platform)


def has_display(environ: Mapping[str, str], platform: str) -> bool:
    if platform == "darwin":
        return True
    if platform.startswith("linux") or "bsd" in platform:
        return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))
    return False


def open_report(path: Path) -> bool:
    """Ask the desktop to show ``path``; True if an opener was started."""
    target = path.resolve()
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    exe = shutil.which(opener)
    if exe is not None:
        try:
            subprocess.Popen(
                [exe, str(target)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            return True
        except OSError:
            pass
    opened: list[bool] = []

    def attempt() -> None:
        try:
            opened.append(webbrowser.open(target.as_uri()))
        except Exception:
            opened.append(False)

    thread = threading.Thread(target=attempt, name="probe-open-report", daemon=True)
    thread.start()
    thread.join(WEBBROWSER_WAIT_S)
    return bool(opened and opened[0])


__all__ = ["has_display", "open_report", "should_open"]
