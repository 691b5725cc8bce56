"""Real sessions of every kind, recorded once per test run with `probe doctor --collect-only`,
for the export tests: one process, DataLoader workers, two torchrun ranks, a crash."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

from tests.conftest import PROGRAMS, PYTHON, run_probe

KINDS = ("single", "workers", "ranks", "crash")


def _command(kind: str) -> list[str]:
    if kind == "single":
        return [PYTHON, str(PROGRAMS / "export_single.py")]
    if kind == "workers":
        return [PYTHON, str(PROGRAMS / "loader.py"), "fork"]
    if kind == "ranks":
        torchrun = shutil.which("torchrun", path=str(Path(PYTHON).parent))
        assert torchrun is not None, "torchrun is installed with torch"
        return [torchrun, "--standalone", "--nproc_per_node", "2", str(PROGRAMS / "dist_train.py")]
    if kind == "crash":
        return [PYTHON, str(PROGRAMS / "crash_native.py")]
    raise ValueError(kind)


EXPECTED_STATUS = {"single": 0, "workers": 0, "ranks": 0, "crash": 128 + signal.SIGSEGV}


def record(root: Path, kind: str) -> Path:
    result = run_probe(
        ["doctor", "--collect-only", "--dest", str(root), "--name", kind, "--", *_command(kind)],
        timeout=240,
    )
    assert result.returncode == EXPECTED_STATUS[kind], result.stderr
    return root / kind


def record_all(root: Path) -> dict[str, Path]:
    return {kind: record(root, kind) for kind in KINDS}
