"""The verdict as JSON (``probe.diagnosis/1``): ``DIR/NAME/diagnosis.json`` and ``--json FILE``."""

from __future__ import annotations

import json

from probe.analysis.diagnosis import Diagnosis, to_json
from probe.report.renderer import Outputs, Renderer


def dumps(diagnosis: Diagnosis) -> str:
    return json.dumps(to_json(diagnosis), indent=2, sort_keys=False, allow_nan=False) + "\n"


class JsonRenderer(Renderer):
    name = "json"
    suffix = ".json"

    def render(self, diagnosis: Diagnosis, outputs: Outputs) -> str:
        return dumps(diagnosis)


__all__ = ["JsonRenderer", "dumps"]
