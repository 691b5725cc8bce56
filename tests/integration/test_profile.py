"""probe.profile(): a block of a long-lived process, recorded with its children and nothing else."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from probe.session import format as fmt
from probe.session.reader import Session
from tests.conftest import PROGRAMS, PYTHON, probe_env, steps_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def block(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], Path]:
    dest = tmp_path_factory.mktemp("profile")
    out = subprocess.run(
        [PYTHON, str(PROGRAMS / "profile_block.py"), str(dest)],
        capture_output=True,
        text=True,
        env=probe_env(),
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), dest


def test_the_block_its_workers_and_its_subprocess_are_recorded(
    block: tuple[dict[str, object], Path],
) -> None:
    facts, dest = block
    session = Session(dest / "block")
    assert session.meta["kind"] == "profile"
    assert session.meta["status"] == "finished" and session.meta["exit"]["code"] == 0
    root = session.meta["root_pid"]
    agents = {f.pid for f in session.files if f.writer == "agent"}
    workers = {int(p) for e in session.events_of("loader_iter") for p in e["workers"]}
    assert len(workers) == 4  # two epochs, two forked workers each
    assert agents == {root, facts["inside"], *workers}
    assert facts["outside"] not in agents  # started after the block: not recorded
    sampled = {int(p) for p in session.table("proc")["pid"]}
    assert workers <= sampled and root in sampled
    sampler = next(f for f in session.files if f.writer == "sampler")
    assert sampler.pid != root and sampler.pid not in sampled  # the helper leaves itself out
    assert steps_of(session) == 24  # optimizer steps: 2 epochs x 12 batches
    assert steps_of(session, fmt.STEP_SOURCE_BACKWARD) == 24


def test_only_the_block_is_judged(block: tuple[dict[str, object], Path]) -> None:
    facts, dest = block
    # idle for a second before the block and half a second after it: neither is in the run
    assert 0 < float(facts["duration_s"]) <= float(facts["block_s"])  # type: ignore[arg-type]
    assert facts["category"] == "input-bound"  # the dataset sleeps 4 ms an item in 2 workers
    assert json.loads((dest / "block" / "diagnosis.json").read_text())["category"] == "input-bound"
    assert Path(str(facts["report"])) == dest / "block.html"
    assert "probe: input-bound" in str(facts["repr_html"])


def test_the_process_is_left_as_it_was(block: tuple[dict[str, object], Path]) -> None:
    facts, _ = block
    assert facts["env_restored"] is True
    assert facts["threads_left"] == 0
    assert facts["children_left"] == 0  # the sampler helper ended with the block
    assert facts["agent_after"] is False
    assert facts["nested"] == "probe.profile() blocks cannot be nested or run at once"


def test_an_exception_in_the_block_is_recorded(block: tuple[dict[str, object], Path]) -> None:
    _, dest = block
    meta = Session(dest / "raises").meta
    assert meta["exit"]["code"] == 1
    assert meta["profile"]["exception"] == "ValueError: bad batch"
    source = (PROGRAMS / "profile_block.py").read_text().splitlines()
    line = next(n for n, text in enumerate(source, 1) if 'probe.profile("raises"' in text)
    assert meta["profile"]["block"] == f"{PROGRAMS / 'profile_block.py'}:{line}"


def test_a_profiled_block_exports_like_any_session(
    block: tuple[dict[str, object], Path], tmp_path: Path
) -> None:
    from probe.cli import main
    from tests.export_checks import check_speedscope, check_trace_events

    _, dest = block
    assert (
        main(["export", str(dest / "block"), "-f", "chrome-trace", "-o", str(tmp_path / "t")]) == 0
    )
    facts = check_trace_events(json.loads((tmp_path / "t").read_text()))
    assert sorted(n for n in facts.process_names.values() if n.startswith("DataLoader")) == [
        "DataLoader worker 0",
        "DataLoader worker 0",
        "DataLoader worker 1",
        "DataLoader worker 1",
    ]
    assert main(["export", str(dest / "block"), "-f", "speedscope", "-o", str(tmp_path / "s")]) == 0
    check_speedscope(json.loads((tmp_path / "s").read_text()))
