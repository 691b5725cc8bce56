"""What probe loads where it must stay light: the public API inside the target, and the probe
process while it records (the analysis and report libraries come only after the run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("numpy", "scipy", "hmmlearn", "bokeh", "torch", "sklearn")


def loaded_after(code: str) -> list[str]:
    probe_code = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe_code], capture_output=True, text=True, check=True
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_probe_loads_nothing_heavy() -> None:
    assert loaded_after("import probe; probe.step()\nwith probe.span('x'): pass") == []


def test_the_recording_side_of_the_cli_loads_no_analysis_library() -> None:
    code = (
        "import probe.cli, probe.cli.doctor, probe.cli.attach, probe.recorder, probe.launcher\n"
        "import probe.agent.runtime, probe.cli.status"
    )
    assert loaded_after(code) == []


def test_a_profiled_block_loads_nothing_heavy_until_its_diagnosis(tmp_path: Path) -> None:
    code = f"import probe\nwith probe.profile(dest={str(tmp_path)!r}) as run:\n    sum(range(1000))"
    assert loaded_after(code) == []
