"""The verdict as JSON: ``DIR/NAME/diagnosis.json`` and ``--json FILE`` (``-`` for stdout)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from probe.analysis.diagnosis import Diagnosis, to_json
from probe.files import write_atomic


def dumps(diagnosis: Diagnosis) -> str:
    return json.dumps(to_json(diagnosis), indent=2, sort_keys=False, allow_nan=False) + "\n"


def write(diagnosis: Diagnosis, path: Path | str) -> None:
    """Write the verdict to ``path`` atomically, or to stdout when ``path`` is ``-``."""
    text = dumps(diagnosis)
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    write_atomic(path, text)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
