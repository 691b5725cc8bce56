"""Phases of a run on hand-built sessions: start-up, warm-up, loop, teardown; a run that never
reached its loop; torch.compile's compilations as start-up and as recompilation; and every view of
the phases agreeing with the analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from probe.analysis.diagnosis import diagnose, to_json
from probe.analysis.phases import LOOP, STARTUP, TEARDOWN, WARMUP, program_frame
from probe.analysis.stacks import STATE, classify_frames
from probe.analysis.timeline import build_timeline
from probe.report.page import build_page
from probe.report.terminal import summary_lines
from probe.session.reader import Frame, Session
from probe.testing import FrameSpec, SessionBuilder
from tests.phase_agreement import check_phases_agree
from tests.unit.synthetic_runs import (
    COMPILING,
    FORWARD,
    IMPORT_TRANSFORMERS,
    IMPORTING,
    MISSING,
    RUNNING_COMPILED,
    SITE,
    TRACEBACK,
    TRAIN,
    Run,
    compiled_run,
    startup_crash,
)


def _frames(spec: list[FrameSpec]) -> list[Frame]:
    return [Frame(func=func, file=file, line=line) for file, func, line in spec]


def terminal(d: Any) -> str:
    return "\n".join(summary_lines(d, session_dir=Path("s"), report=None))


# -- compiling, and running what was compiled -----------------------------------------------------


def test_running_compiled_code_is_the_models_work_not_compiling() -> None:
    assert classify_frames(_frames(RUNNING_COMPILED)) == STATE["torch"]
    assert classify_frames(_frames(COMPILING)) == STATE["compile"]
    lazy_backward = [
        *TRAIN,
        (f"{SITE}/torch/_tensor.py", "Tensor.backward", 623),
        (f"{SITE}/torch/_functorch/_aot_autograd/runtime_wrappers.py", "_backward_impl", 3551),
        (f"{SITE}/torch/_inductor/compile_fx.py", "bw_compiler", 2300),
        (f"{SITE}/torch/_inductor/graph.py", "GraphLowering.run", 900),
    ]
    assert classify_frames(_frames(lazy_backward)) == STATE["compile"]
    autotune = [
        *TRAIN,
        (f"{SITE}/torch/_inductor/output_code.py", "CompiledFxGraph.__call__", 763),
        (f"{SITE}/torch/_inductor/runtime/triton_heuristics.py", "CachingAutotuner.run", 1200),
        (
            f"{SITE}/torch/_inductor/runtime/triton_heuristics.py",
            "CachingAutotuner.autotune_to_one_config",
            1010,
        ),
    ]
    assert classify_frames(_frames(autotune)) == STATE["compile"]
    script = [*TRAIN, (f"{SITE}/torch/jit/_script.py", "script", 1400)]
    assert classify_frames(_frames(script)) == STATE["compile"]


def test_compilers_and_what_the_program_started_while_compiling_are_compilation(
    tmp_path: Path,
) -> None:
    b = SessionBuilder(tmp_path / "s", duration_s=10)
    b.process(100, torch_threads=2)
    b.steps(100, np.arange(4.0, 10.0, 0.05))
    b.agent(100).events.append(
        {"type": "compile", "t": int(b.ns(1.0)), "dur": 2_000_000_000, "compile_id": "0/0"}
    )
    b.process(301, ppid=100, argv=["g++", "/tmp/x.cpp", "-shared"], python=False, start=1.5)
    b.process(302, ppid=301, argv=["/usr/lib/gcc/cc1plus", "-quiet"], python=False, start=1.6)
    # a python -c check of a built library, started by torch while compiling
    b.process(303, ppid=100, argv=["python", "-c", "import ctypes"], python=False, start=2.0)
    worker = [
        "python",
        f"{SITE}/torch/_inductor/compile_worker/__main__.py",
        "--workers=2",
    ]
    b.process(304, ppid=100, argv=worker, start=8.0)
    b.process(305, ppid=100, argv=["python", "helper.py"], python=False, start=8.0)
    b.process(201, ppid=100, worker=0, start=3.0)
    tl = build_timeline(Session(b.write()))
    roles = {pid: info.role for pid, info in tl.processes.items()}
    assert roles == {
        100: "main",
        201: "worker",
        301: "compiler",
        302: "compiler",
        303: "compiler",
        304: "compiler",
        305: "other",
    }


# -- start-up, warm-up, loop, teardown ------------------------------------------------------------


def test_phases_come_from_the_first_and_last_step_and_what_start_up_did(tmp_path: Path) -> None:
    d = diagnose(Run(duration=24.0, start=4.0, teardown=3.0).build(tmp_path / "s"))
    phases = d.phases
    startup = phases.get(STARTUP)
    assert startup is not None
    first = float(d.timeline.steps.start.min())
    last = float(d.timeline.steps.end.max())
    assert startup.end == first == pytest.approx(4.0, abs=0.06)
    assert startup.detail["importing"] == pytest.approx(4.0, abs=0.1)
    assert "first step" in startup.reason
    assert phases.window is not None and phases.window[1] == last
    assert [p.name for p in phases.phases][-1] == TEARDOWN
    assert phases.get(TEARDOWN).seconds == pytest.approx(3.0, abs=0.1)  # type: ignore[union-attr]
    assert d.category == "healthy"
    check_phases_agree(d)
    assert "phases: start-up 0-4.0 s (importing 4.0 s)" in terminal(d)


def test_warm_up_steps_are_a_phase_the_step_graph_and_the_ribbon_show(tmp_path: Path) -> None:
    b = SessionBuilder(tmp_path / "s", duration_s=14)
    b.process(100, torch_threads=2)
    warm = 1.0 + np.cumsum(np.full(10, 0.3))  # ten slow steps: caches, allocator, compilation
    steady = warm[-1] + np.cumsum(np.full(200, 0.05))
    b.steps(100, np.concatenate([[1.0], warm, steady]))
    b.cpu(100, main=0.95, pool=0.9)
    b.system(busy=1.8)
    b.stacks(100, np.arange(0, 14, 0.01), lambda x: IMPORTING if x < 1.0 else FORWARD)
    d = diagnose(Session(b.write()))
    warmup = d.phases.get(WARMUP)
    assert warmup is not None and warmup.start == pytest.approx(1.0)
    assert d.phases.warmup_steps >= 9
    assert d.window is not None and d.window[0] == warmup.end
    assert "change point" in warmup.reason
    check_phases_agree(d)


def test_a_run_without_steps_starts_its_loop_where_imports_end(tmp_path: Path) -> None:
    b = SessionBuilder(tmp_path / "s", duration_s=20)
    b.process(100)
    b.cpu(100, main=lambda x: np.where(x < 3, 1.0, 0.9), rss=200e6)
    b.system(busy=1.0)
    b.stacks(100, np.arange(0, 20, 0.01), lambda x: IMPORTING if x < 3 else TRAIN)
    d = diagnose(Session(b.write()))
    assert d.window is not None
    assert d.window[0] >= 3.0 - 1e-9
    startup = d.phases.get(STARTUP)
    assert startup is not None and startup.end == pytest.approx(3.0, abs=0.11)
    assert "stopped importing" in startup.reason
    check_phases_agree(d)


# Installed from a wheel, probe's import hook (which wraps each module's loading to hook torch)
# is the first site-packages frame past importlib: the import is still the package's.
PROBE_IMPORT_HOOK = (
    f"{SITE}/probe/agent/imports.py",
    "PostImportFinder.find_spec.<locals>.exec_module",
    9,
)


@pytest.mark.parametrize(
    "importing",
    [
        IMPORT_TRANSFORMERS,
        [*IMPORT_TRANSFORMERS[:2], PROBE_IMPORT_HOOK, *IMPORT_TRANSFORMERS[2:]],
    ],
    ids=["editable", "through-probes-import-hook"],
)
def test_a_long_start_up_is_remarked_as_start_up_with_the_packages_it_imported(
    tmp_path: Path, importing: list[tuple[str, str, int]]
) -> None:
    b = SessionBuilder(tmp_path / "s", duration_s=40)
    b.process(100, torch_threads=2)
    b.steps(100, np.arange(14.0, 40.0, 0.05))
    b.cpu(100, main=0.95, pool=lambda x: np.where(x < 14, 0.0, 0.9))
    b.system(busy=lambda x: np.where(x < 14, 1.0, 1.85))
    b.stacks(100, np.arange(0, 40, 0.01), lambda x: importing if x < 14 else FORWARD)
    d = diagnose(Session(b.write()))
    assert d.phases.imports == {"transformers": pytest.approx(14.0, abs=0.1)}
    remark = d.phases.startup_remark()
    assert "start-up took 14.0 s (importing 14.0 s: transformers 14.0 s)" in remark
    text = terminal(d)
    assert f"start-up: {remark}" in text
    assert d.category == "healthy"  # imports are not the loop: no python-bound, no io-bound
    check_phases_agree(d)


# -- a run that never reached its loop ------------------------------------------------------------


def test_a_run_that_dies_in_start_up_gets_insufficient_data_naming_the_exception(
    tmp_path: Path,
) -> None:
    d = diagnose(startup_crash(tmp_path / "s"))
    assert d.category == "insufficient-data"
    assert d.window is None and not d.phases.reached_loop
    assert [p.name for p in d.phases.phases] == [STARTUP]
    top = d.top
    assert top is not None
    assert top.title == (
        "No loop to judge: the command ended with FileNotFoundError after 5.5 s, before its "
        "first step"
    )
    assert "load_data (train.py:12)" in top.summary and "start-up" in top.summary
    assert top.next_step == "Fix the FileNotFoundError in load_data (train.py:12)"
    # start-up is never judged as a loop: no python-bound, memory-growth or gc-pauses
    assert [f.id for f in d.issues] == ["insufficient-data"]
    assert all(
        f.status == "insufficient-data" and "never reached its loop" in f.reason
        for k, f in d.findings.items()
        if k != "insufficient-data"
    )
    doc = to_json(d)
    assert doc["window"] is None
    assert doc["run"]["exception"] == {
        "type": "FileNotFoundError",
        "message": MISSING,
        "pid": 100,
        "where": "load_data (train.py:12)",
        "file": "/work/train.py",
        "line": 12,
        "func": "load_data",
    }
    text = terminal(d)
    assert "verdict: insufficient-data" in text
    assert "FileNotFoundError" in text and "load_data (train.py:12)" in text
    page = build_page(d)
    assert "(in load_data (train.py:12))" in page.exit_notice
    assert page.window is None
    check_phases_agree(d)


def test_a_run_that_took_batches_before_it_died_reached_its_loop(tmp_path: Path) -> None:
    d = diagnose(startup_crash(tmp_path / "s", waits=5))
    assert d.phases.reached_loop
    assert d.run["exception"]["where"] == "load_data (train.py:12)"
    assert "exception: FileNotFoundError" in terminal(d)
    check_phases_agree(d)


def test_a_failed_exit_without_an_exception_says_how_it_ended(tmp_path: Path) -> None:
    d = diagnose(startup_crash(tmp_path / "s", exception=False))
    assert d.category == "insufficient-data" and d.window is None
    assert d.top is not None
    assert "exited with status 1 after 5.5 s, before its first step" in d.top.title
    assert "exception" not in d.run
    check_phases_agree(d)


def test_program_frame_is_the_innermost_frame_of_the_programs_own_code() -> None:
    frames = [(f, line, func) for f, line, func in TRACEBACK]
    assert program_frame(frames) == ("/work/train.py", 12, "load_data")
    library_only = [("<string>", 1, "<module>"), (f"{SITE}/torch/serialization.py", 9, "load")]
    assert program_frame(library_only) == library_only[-1]
    assert program_frame([]) is None


# -- torch.compile: start-up, and recompilation in the loop ---------------------------------------


def test_compilation_before_the_first_step_is_start_up_and_compiled_steps_are_the_model(
    tmp_path: Path,
) -> None:
    d = diagnose(compiled_run(tmp_path / "s", recompile_every=0, recompile_s=0.0))
    startup = d.phases.get(STARTUP)
    assert startup is not None and startup.detail["compiling"] == pytest.approx(2.0)
    assert startup.detail["importing"] == pytest.approx(3.0, abs=0.05)
    assert d.category == "healthy"
    assert d.activity.get("compile", 0.0) == 0.0  # running compiled code is not compiling
    assert d.activity["torch"] > 0.9
    assert d.findings["recompilation"].status == "not-detected"
    check_phases_agree(d)


def test_recompilation_that_keeps_happening_in_the_loop_is_a_finding(tmp_path: Path) -> None:
    d = diagnose(compiled_run(tmp_path / "s", recompile_every=40, recompile_s=0.6))
    f = d.findings["recompilation"]
    assert f.is_issue, f.reason
    assert d.category == "recompilation"
    assert f.severity == "high"  # 0.6 s of every 40 * 50 ms + 0.6 s: ~23 %
    ev = f.evidence
    loop = d.phases.get(LOOP)
    assert loop is not None
    inside = [c for c in d.timeline.compilations if loop.start <= c.start < loop.end]
    assert ev["compilations"] == len(inside) >= 5
    assert ev["recompilations"] == len(inside)
    assert d.window is not None
    steady = d.timeline.steps.within(d.window[0] - 1e-6, d.window[1] + 1e-6)
    assert ev["steps_per_compilation"] == pytest.approx(len(steady) / len(inside), abs=0.1)
    assert ev["functions"][0]["function"] == "Net.forward (model.py:20)"
    assert ev["functions"][0]["reasons"] == ["tensor 'x' size mismatch at index 1"]
    assert ev["source"] == "compile events"
    assert "the guard that failed: tensor 'x' size mismatch" in f.summary
    assert f.next_step == "Stop shapes from changing, or mark the changing dimension dynamic"
    # steps stalled by compiling are recompilation's, not a periodic stall of their own
    ids = [i.id for i in d.issues]
    if "periodic-stall" in ids:
        assert ids.index("recompilation") < ids.index("periodic-stall")
    page = build_page(d)
    cpu = page.graph("cpu")
    assert cpu is not None and cpu.states is not None
    assert (cpu.states.kinds or []).count("compiling") == len(d.timeline.compilations)
    check_phases_agree(d)


def test_steps_that_recompiled_are_left_out_of_the_other_verdicts_steps(tmp_path: Path) -> None:
    from probe.analysis.detectors.base import Context

    d = diagnose(compiled_run(tmp_path / "s", recompile_every=40, recompile_s=0.6))
    ctx = Context(d.timeline, d.segmentation)
    inside = d.phases.compilations
    assert len(ctx.all_steps) - len(ctx.steps) == len(inside)
    assert float(ctx.steps.duration.max()) == pytest.approx(0.05, abs=0.01)
    assert d.findings["periodic-stall"].status != "issue"  # the stalls are recompilation's


def test_memory_that_grows_as_the_loop_recompiles_comes_after_recompilation(
    tmp_path: Path,
) -> None:
    d = diagnose(
        compiled_run(tmp_path / "s", recompile_every=40, recompile_s=0.3, rss_per_compile=60e6)
    )
    ids = [f.id for f in d.issues]
    assert "memory-growth" in ids, d.findings["memory-growth"].reason
    assert d.findings["memory-growth"].impact > d.findings["recompilation"].impact
    assert ids.index("recompilation") < ids.index("memory-growth")
    assert d.category == "recompilation"


def test_one_late_compilation_is_not_recompilation(tmp_path: Path) -> None:
    d = diagnose(compiled_run(tmp_path / "s", recompile_every=250, recompile_s=1.5))
    f = d.findings["recompilation"]
    assert not f.is_issue
    assert f.evidence["compilations"] == 1
    check_phases_agree(d)


def test_recompilation_is_found_from_stack_samples_when_torch_reports_none(
    tmp_path: Path,
) -> None:
    d_events = diagnose(compiled_run(tmp_path / "s", recompile_every=40, recompile_s=0.6))
    # Same run, no compile events: only the compiling stack samples show the compilations.
    b = SessionBuilder(tmp_path / "t", duration_s=30)
    b.process(100, torch_threads=2)
    tl = d_events.timeline
    b.steps(100, np.concatenate([[tl.steps.start.min()], tl.steps.end]))
    b.cpu(100, main=0.95, pool=lambda x: np.where(x < 5, 0.0, 0.9), rss=400e6)
    b.system(busy=lambda x: np.where(x < 5, 1.0, 1.85))
    compiles = [(c.start, c.end) for c in tl.compilations]

    def frames(x: float) -> list[FrameSpec]:
        if x < 3.0:
            return IMPORTING
        if any(a <= x < c for a, c in compiles):
            return COMPILING
        return RUNNING_COMPILED

    b.stacks(100, np.arange(0, 30, 0.01), frames)
    d = diagnose(Session(b.write()))
    f = d.findings["recompilation"]
    assert f.is_issue and f.evidence["source"] == "stack samples"
    assert f.evidence["compilations"] == d_events.findings["recompilation"].evidence["compilations"]
    assert f.evidence["compile_share"] == pytest.approx(
        d_events.findings["recompilation"].evidence["compile_share"], abs=0.02
    )
    check_phases_agree(d)


# -- every view agrees, whatever the run ----------------------------------------------------------


@pytest.mark.parametrize(
    "run",
    [
        Run(),
        Run(duration=2.0, start=0.2),  # too short for the HMM: the whole run is proposed
        Run(wait=0.02),
        Run(gc_every=1.0, gc_pause=0.15),
        Run(stall_every=30, stall=0.4),
        Run(teardown=5.0, start=3.0),
        Run(main_cpu=1.0, pool_cpu=0.05, python_share=0.9),
        Run(duration=60.0, step=0.5, start=8.0),  # few, long steps
    ],
    ids=["plain", "too-short", "input", "gc", "stalls", "teardown", "python", "slow-steps"],
)
def test_the_terminal_json_and_report_agree_on_the_phases(run: Run, tmp_path: Path) -> None:
    check_phases_agree(diagnose(run.build(tmp_path / "s")))


def test_the_phases_agree_when_the_hmm_cannot_tell_the_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import probe.analysis.segment as segment_module

    def fail(*args: Any) -> Any:
        raise ValueError("rows of transmat_ must sum to 1.0")

    monkeypatch.setattr(segment_module, "_fit", fail)
    d = diagnose(Run(duration=20.0, start=3.0, teardown=2.0).build(tmp_path / "s"))
    assert d.segmentation.method == "whole-run"
    assert d.phases.how.startswith("the HMM could not tell the steady load: the HMM fit failed")
    assert d.phases.how in terminal(d)
    # the loop is still bounded by the facts: the first step and the last
    assert d.window is not None
    assert d.window[0] >= float(d.timeline.steps.start.min())
    assert d.window[1] == float(d.timeline.steps.end.max())
    check_phases_agree(d)
