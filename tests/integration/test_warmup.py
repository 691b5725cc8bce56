"""The warm-up (probe/cli/warmup.py) changes neither the verdict nor the command's exit status;
nor does its reading of the session while the command runs (probe.session.preread)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import PYTHON, REPO, SCENARIOS, probe_env, run_probe

DIAGNOSE = """
import json, sys
from probe.analysis.diagnosis import diagnose
from probe.report.renderer import Outputs, renderer
from probe.session.reader import Session
if sys.argv[2] == "warm":
    from probe.cli.warmup import Warmup
    w = Warmup(after_s=0.0, check_room=False)
    w.start()
    w._thread.join(120)
    assert w.finished, w.summary()
path = sys.argv[1]
d = diagnose(Session(path))
sys.stdout.write(renderer("json").render(d, Outputs(session_dir=__import__("pathlib").Path(path))))
"""


def _diagnosis(session: Path, mode: str) -> str:
    out = subprocess.run(
        [PYTHON, "-c", DIAGNOSE, str(session), mode],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=probe_env(),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_a_warmed_analysis_gives_the_cold_one_byte_for_byte(tmp_path: Path) -> None:
    """Every warm-up step, the rehearsal's analysis and renderers included, then the analysis of
    another session: the same diagnosis as in a fresh process."""
    from tests.unit.synthetic_runs import Run

    Run(duration=20.0, stall_every=40, stall=0.6).build(tmp_path / "s")
    cold, warm = _diagnosis(tmp_path / "s", "cold"), _diagnosis(tmp_path / "s", "warm")
    assert json.loads(cold)["category"] == "periodic-stall"  # a verdict, not just any output
    assert warm == cold


def test_probe_doctor_with_the_warm_up_keeps_the_exit_status_and_the_verdict(
    tmp_path: Path,
) -> None:
    """A real run long enough for the warm-up to start (``always``: whatever the machine's load),
    ending with status 3: probe exits 3, and its verdict is what a cold `probe report` of the same
    session says. With PROBE_TIMINGS=1 it says what each stage after the command took, in order
    (the verdict between writing it and rendering the page)."""
    program = SCENARIOS / "memory_growth_cache_no_torch.py"
    command = f'"{PYTHON}" "{program}"; exit 3'
    result = run_probe(
        ["doctor", "--dest", str(tmp_path), "--name", "s", "--", "sh", "-c", command],
        env=probe_env(PROBE_WARMUP="always", PROBE_TIMINGS="1"),
        timeout=180,
    )
    assert result.returncode == 3, result.stderr[-3000:]
    assert "probe: verdict: memory-growth" in result.stderr, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    stages = [line.split(": ")[2] for line in lines if line.startswith("probe: timings: ")]
    expected = [
        "stopping the outside sampler",
        "recording how the run ended",
        "loading the session",
        "building the timeline",
        "checking memory-growth",
        "writing the verdict",
        "printing the verdict",
        "rendering the page",
    ]
    assert [s for s in stages if s in expected] == expected, stages

    def at(start: str) -> int:
        return next(k for k, line in enumerate(lines) if line.startswith(start))

    written, verdict = at("probe: timings: writing the verdict:"), at("probe: verdict:")
    assert written < verdict < at("probe: timings: rendering the page:"), lines
    session = tmp_path / "s"
    warm = json.loads((session / "meta.json").read_text())["warmup"]
    assert warm["steps_done"] >= 1 and warm["error"] is None, warm
    warmed = (session / "diagnosis.json").read_text()
    again = run_probe(["report", str(session), "--json", str(tmp_path / "cold.json")])
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "cold.json").read_text() == warmed


def test_a_session_read_while_it_was_recorded_gets_the_verdict_a_cold_read_gets(
    tmp_path: Path,
) -> None:
    """A training loop (DataLoader, AdamW) long enough for the warm-up to read the session
    several times while it ran (``always``: whatever the machine's load): the diagnosis
    `probe doctor` made from that is byte for byte the one `probe report` makes by reading the
    session from scratch with no warm-up."""
    program = REPO / "benchmarks" / "workloads" / "paced_train.py"
    command = [PYTHON, str(program), "--seconds", "24", "--workers", "1"]
    result = run_probe(
        ["doctor", "--dest", str(tmp_path), "--name", "s", "--", *command],
        env=probe_env(PROBE_WARMUP="always"),
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    session = tmp_path / "s"
    warm = json.loads((session / "meta.json").read_text())["warmup"]
    assert warm["error"] is None, warm
    assert warm["preread"]["advances"] >= 1 and warm["preread"]["parsed_mb"] > 0, warm
    again = run_probe(
        ["report", str(session), "--json", str(tmp_path / "cold.json")],
        env=probe_env(PROBE_WARMUP="off"),
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "cold.json").read_text() == (session / "diagnosis.json").read_text()
