"""Fault injection: probe's own faults never become the command's.

Each test breaks a piece of probe's machinery while a command runs under ``probe doctor`` (the
disk fills up at the start, in the middle, at the end; the session is removed, made read-only;
the agent's file is closed under it; a collector, the sampler, a detector, the analysis or the
renderer fails) and checks four things: the command's exit status is probe's, its output is
unchanged, probe says plainly what it lost, and the session keeps what could be kept.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probe.cli import main
from probe.session import format as fmt
from probe.session.reader import Session
from tests.conftest import PROGRAMS, PYTHON, probe_env, steps_of

FAULTY = str(PROGRAMS / "faulty.py")
STATUS = 3  # the program's exit status, which probe must return
TRAINED = "trained 80 steps\n"


def doctor(
    dest: Path,
    *program_args: str,
    collect_only: bool = False,
    file_size_limit: int | None = None,
) -> subprocess.CompletedProcess[str]:
    mode = ["--collect-only"] if collect_only else ["--no-open"]
    argv = [PYTHON, "-m", "probe", "doctor", *mode, "--dest", str(dest), "--name", "s", "--"]
    argv += [PYTHON, FAULTY, *program_args, "--exit", str(STATUS)]

    def limit() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        argv,
        env=probe_env(),
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=limit if file_size_limit is not None else None,
        check=False,
    )


def _mount(*args: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", *args], capture_output=True, check=False).returncode == 0


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (root only): a disk that can really be filled."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)):
        pytest.skip("needs root and mount for a small tmpfs (RLIMIT_FSIZE is tested without)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-R", str(mnt)], check=False)


def _verdict(dest: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((dest / "s" / "diagnosis.json").read_text())
    return doc


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("probe: warning:")]


def _no_internal_error(stderr: str) -> None:
    assert "internal error" not in stderr and "Traceback" not in stderr, stderr


# -- the disk fills up -------------------------------------------------------------------------


@pytest.mark.parametrize("moment", ["start", "middle", "end"])
def test_a_disk_that_fills_up_costs_records_never_the_commands_status(
    small_fs: Path, moment: str
) -> None:
    analyse = moment != "start"  # (the analysis of what was kept: twice is enough)
    result = doctor(small_fs, "--fill", str(small_fs), "--at", moment, collect_only=not analyse)
    _no_internal_error(result.stderr)
    assert result.returncode == STATUS, result.stderr
    assert result.stdout == "filled the disk\n" + TRAINED
    warnings = _warnings(result.stderr)
    assert any("No space left on device (ENOSPC)" in w for w in warnings), result.stderr
    if analyse:
        assert any("cannot write the report" in w for w in warnings)
        assert "probe: verdict:" in result.stderr
        assert "note: partial" in result.stderr
        # The reserve left room for the run's end and the verdict.
        verdict = _verdict(small_fs)
        assert verdict["partial"] is True
        assert verdict["run"]["exit_code"] == STATUS
    session = Session(small_fs / "s")
    assert session.meta["exit"]["code"] == STATUS
    assert not [w for w in session.warnings if "damaged" in w]  # every file ends whole
    assert session.losses
    # A full disk is not still: a write that fails part-way is cut off again, which frees what it
    # took for a moment, and small chunks fit in the unused end of a file's last page. So which
    # records after the fill are kept varies; but every step record is either kept or counted
    # dropped: 80 optimizer steps and their 80 backward passes, and the module call before the
    # first backward pass when the agent watched it.
    records = len(session.table("step"))
    dropped = sum(loss.dropped.get("step", 0) for loss in session.losses)
    assert 2 * 80 <= records + dropped <= 2 * 80 + 1
    steps = steps_of(session)
    if moment == "middle":
        assert steps >= 30  # the first half, but for the last flush before the fill
    elif moment == "end":
        assert steps >= 70


def test_a_file_size_limit_is_a_full_disk_too(tmp_path: Path) -> None:
    """RLIMIT_FSIZE on probe and the command (no root needed): every record file stops at it."""
    limit = 8 * 1024  # meta.json fits; every record file outgrows it in the first seconds
    result = doctor(tmp_path, file_size_limit=limit, collect_only=True)
    _no_internal_error(result.stderr)
    assert result.returncode == STATUS, result.stderr
    assert result.stdout == TRAINED
    assert "File too large (EFBIG)" in result.stderr
    session = Session(tmp_path / "s")
    for path in (tmp_path / "s").glob("*.rec"):
        assert path.stat().st_size <= limit
    assert {loss.source for loss in session.losses} >= {"agent", "sampler"}
    assert len(session.table("proc")) > 0 and session.has_agent_data  # what fitted was kept
    assert not [w for w in session.warnings if "damaged" in w]


# -- the destination goes away ------------------------------------------------------------------


def test_a_session_removed_while_the_command_runs(tmp_path: Path) -> None:
    session = tmp_path / "s"
    result = doctor(tmp_path, "--remove", str(session), "--child")
    _no_internal_error(result.stderr)
    assert result.returncode == STATUS, result.stderr
    assert result.stdout == "removed the session\nchild ran\n" + TRAINED
    assert f"the session {session} was removed (or hidden) while the command ran" in result.stderr
    assert not session.exists()  # nothing was created again


def test_a_session_made_read_only_while_the_command_runs(small_fs: Path) -> None:
    session = small_fs / "s"
    result = doctor(small_fs, "--read-only", str(session), "--child")
    _no_internal_error(result.stderr)
    assert result.returncode == STATUS, result.stderr
    assert result.stdout == "made the session read-only\nchild ran\n" + TRAINED
    warnings = _warnings(result.stderr)
    assert any("meta.json" in w and "Read-only file system (EROFS)" in w for w in warnings)
    assert any("diagnosis.json" in w and "EROFS" in w for w in warnings)
    assert "probe: verdict:" in result.stderr  # analysed from what was recorded
    assert "probe: json:" not in result.stderr  # it could not be written: not offered
    assert (small_fs / "s.html").is_file()  # beside the session: still writable
    # What was open kept being written; meta.json is the one from the start.
    kept = Session(session)
    assert steps_of(kept) >= 70
    assert kept.meta["status"] == "running"


# -- probe's own parts fail ---------------------------------------------------------------------


def test_the_agents_file_closed_under_it(tmp_path: Path) -> None:
    result = doctor(tmp_path, "--close-fds", str(tmp_path), collect_only=True)
    _no_internal_error(result.stderr)
    assert result.returncode == STATUS, result.stderr
    # The program's own file got the agent's descriptor number: probe never wrote into it.
    assert result.stdout == "closed every descriptor\nown file intact: True\n" + TRAINED
    assert "its record file was lost at" in result.stderr
    # "closed" when the writer looked between the close and the program's open, "replaced" when
    # the program's file already held the number: both are the same fault, seen at two moments.
    assert re.search(r"\(descriptor (closed|replaced); continued in a new file\)", result.stderr)
    session = Session(tmp_path / "s")
    files = sorted(p.name for p in (tmp_path / "s").glob("agent-*.rec"))
    assert len(files) == 2 and files[0].endswith("-1.rec")
    assert steps_of(session) >= 75  # before and after, in two files


def test_a_collector_that_raises_on_every_call(tmp_path: Path) -> None:
    """An optimizer that cannot be hashed (as if torch had changed an internal): the step hook
    fails at every step, the training does not notice."""
    result = doctor(tmp_path, "--unhashable-optimizer", collect_only=True)
    _no_internal_error(result.stderr)
    assert result.returncode == STATUS, result.stderr
    assert result.stdout == TRAINED
    assert "optimizer step hook failed at" in result.stderr
    assert "unhashable type: 'Unhashable'" in result.stderr
    session = Session(tmp_path / "s")
    (loss,) = session.losses
    (episode,) = loss.episodes
    assert episode.part == "optimizer step hook" and episode.count == 80
    assert steps_of(session) == 0
    # the other hooks go on: every backward pass is recorded
    assert steps_of(session, fmt.STEP_SOURCE_BACKWARD) == 80


# In this process (``main``), with a piece of probe replaced by one that fails.

COMMAND = [
    PYTHON,
    "-c",
    # A loop of 100 steps, 20 ms each (a run that never reached a loop is not judged by the
    # detectors; its steps say it did, on any machine, where 2 s of bare computation was read as
    # start-up on a loaded one).
    "import time, probe; print('out', flush=True)\n"
    "for _ in range(100):\n"
    "    t = time.time()\n"
    "    while time.time() - t < 0.02: sum(range(1000))\n"
    "    probe.step()\n"
    "raise SystemExit(3)",
]


def _doctor_here(tmp_path: Path, *options: str) -> int:
    return main(
        ["doctor", "--no-open", "--dest", str(tmp_path), "--name", "s", *options, "--", *COMMAND]
    )


def _fail(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected fault")


def test_a_detector_that_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from probe.analysis.detectors import memory_growth

    monkeypatch.setattr(memory_growth, "detect", _fail)
    assert _doctor_here(tmp_path) == STATUS
    out, err = capfd.readouterr()
    assert out == "out\n"
    assert "the memory-growth check failed (RuntimeError: injected fault)" in err
    assert "probe: verdict:" in err and "note: partial" in err
    verdict = _verdict(tmp_path)
    assert verdict["partial"] is True and verdict["category"] != "healthy"
    assert verdict["losses"][-1]["episodes"][0] == {
        "what": "detector",
        "part": "memory-growth",
        "from_s": None,
        "until_s": None,
        "cause": "RuntimeError: injected fault",
    }


def test_the_analysis_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from probe.analysis import diagnosis

    monkeypatch.setattr(diagnosis, "diagnose", _fail)
    assert _doctor_here(tmp_path) == STATUS
    out, err = capfd.readouterr()
    assert out == "out\n"
    assert (
        "probe: warning: the analysis failed: RuntimeError: injected fault (a bug in probe" in err
    )
    assert "no verdict for this run" in err
    assert Session(tmp_path / "s").meta["exit"]["code"] == STATUS  # the session is whole


def test_the_renderer_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from probe.report import html

    monkeypatch.setattr(html, "render", _fail)
    assert _doctor_here(tmp_path) == STATUS
    out, err = capfd.readouterr()
    assert out == "out\n"
    assert "the report could not be rendered (RuntimeError: injected fault)" in err
    assert "probe: verdict:" in err
    assert _verdict(tmp_path)["run"]["exit_code"] == STATUS


def test_the_outside_sampler_failing_every_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from probe.collectors.proctree import ProcessTreeSampler

    monkeypatch.setattr(ProcessTreeSampler, "sample", _fail)
    assert _doctor_here(tmp_path, "--sample-interval", "10") == STATUS
    out, err = capfd.readouterr()
    assert out == "out\n"
    assert "outside sampler: outside sampler failed at" in err
    assert "injected fault" in err and "switched off" in err
    assert _verdict(tmp_path)["partial"] is True


def test_nvml_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from probe.collectors.gpu import GpuSampler
    from probe.errors import CollectorError

    class LostGpu:
        def describe(self) -> list[dict[str, object]]:
            return [{"index": 0, "name": "NVIDIA H200"}]

        def sample(self, buffer: object, now: int) -> None:
            raise CollectorError("NVML returned error 15 for every GPU")

        def close(self) -> None:
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(GpuSampler, "open", classmethod(lambda cls: LostGpu()))
    assert _doctor_here(tmp_path, "--sample-interval", "10") == STATUS
    out, err = capfd.readouterr()
    assert out == "out\n"
    assert "GPU sampling (NVML) failed at" in err and "switched off" in err
    assert "closing the GPU library failed" in err
    session = Session(tmp_path / "s")
    assert len(session.table("proc")) > 0  # the tree was still sampled
    assert len(session.table("gpu")) == 0


@pytest.mark.skipif(sys.platform != "linux", reason="Linux only")
def test_a_destination_full_before_the_command_starts_is_an_error_not_a_run(
    small_fs: Path,
) -> None:
    """Nothing has run yet: like an unwritable --dest, probe says so and does not start it."""
    block = b"\0" * 65536
    with open(small_fs / "filler", "wb", buffering=0) as f:
        try:
            while f.write(block):
                pass
        except OSError:
            pass
    result = doctor(small_fs)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "probe: error: cannot write the session in" in result.stderr
    assert "No space left on device (ENOSPC)" in result.stderr
    assert not (small_fs / "s").exists()
