"""The analysis, on hand-built sessions: timeline, segmentation, every detector, the diagnosis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from probe.analysis.detectors.base import Context
from probe.analysis.diagnosis import Diagnosis, diagnose, to_json
from probe.analysis.periodicity import find_period
from probe.analysis.segment import LOAD, NOISE, _name_states, segment
from probe.analysis.timeline import build_timeline, overlap_with, rate_on_grid, training_pids
from probe.session import format as fmt
from probe.session.reader import Session
from probe.testing import SessionBuilder
from probe.units import Quantity
from tests.unit.synthetic_runs import IMPORTING, PYTHON_WORK, TRAIN, Run


def verdicts(run: Run, tmp_path: Path) -> tuple[str, dict[str, str]]:
    d = diagnose(run.build(tmp_path / "s"))
    return d.category, {k: f.status for k, f in d.findings.items()}


def untyped_numbers(value: object, path: str = "") -> list[str]:
    """Where evidence holds a bare float: a number that does not say its unit (bare ints are
    identifiers: pids, ranks)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in untyped_numbers(v, f"{path}.{k}")]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in untyped_numbers(v, f"{path}[{i}]")]
    if isinstance(value, (float, np.floating)) and not isinstance(value, Quantity):
        return [path]
    return []


def assert_evidence_typed(d: Diagnosis) -> None:
    for finding in d.findings.values():
        assert untyped_numbers(finding.evidence) == [], finding.id


# -- building blocks ------------------------------------------------------------------------------


def test_rate_on_grid_is_exact_for_constant_rates() -> None:
    t = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    cum = t * 1.5  # 1.5 cores
    edges = np.array([0.0, 0.2, 0.4])
    assert np.allclose(rate_on_grid(t, cum, edges), [1.5, 1.5])


def test_overlap_with_clips_events_to_intervals() -> None:
    starts = np.array([0.0, 1.0, 2.0])
    ends = np.array([1.0, 2.0, 3.0])
    got = overlap_with(starts, ends, np.array([0.5, 1.8]), np.array([0.2, 0.4]))
    assert np.allclose(got, [0.2, 0.2, 0.2])


def test_timeline_steps_carry_waits_and_gc(tmp_path: Path) -> None:
    run = Run(duration=6, wait=0.01, gc_every=1.0, gc_pause=0.02)
    tl = build_timeline(run.build(tmp_path / "s"))
    steps = tl.steps
    assert len(steps) > 50
    assert np.allclose(np.median(steps.duration), 0.05, atol=1e-3)
    assert np.allclose(np.median(steps.data_wait), 0.01, atol=1e-3)
    assert steps.gc.sum() == pytest.approx(0.02 * int(steps.gc_full.sum()), rel=0.01)
    assert tl.processes[100].role == "main"
    assert tl.processes[201].role == "worker"
    assert tl.threads[100].main[tl.bin_of(3.0)] == pytest.approx(0.95)


# -- segmentation -------------------------------------------------------------------------------


def _import_and_teardown(path: Path) -> tuple[float, float]:
    """8 s of imports, 16 s of training that waits 20 % on data, 6 s of slow teardown."""
    b = SessionBuilder(path, duration_s=30)
    pid = 100
    b.process(pid, torch_threads=2)
    ends = np.arange(8.0, 24.0, 0.05)
    b.steps(pid, ends)
    b.loader(pid)
    b.waits(pid, ends[:-1] + 0.001, np.full(len(ends) - 1, 0.01), workers=[])

    def phase(x: np.ndarray, a: float, b_: float, c: float) -> np.ndarray:
        return np.where(x < 8, a, np.where(x < 24, b_, c))

    b.cpu(pid, main=lambda x: phase(x, 1.0, 0.8, 0.3), pool=lambda x: phase(x, 0.0, 0.9, 0.0))
    b.system(busy=lambda x: phase(x, 1.0, 1.7, 0.3))
    times = np.arange(0, 30, 0.01)
    b.stacks(pid, times, lambda x: IMPORTING if x < 8 else PYTHON_WORK)
    b.write()
    return 8.0, 24.0


def test_hmm_window_beats_the_whole_run(tmp_path: Path) -> None:
    from probe.session.reader import Session

    start, end = _import_and_teardown(tmp_path / "s")
    tl = build_timeline(Session(tmp_path / "s"))
    seg = segment(tl)
    assert seg.method == "hmm", seg.reason
    assert seg.window[0] == pytest.approx(start, abs=0.6)
    assert seg.window[1] == pytest.approx(end, abs=0.3)
    truth = 0.01 / 0.05

    def wait_share(t0: float, t1: float) -> float:
        w = tl.waits.within(t0, t1)
        return float(w.dur.sum()) / (t1 - t0)

    hmm_estimate = wait_share(*seg.window)
    whole_estimate = wait_share(0.0, tl.duration_s)
    assert abs(hmm_estimate - truth) < 0.02
    assert abs(whole_estimate - truth) > 0.08  # the whole run dilutes it by half
    assert seg.share(LOAD) == pytest.approx(16 / 30, abs=0.05)


def test_segmentation_is_deterministic(tmp_path: Path) -> None:
    from probe.session.reader import Session

    _import_and_teardown(tmp_path / "s")
    a = segment(build_timeline(Session(tmp_path / "s")))
    b = segment(build_timeline(Session(tmp_path / "s")))
    assert np.array_equal(a.labels, b.labels)
    assert a.window == b.window


def test_too_short_to_segment_uses_the_whole_run_and_says_so(tmp_path: Path) -> None:
    session = Run(duration=2.0, start=0.2).build(tmp_path / "s")
    seg = segment(build_timeline(session))
    assert seg.method == "whole-run"
    assert "too short" in seg.reason


def test_warmup_steps_are_dropped(tmp_path: Path) -> None:
    b = SessionBuilder(tmp_path / "s", duration_s=12)
    b.process(100, torch_threads=2)
    warm = np.cumsum(np.full(10, 0.3))  # ten slow steps: compilation, caches
    steady = warm[-1] + np.cumsum(np.full(200, 0.05))
    b.steps(100, np.concatenate([[0.0], warm, steady]))
    b.cpu(100, main=0.95, pool=0.9)
    b.system(busy=1.8)
    b.stacks(100, np.arange(0, 12, 0.01), PYTHON_WORK)
    from probe.session.reader import Session

    seg = segment(build_timeline(Session(b.write())))
    assert seg.warmup_steps >= 9
    assert seg.window[0] == pytest.approx(warm[-1], abs=0.35)


# -- detectors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "run",
    [
        Run(wait=0.02),
        Run(wait=0.02, num_workers=0),
        Run(gc_every=0.5, gc_pause=0.08),
        Run(rss=lambda t: 300e6 + 20e6 * t),
        Run(main_wait=0.4, extra_runnable=2.0),
        Run(main_cpu=0.98, pool_cpu=0.05, python_share=0.7, graph_nodes=3000),
        Run(io_share=0.3, main_cpu=0.7),
        Run(stall_every=20, stall=0.5),
        Run(duration=1.5),
        Run(duration=20, sync=0.02, gpu_util=40.0, main_cpu=0.6),
        Run(duration=20, gpu_util=15.0, main_cpu=0.5),
        Run(stall_every=20, stall=0.5, gpu_util=80.0, cuda_alloc=lambda t: 1e9 + 5e7 * t),
    ],
    ids=[
        *("input", "inline-input", "gc", "memory", "cpu", "python", "io", "stall", "short"),
        *("host-sync", "gpu-idle", "gpu-stall"),
    ],
)
def test_every_number_in_the_evidence_carries_its_unit(run: Run, tmp_path: Path) -> None:
    assert_evidence_typed(diagnose(run.build(tmp_path / "s")))


def test_healthy_compute_bound_run(tmp_path: Path) -> None:
    category, status = verdicts(Run(), tmp_path)
    assert category == "healthy", status


def test_input_bound_transform_bound_workers(tmp_path: Path) -> None:
    d = diagnose(Run(wait=0.02, worker_cpu_share=0.95).build(tmp_path / "s"))
    assert d.category == "input-bound"
    top = d.top
    assert top is not None and top.severity == "high"
    assert top.evidence["data_wait_share"] == pytest.approx(0.4, abs=0.03)
    assert top.evidence["cause"] == "transform-bound"


def test_transform_bound_workers_on_busy_cores_are_told_to_make_samples_cheaper(
    tmp_path: Path,
) -> None:
    # One worker and one intra-op thread: the job wants the 2 cores it has, and they are busy.
    run = Run(wait=0.02, worker_cpu_share=0.95, busy=1.9, num_workers=1, torch_threads=1)
    d = diagnose(run.build(tmp_path / "s"))
    top = d.top
    assert top is not None and top.id == "input-bound"
    assert top.evidence["cores_saturated"] is True and top.evidence["oversubscribed"] is False
    assert top.next_step.startswith("Make each sample cheaper")
    assert "precompute" in top.next_step
    # With a core to spare, the recommendation's first step (more workers) stands.
    d = diagnose(Run(wait=0.02, worker_cpu_share=0.95, busy=1.0).build(tmp_path / "idle"))
    top = d.top
    assert top is not None and top.id == "input-bound"
    assert top.evidence["cores_saturated"] is False and top.next_step == ""


def test_workers_and_threads_that_oversubscribe_saturated_cores_are_told_to_be_fewer(
    tmp_path: Path,
) -> None:
    # 2 busy workers and 2 intra-op threads on 2 saturated cores: fewer of them, not cheaper
    # transforms, comes first.
    d = diagnose(Run(wait=0.02, worker_cpu_share=0.95, busy=1.9).build(tmp_path / "s"))
    top = d.top
    assert top is not None and top.id == "input-bound"
    assert top.evidence["threads_wanted"] == 4 and top.evidence["oversubscribed"] is True
    assert top.next_step.startswith("Use fewer DataLoader workers or intra-op threads")
    assert "want 4 cores of the 2 there are" in top.summary
    assert "precompute" not in top.next_step + top.summary


def test_workers_with_no_transforms_of_their_own_are_not_told_to_precompute_them(
    tmp_path: Path,
) -> None:
    # The worker's samples: torch indexing a TensorDataset and collating, under the program's
    # own frames from the parent that forked it.
    frames = [
        *TRAIN,
        ("/usr/lib/python3.11/multiprocessing/process.py", "_bootstrap", 314),
        ("/venv/site-packages/torch/utils/data/_utils/worker.py", "_worker_loop", 349),
        ("/venv/site-packages/torch/utils/data/dataset.py", "__getitem__", 211),
    ]
    run = Run(
        wait=0.02,
        worker_cpu_share=0.95,
        busy=1.9,
        num_workers=1,
        torch_threads=1,
        worker_frames=frames,
    )
    top = diagnose(run.build(tmp_path / "s")).top
    assert top is not None and top.id == "input-bound"
    assert top.evidence["worker_own_code_share"] == 0.0
    assert "no transforms of its own" in top.summary
    assert "precompute" not in top.next_step and "cheaper to build" in top.summary
    own = [*frames[:-1], ("/work/train.py", "augment", 33)]
    top = diagnose(
        Run(
            wait=0.02,
            worker_cpu_share=0.95,
            busy=1.9,
            num_workers=1,
            torch_threads=1,
            worker_frames=own,
        ).build(tmp_path / "own")
    ).top
    assert top is not None and top.evidence["worker_own_code_share"] == 1.0
    assert "precompute" in top.next_step


def test_pin_memory_asked_but_not_in_effect_is_said(tmp_path: Path) -> None:
    top = diagnose(Run(wait=0.02).build(tmp_path / "s")).top
    assert top is not None and "pin_memory" not in top.summary
    run = Run(wait=0.02, loader={"pin_memory": False, "pin_memory_asked": True})
    top = diagnose(run.build(tmp_path / "asked")).top
    assert top is not None and top.id == "input-bound"
    assert top.evidence["loaders"][0]["pin_memory"] is False
    assert top.evidence["loaders"][0]["pin_memory_asked"] is True
    assert "pin_memory=True was asked but is not in effect" in top.summary


def test_input_bound_latency_bound_workers(tmp_path: Path) -> None:
    d = diagnose(Run(wait=0.02, worker_cpu_share=0.1).build(tmp_path / "s"))
    assert d.category == "input-bound"
    assert d.findings["input-bound"].evidence["cause"] == "latency-bound"
    assert d.findings["input-bound"].next_step.startswith("Overlap the waiting")


def test_input_bound_main_process_loading(tmp_path: Path) -> None:
    d = diagnose(Run(wait=0.02, num_workers=0).build(tmp_path / "s"))
    assert d.category == "input-bound"
    assert d.findings["input-bound"].evidence["cause"] == "main-process-loading"


def test_small_data_waits_are_not_input_bound(tmp_path: Path) -> None:
    category, status = verdicts(Run(wait=0.001), tmp_path)
    assert status["input-bound"] == "not-detected"
    assert category == "healthy"


def test_gc_pauses(tmp_path: Path) -> None:
    d = diagnose(Run(gc_every=0.5, gc_pause=0.08).build(tmp_path / "s"))
    assert d.category == "gc-pauses"
    f = d.findings["gc-pauses"]
    assert f.evidence["gc_share"] == pytest.approx(0.16, abs=0.02)
    assert f.severity == "high"


def test_rare_short_gc_is_fine(tmp_path: Path) -> None:
    _, status = verdicts(Run(gc_every=2.0, gc_pause=0.005), tmp_path)
    assert status["gc-pauses"] == "not-detected"


def test_memory_growth(tmp_path: Path) -> None:
    d = diagnose(Run(rss=lambda t: 300e6 + 20e6 * t).build(tmp_path / "s"))
    assert d.category == "memory-growth"
    f = d.findings["memory-growth"]
    assert f.evidence["slope_mb_per_s"] == pytest.approx(20e6 / 2**20, rel=0.05)
    assert f.evidence["seconds_to_limit"] is not None


def test_memory_that_levels_off_is_not_growth(tmp_path: Path) -> None:
    rss = lambda t: 300e6 + 400e6 * (1 - np.exp(-t / 1.5))  # noqa: E731 - a cache warming up
    _, status = verdicts(Run(rss=rss), tmp_path)
    assert status["memory-growth"] == "not-detected"


def test_memory_that_levels_off_with_a_small_drift_is_not_growth(tmp_path: Path) -> None:
    # A bounded replay buffer: RSS climbs 160 MB over the first third, then only drifts 7 MB
    # (fragmentation, allocator pools). The drift is a significant trend on its own, but not at
    # the pace of the climb and not a material amount: no leak.
    def rss(t: np.ndarray) -> np.ndarray:
        climb = 560e6 + 160e6 * np.minimum(t / 7.0, 1.0)
        return climb + 7e6 * np.clip((t - 7.0) / 13.0, 0.0, 1.0)

    _, status = verdicts(Run(rss=rss), tmp_path)
    assert status["memory-growth"] == "not-detected"


def test_memory_growth_that_speeds_up_is_growth(tmp_path: Path) -> None:
    d = diagnose(Run(rss=lambda t: 300e6 + 1e6 * t**2).build(tmp_path / "s"))
    assert d.category == "memory-growth"


def test_noisy_flat_memory_is_not_growth(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 20e6, 400)
    _, status = verdicts(Run(rss=lambda t: 500e6 + noise[: len(t)]), tmp_path)
    assert status["memory-growth"] == "not-detected"


def test_cpu_oversubscription(tmp_path: Path) -> None:
    d = diagnose(Run(main_wait=0.4, extra_runnable=2.0).build(tmp_path / "s"))
    assert d.category == "cpu-oversubscription"
    f = d.findings["cpu-oversubscription"]
    assert f.evidence["runnable_per_core"] > 1.25
    assert f.evidence["main_thread_run_queue_wait_share"] == pytest.approx(0.4 / 1.35, abs=0.03)


def test_workers_that_oversubscribe_an_input_bound_loop_are_its_input_pipeline(
    tmp_path: Path,
) -> None:
    # Two busy workers on two cores: the loop waits for them, and its thread waits for a core
    # because of them. Without the workers the job would fit the cores: input-bound comes first.
    run = Run(
        wait=0.02,
        main_cpu=0.55,
        pool_cpu=0.0,
        main_wait=0.4,
        worker_cpu_share=0.8,
        worker_wait=0.3,
    )
    d = diagnose(run.build(tmp_path / "s"))
    ids = [i.id for i in d.issues]
    assert ids[:2] == ["input-bound", "cpu-oversubscription"]
    over = d.findings["cpu-oversubscription"]
    assert over.impact > d.findings["input-bound"].impact  # ranked by cause, not by impact
    assert over.evidence["oversubscribed_without_workers"] is False


def test_a_cause_moves_only_just_before_its_symptom() -> None:
    from probe.analysis.detectors.base import Finding
    from probe.analysis.ordering import causes_first

    def issue(id_: str, **evidence: object) -> Finding:
        return Finding(id=id_, status="issue", impact=0.1, evidence=evidence)

    over = issue("cpu-oversubscription", oversubscribed_without_workers=False)
    ordered = causes_first([issue("gc-pauses"), over, issue("io-bound"), issue("input-bound")])
    assert [f.id for f in ordered] == ["gc-pauses", "input-bound", over.id, "io-bound"]
    # Oversubscribed even without the workers: ranked by impact as found.
    alone = issue("cpu-oversubscription", oversubscribed_without_workers=True)
    assert [f.id for f in causes_first([alone, issue("input-bound")])] == [
        alone.id,
        "input-bound",
    ]
    # Other jobs take the cores: the workers are not the cause of the waits.
    others = issue(
        "cpu-oversubscription", oversubscribed_without_workers=False, pressure="other jobs"
    )
    assert [f.id for f in causes_first([others, issue("input-bound")])] == [
        others.id,
        "input-bound",
    ]


def test_python_bound(tmp_path: Path) -> None:
    d = diagnose(Run(main_cpu=0.98, pool_cpu=0.05, python_share=0.7).build(tmp_path / "s"))
    assert d.category == "python-bound"
    f = d.findings["python-bound"]
    assert f.evidence["pool_use"] < 0.3
    assert f.evidence["interpreter_share"] == pytest.approx(0.7, abs=0.05)


def test_samples_that_waited_on_the_collector_are_not_python_work(tmp_path: Path) -> None:
    # Full collections 40 % of the time hold the GIL: a sampler waiting through one is late, but
    # what ran was the collector (gc-pauses), not the program's Python (30 % of the rest).
    run = Run(
        main_cpu=0.98,
        pool_cpu=0.9,
        python_share=0.3,
        gc_every=0.5,
        gc_pause=0.2,
        gc_holds_gil=True,
    )
    d = diagnose(run.build(tmp_path / "s"))
    assert d.category == "gc-pauses"
    f = d.findings["python-bound"]
    assert f.status == "not-detected"
    assert f.evidence["interpreter_share"] == pytest.approx(0.3, abs=0.06)


def test_interpreter_alone_costs_only_the_time_python_held_the_gil(tmp_path: Path) -> None:
    # Big operators and a busy pool: of the busy main thread, only the 60 % in which Python held
    # the GIL is the interpreter's (the rest is torch computing).
    run = Run(main_cpu=0.98, pool_cpu=0.9, python_share=0.6)
    d = diagnose(run.build(tmp_path / "s"))
    f = d.findings["python-bound"]
    assert f.is_issue and f.evidence["signs"] == ["interpreter"]
    share = f.evidence["interpreter_share"]
    assert f.impact == pytest.approx(
        (f.evidence["main_thread_cpu"] - f.evidence["gc_share"]) * share, abs=0.01
    )


def test_a_thread_that_waits_for_a_core_other_jobs_hold_is_still_saturated(tmp_path: Path) -> None:
    # Tiny operators, the main thread on a core 60 % of the time and in the run queue the other
    # 38 % (a shared machine): it wanted a core all the time; the interpreter sets its pace.
    run = Run(step=0.03, main_cpu=0.6, main_wait=0.38, pool_cpu=0.3, graph_nodes=3000)
    d = diagnose(run.build(tmp_path / "s"))
    f = d.findings["python-bound"]
    assert f.is_issue, f.reason
    assert f.evidence["main_thread_runnable"] == pytest.approx(0.98, abs=0.03)
    assert "waiting for one" in f.summary
    # The same thread asleep 38 % of the time instead (waiting on I/O, a lock) is not saturated.
    idle = Run(step=0.03, main_cpu=0.6, main_wait=0.0, pool_cpu=0.3, graph_nodes=3000)
    _, status = verdicts(idle, tmp_path / "idle")
    assert status["python-bound"] == "not-detected"


def test_high_gc_pauses_lead_a_python_bound_that_rests_on_the_interpreter(tmp_path: Path) -> None:
    # Python holds the GIL most of the time outside the collector, and full collections take
    # about a fifth of the run: both are issues, and the collector's (specific, one-line fix)
    # leads even where the interpreter's sampled share is larger.
    run = Run(
        main_cpu=0.98, pool_cpu=0.9, python_share=0.8, gc_every=1.0, gc_pause=0.2, gc_holds_gil=True
    )
    d = diagnose(run.build(tmp_path / "s"))
    ids = [f.id for f in d.issues]
    assert ids[:2] == ["gc-pauses", "python-bound"], ids
    assert d.findings["gc-pauses"].severity == "high"
    assert d.findings["python-bound"].impact > d.findings["gc-pauses"].impact  # by cause


def test_the_collector_moves_only_before_an_interpreter_only_python_bound() -> None:
    from probe.analysis.detectors.base import Finding
    from probe.analysis.ordering import causes_first

    def issue(id_: str, impact: float, severity: str = "high", **evidence: object) -> Finding:
        return Finding(id=id_, status="issue", impact=impact, severity=severity, evidence=evidence)

    def order(*found: Finding) -> list[str]:
        return [f.id for f in causes_first(list(found))]

    interp = issue("python-bound", 0.5, signs=["interpreter"])
    tiny = issue("python-bound", 0.5, signs=["tiny-operators", "interpreter"])
    assert order(interp, issue("io-bound", 0.3), issue("gc-pauses", 0.2)) == [
        "gc-pauses",
        "python-bound",
        "io-bound",
    ]
    assert order(tiny, issue("gc-pauses", 0.2)) == ["python-bound", "gc-pauses"]  # dispatch
    moderate = issue("gc-pauses", 0.08, severity="moderate")
    assert order(interp, moderate) == ["python-bound", "gc-pauses"]


def test_tiny_operators_are_python_bound_even_with_a_spinning_pool(tmp_path: Path) -> None:
    # OpenMP threads spin while they wait for work: the pool looks busy and the cores full.
    run = Run(step=0.03, main_cpu=0.98, pool_cpu=0.97, graph_nodes=3000, python_share=0.05)
    d = diagnose(run.build(tmp_path / "s"))
    assert d.category == "python-bound"
    f = d.findings["python-bound"]
    assert f.evidence["signs"] == ["tiny-operators"]
    assert f.evidence["us_per_node"] == pytest.approx(10, abs=1)


def test_big_operators_are_not_python_bound(tmp_path: Path) -> None:
    run = Run(step=0.2, main_cpu=0.98, pool_cpu=0.97, graph_nodes=40, python_share=0.05)
    _, status = verdicts(run, tmp_path)
    assert status["python-bound"] == "not-detected"


def test_busy_pool_is_not_python_bound(tmp_path: Path) -> None:
    _, status = verdicts(Run(main_cpu=0.98, pool_cpu=0.9), tmp_path)
    assert status["python-bound"] == "not-detected"


def test_io_bound(tmp_path: Path) -> None:
    d = diagnose(Run(io_share=0.3, main_cpu=0.7).build(tmp_path / "s"))
    assert d.category == "io-bound"
    f = d.findings["io-bound"]
    assert f.evidence["io_share"] == pytest.approx(0.3, abs=0.04)
    assert any("save" in fr["func"] for fr in f.stacks[0]["frames"])


def test_periodic_stall_names_the_code(tmp_path: Path) -> None:
    d = diagnose(Run(stall_every=20, stall=0.5).build(tmp_path / "s"))
    assert d.category == "periodic-stall"
    f = d.findings["periodic-stall"]
    assert f.evidence["period_steps"] == 20
    assert "save_checkpoint" in f.summary
    assert "io-bound" not in {i.id for i in d.issues}
    assert f.evidence["stall_kind"] == "io"
    assert f.next_step == ""  # the recommendation's own first step: checkpoint asynchronously


@pytest.mark.parametrize(
    ("func", "kind", "words"),
    [
        ("run_validation", "evaluation", "Evaluate less often"),
        ("EvalLoop.run", "evaluation", "Evaluate less often"),
        ("rebuild_index", "work", "periodic work cheaper"),
    ],
)
def test_periodic_stall_first_step_follows_what_the_stalls_do(
    tmp_path: Path, func: str, kind: str, words: str
) -> None:
    frames = [*TRAIN, ("/work/train.py", func, 70)]
    d = diagnose(Run(stall_every=20, stall=0.5, stall_frames=frames).build(tmp_path / "s"))
    f = d.findings["periodic-stall"]
    assert d.category == "periodic-stall"
    assert f.evidence["stall_kind"] == kind
    assert words in f.next_step


def test_irregular_long_steps_are_not_periodic(tmp_path: Path) -> None:
    b = SessionBuilder(tmp_path / "s", duration_s=20)
    b.process(100, torch_threads=2)
    rng = np.random.default_rng(3)
    lengths = np.full(300, 0.05)
    lengths[rng.choice(300, 6, replace=False)] = 0.4
    b.steps(100, 0.5 + np.concatenate([[0.0], np.cumsum(lengths)]))
    b.cpu(100, main=0.95, pool=0.9)
    b.system(busy=1.85)
    b.stacks(100, np.arange(0, 20, 0.01), PYTHON_WORK)
    from probe.session.reader import Session

    d = diagnose(Session(b.write()))
    assert d.findings["periodic-stall"].status == "not-detected"


def test_find_period_tolerates_a_missed_beat_and_unrelated_slow_steps() -> None:
    beats = [10.0, 40, 70, 130, 160, 190, 220]  # 100 missed
    noise = [17.0, 143]
    found = find_period(
        np.array(sorted(beats + noise)),
        extra=[],
        tolerance=lambda p: max(1.0, 0.05 * p),
        min_period=3.0,
        span=(0, 239),
        integer=True,
    )
    assert found is not None
    assert found.period == pytest.approx(30, abs=0.5)
    assert found.count == len(beats)


def test_find_period_refuses_random_positions() -> None:
    rng = np.random.default_rng(11)
    refused = 0
    for _ in range(200):
        pos = np.sort(rng.choice(400, 8, replace=False)).astype(np.float64)
        found = find_period(pos, [], lambda p: max(1.0, 0.05 * p), 3.0, (0, 399), integer=True)
        refused += found is None
    # Eight slow steps at random among 400 line up by chance only rarely.
    assert refused >= 194


def test_find_period_weighs_stalls_above_many_mildly_slow_steps() -> None:
    # Twelve 0.3-0.9 s checkpoints every 30 steps, and 30 steps at random that a noisy machine made
    # 2-3x the 20 ms median: the checkpoints are under half of the long steps but most of their
    # extra time. By count the period would be refused; by extra time it is found, at 30, not 15.
    rng = np.random.default_rng(3)
    beats = 29 + 30 * np.arange(12)
    noise = rng.choice(np.setdiff1d(np.arange(360), beats), 30, replace=False)
    pos = np.concatenate([beats, noise]).astype(np.float64)
    cost = np.concatenate([rng.uniform(0.3, 0.9, 12), rng.uniform(0.02, 0.04, 30)])
    order = np.argsort(pos)
    tol = lambda p: max(1.0, 0.05 * p)  # noqa: E731
    found = find_period(pos[order], [], tol, 3.0, (0, 359), integer=True, weights=cost[order])
    assert found is not None
    assert found.period == pytest.approx(30, abs=0.5)
    assert set(pos[order][found.members].astype(int)) == set(beats.tolist())
    assert find_period(pos[order], [], tol, 3.0, (0, 359), integer=True) is None


def test_find_period_refuses_a_burst_of_slow_steps() -> None:
    # The machine was busy for a while: 11 steps out of 30, then none. A beat every 3 steps
    # (one step either side) covers every step, and a burst is not a rhythm.
    burst = np.array([101, 103, 105, 110, 112, 115, 117, 119, 120, 122, 127], dtype=np.float64)
    cost = np.linspace(0.06, 0.15, len(burst))
    tol = lambda p: max(1.0, 0.05 * p)  # noqa: E731
    assert find_period(burst, [], tol, 3.0, (0, 190), integer=True, weights=cost) is None


def test_find_period_refuses_random_positions_with_random_costs() -> None:
    rng = np.random.default_rng(12)
    refused = 0
    for _ in range(100):
        pos = np.sort(rng.choice(400, 12, replace=False)).astype(np.float64)
        cost = rng.lognormal(0, 1, 12)
        found = find_period(
            pos, [], lambda p: max(1.0, 0.05 * p), 3.0, (0, 399), integer=True, weights=cost
        )
        refused += found is None
    assert refused >= 97


def test_find_period_in_seconds_with_jitter() -> None:
    rng = np.random.default_rng(5)
    times = np.arange(6) * 7.5 + 2 + rng.uniform(-0.3, 0.3, 6)
    found = find_period(times, [], lambda p: max(0.05, 0.05 * p), 0.15, span=(0, 47))
    assert found is not None
    assert found.period == pytest.approx(7.5, abs=0.2)
    assert found.count == 6


def test_periodic_gc_is_gc_not_a_stall(tmp_path: Path) -> None:
    run = Run(stall_every=20, stall=0.4, gc_in_stalls=True, stall_frames=PYTHON_WORK)
    d = diagnose(run.build(tmp_path / "s"))
    assert d.findings["periodic-stall"].status == "not-detected"
    assert d.category == "gc-pauses"


def test_event_loop_blocked(tmp_path: Path) -> None:
    b = SessionBuilder(tmp_path / "s", duration_s=10)
    b.process(100)
    b.cpu(100, main=0.6)
    b.system(busy=0.6)
    t = np.arange(0.5, 10, 0.06)
    b.lag(100, t, np.full(len(t), 0.04))
    from probe.session.reader import Session

    d = diagnose(Session(b.write()))
    assert d.category == "event-loop-blocked"
    assert d.findings["event-loop-blocked"].evidence["median_lag_ms"] == pytest.approx(40)
    assert_evidence_typed(d)


def test_straggler_rank(tmp_path: Path) -> None:
    b = SessionBuilder(tmp_path / "s", duration_s=12, argv=["torchrun", "train.py"])
    b.process(90, python=True, argv=["torchrun"])
    ends = np.arange(0.5, 12, 0.1)
    sync = [("/work/train.py", "main", 1), ("/venv/torch/_tensor.py", "backward", 500)]
    work = [("/work/train.py", "main", 1), ("/work/train.py", "heavy_preprocess", 9)]
    for rank, pid in enumerate((100, 110)):
        b.process(pid, ppid=90, rank=rank, torch_threads=1)
        b.steps(pid, ends)
        b.cpu(pid, main=0.6 if rank == 0 else 1.0)
        times = np.arange(0, 12, 0.01)
        if rank == 0:
            b.stacks(
                pid,
                times,
                lambda x: sync if (x % 0.1) < 0.04 else work,
                state=lambda x: "S" if (x % 0.1) < 0.04 else "R",
            )
        else:
            b.stacks(pid, times, work)
    b.system(busy=1.6)
    from probe.session.reader import Session

    d = diagnose(Session(b.write()))
    f = d.findings["straggler-rank"]
    assert f.status == "issue", f.reason
    assert f.evidence["straggler_rank"] == 1
    assert f.evidence["others_wait_share"] == pytest.approx(0.4, abs=0.05)
    assert_evidence_typed(d)


def test_short_run_is_insufficient_data(tmp_path: Path) -> None:
    b = SessionBuilder(tmp_path / "s", duration_s=1.0)
    b.process(100, torch_threads=2)
    b.steps(100, [0.5, 0.6, 0.7])
    b.cpu(100, main=0.9)
    b.system(busy=0.9)
    from probe.session.reader import Session

    d = diagnose(Session(b.write()))
    assert d.category == "insufficient-data"
    assert "Run at least" in d.top.summary if d.top else False


def test_outside_only_is_insufficient_but_memory_growth_still_counts(tmp_path: Path) -> None:
    b = SessionBuilder(tmp_path / "s", duration_s=20, argv=["bash", "run.sh"])
    b.process(100, python=False, argv=["bash", "run.sh"])
    b.cpu(100, main=1.0, rss=lambda t: 100e6 + 30e6 * t)
    b.system(busy=1.0)
    from probe.session.reader import Session

    d = diagnose(Session(b.write()))
    assert d.category == "memory-growth"


def test_json_document_shape(tmp_path: Path) -> None:
    d = diagnose(Run(wait=0.02).build(tmp_path / "s"))
    doc = to_json(d)
    assert set(doc) == {
        "schema",
        "category",
        "issues",
        "window",
        "phases",
        "run",
        "partial",
        "losses",
    }
    assert doc["schema"] == "probe.diagnosis/1"
    assert doc["partial"] is False and doc["losses"] == []  # nothing was lost recording it
    assert doc["category"] == doc["issues"][0]["id"]
    issue = doc["issues"][0]
    assert set(issue) == {"id", "severity", "impact", "title", "summary", "evidence", "windows"}
    assert set(doc["run"]) == {
        "command",
        "exit_code",
        "signal",
        "duration_s",
        "steps",
        "step_unit",
        "processes",
    }
    assert doc["run"]["step_unit"] == "optimizer.step() calls"
    impacts = [i["impact"] for i in doc["issues"]]
    assert impacts == sorted(impacts, reverse=True)
    import json

    json.dumps(doc, allow_nan=False)


def test_context_window_and_bins(tmp_path: Path) -> None:
    session = Run().build(tmp_path / "s")
    tl = build_timeline(session)
    ctx = Context(tl, segment(tl))
    assert ctx.bins.sum() > 100
    assert ctx.training_pids == [100]


def test_the_training_processes_are_defined_once(tmp_path: Path) -> None:
    # Steps: the processes that ran them, for the analysis and in the diagnosis the report reads.
    d = diagnose(Run().build(tmp_path / "run"))
    assert d.training_pids == training_pids(d.timeline) == [100]
    # No steps: the Python main process, not a helper.
    b = SessionBuilder(tmp_path / "nosteps", duration_s=4)
    b.process(100)
    b.process(101, ppid=100, argv=["python", "helper.py"])
    b.cpu(100, main=0.5)
    b.cpu(101, main=0.5)
    tl = build_timeline(Session(b.write()))
    assert training_pids(tl) == [100]
    # Ranks whose steps all fell outside the window are still the training processes, not the
    # launcher that started them.
    b = SessionBuilder(tmp_path / "ranks", duration_s=6, argv=["torchrun", "train.py"])
    b.process(90, argv=["torchrun"])
    for rank, pid in enumerate((100, 110)):
        b.process(pid, ppid=90, rank=rank)
        b.steps(pid, np.arange(0.5, 1.5, 0.1))
    tl = build_timeline(Session(b.write()))
    assert training_pids(tl) == [100, 110]
    assert training_pids(tl, tl.steps.within(5.0, 6.0)) == [100, 110]
    # Nothing profiled inside (a command that is not Python): no loop to judge.
    b = SessionBuilder(tmp_path / "native", duration_s=4, argv=["./train"])
    b.process(100, python=False)
    b.cpu(100, main=1.0)
    tl = build_timeline(Session(b.write()))
    assert training_pids(tl) == []


# -- stack samples at an adaptive rate ----------------------------------------------------------


def test_samples_are_weighed_by_the_interval_in_force_when_taken(tmp_path: Path) -> None:
    # 2 s resting sampled at 100 Hz, then 2 s of Python sampled at 10 Hz (the agent slowed down):
    # by count the Python half is a tenth of the samples, by time it is half.
    from probe.analysis.stacks import STATE, classify_stacks

    b = SessionBuilder(tmp_path / "s", duration_s=4)
    pid = 100
    b.process(pid, argv=["python", "train.py"])
    rest = np.arange(0.005, 2.0, 0.01)
    spin = np.arange(2.05, 4.0, 0.1)
    b.stacks(pid, rest, [("train.py", "rest", 3), ("/lib/threading.py", "wait", 1)], state="S")
    b.stacks(pid, spin, [("train.py", "spin", 9)], late=0.005)
    agent = b.agent(pid)
    # Written as the agent does: the first interval just before the first sample, then the new
    # interval at the time of the sample that led to it (so it applies from the next one on).
    agent.add(fmt.PACE, t=b.ns([0.004, 1.995]), interval=np.array([10, 100]) * 1_000_000)
    session = Session(b.write())
    st = classify_stacks(session, lambda t: (np.asarray(t, dtype=np.float64) - b.t0) / 1e9)
    assert len(st) == len(rest) + len(spin)
    assert np.all(st.weight[: len(rest)] == pytest.approx(0.01))  # 1.995 is rest's last sample
    assert np.all(st.weight[len(rest) :] == pytest.approx(0.1))
    everything = np.ones(len(st), dtype=bool)
    python = st.state == STATE["python"]
    assert python.sum() == len(spin)
    assert st.share(python, everything) == pytest.approx(0.5, abs=0.03)
    assert st.shares(everything)["python"] == pytest.approx(0.5, abs=0.03)
    top = st.top(everything, 2)
    assert {t["frames"][-1]["func"] for t in top} == {"spin", "wait"}
    assert all(t["share"] == pytest.approx(0.5, abs=0.03) for t in top)
    assert {t["samples"] for t in top} == {len(rest), len(spin)}


def _rebuild_every_40_steps(path: Path) -> Session:
    """3 s of imports, then 40 quick steps (10 ms) and a 2 s index rebuild, over and over; five
    of the bursts also import a little (a lazily imported module, a first call's compilation)."""
    b = SessionBuilder(path, duration_s=30)
    pid = 100
    b.process(pid, torch_threads=2)
    ends: list[float] = []
    t = 3.0
    bursts: list[float] = []
    while t < 29.0:
        bursts.append(t)
        ends.extend(t + 0.01 * np.arange(1, 41))
        t += 0.4 + 2.0
    b.steps(pid, np.array(ends))
    b.cpu(pid, main=lambda x: np.where(x < 3, 1.0, 0.95), pool=0.5)
    b.system(busy=1.5)
    importing = bursts[1:10:2]

    def stack(x: float) -> list[tuple[str, str, int]]:
        if x < 3 or any(s <= x < s + 0.05 for s in importing):
            return IMPORTING
        return PYTHON_WORK

    b.stacks(pid, np.arange(0, 30, 0.01), stack)
    return Session(b.write())


def test_stalls_that_fill_most_of_the_run_stay_in_the_window(tmp_path: Path) -> None:
    # 80 % of the steady state is stalls, so most bins see no step: however the HMM splits the
    # bins, the window must span the whole loop (the state-naming rule that guarantees it when
    # training and stalls share a state is the next test).
    session = _rebuild_every_40_steps(tmp_path / "s")
    seg = segment(build_timeline(session))
    assert seg.window[0] < 4.0
    assert seg.window[1] > 27.0
    assert seg.share(LOAD) > 0.8
    d = diagnose(session)
    assert d.category == "periodic-stall"
    assert d.findings["periodic-stall"].evidence["period_steps"] == 40


def test_a_state_holding_most_steps_is_load_at_a_low_mean_rate() -> None:
    # The states fitted on a real run that rebuilt a kNN index every 40 steps (~2 s each).
    means = [
        {"cpu": 0.50, "steps": 0.026, "startup": 0.97, "step_share": 0.012},
        {"cpu": 0.85, "steps": 0.175, "startup": 0.0, "step_share": 0.905},
        {"cpu": 0.91, "steps": 0.875, "startup": 0.11, "step_share": 0.083},
    ]
    assert _name_states(means, ["cpu", "steps", "startup"]) == [NOISE, LOAD, LOAD]
    means[1]["step_share"] = 0.1  # a slow tail holding few steps stays noise
    assert _name_states(means, ["cpu", "steps", "startup"]) == [NOISE, NOISE, LOAD]


def _blocked_in_own_code(path: Path, main_io: float | None) -> Session:
    """Every step the main thread blocks 40 % of the time in the program's own code (its kernel
    state S, the GIL free) while the process moves 5 MB/s through read/write; ``main_io`` is how
    much of that the main thread moved itself (None: not recorded, as before format 1.2)."""
    b = SessionBuilder(path, duration_s=20)
    b.process(100, torch_threads=2)
    b.steps(100, np.arange(0.5, 20.0, 0.05))
    b.cpu(100, main=0.6, pool=0.3, io_chars=5e6, main_io_chars=main_io)
    b.system(busy=1.0)
    own = [*TRAIN, ("/work/train.py", "append_record", 52)]
    times = np.arange(0, 20, 0.01)
    blocked = lambda x: (x * 100) % 10 < 4  # noqa: E731
    b.stacks(
        100,
        times,
        lambda x: own if blocked(x) else PYTHON_WORK,
        state=lambda x: "S" if blocked(x) else "R",
    )
    return Session(b.write())


def test_blocked_in_own_code_counts_as_io_when_the_main_thread_moves_the_bytes(
    tmp_path: Path,
) -> None:
    d = diagnose(_blocked_in_own_code(tmp_path / "s", main_io=5e6))
    f = d.findings["io-bound"]
    assert f.status == "issue"
    assert f.evidence["off_cpu_io_share"] == pytest.approx(0.4, abs=0.05)
    assert f.evidence["main_thread_rw_mb_per_s"] == pytest.approx(5e6 / 2**20, rel=0.05)


def test_blocked_while_another_thread_moves_the_bytes_is_not_io(tmp_path: Path) -> None:
    # A sleeping main thread beside a communication thread (gloo's sockets) or a log uploader:
    # the process's counters move, the main thread's own do not.
    d = diagnose(_blocked_in_own_code(tmp_path / "s", main_io=0.0))
    f = d.findings["io-bound"]
    assert f.status == "not-detected"
    assert f.evidence["off_cpu_io_share"] == 0.0


def test_sessions_without_main_thread_io_fall_back_to_the_process(tmp_path: Path) -> None:
    d = diagnose(_blocked_in_own_code(tmp_path / "s", main_io=None))
    f = d.findings["io-bound"]
    assert f.status == "issue"
    assert f.evidence["main_thread_rw_mb_per_s"] is None


def _classify(*frames: tuple[str, str]) -> str:
    from probe.analysis.stacks import STATES, classify_frames
    from probe.session.reader import Frame

    return STATES[classify_frames([Frame(f, fn, 1) for f, fn in frames])]


SPAWN_PREFIX = (
    ("<string>", "<module>"),
    ("/usr/lib/python3.11/multiprocessing/spawn.py", "spawn_main"),
    ("/usr/lib/python3.11/multiprocessing/process.py", "_bootstrap"),
    ("/venv/lib/python3.11/site-packages/torch/multiprocessing/spawn.py", "_wrap"),
)


def test_launcher_frames_above_the_program_do_not_decide_the_state() -> None:
    # torch.multiprocessing.spawn calls the program's function: a rank sleeping or computing in
    # its own shallow code is not "in torch", and its extra work is not a collective wait.
    assert _classify(*SPAWN_PREFIX, ("/work/train.py", "run")) == "python"
    assert _classify(*SPAWN_PREFIX, ("/work/train.py", "run"), ("/work/train.py", "step")) == (
        "python"
    )
    # What the program calls still counts, however shallow the program's own frames are.
    torch_op = ("/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", "_call_impl")
    assert _classify(*SPAWN_PREFIX, ("/work/train.py", "run"), torch_op) == "torch"
    collective = (
        "/venv/lib/python3.11/site-packages/torch/distributed/distributed_c10d.py",
        "all_reduce",
    )
    assert _classify(*SPAWN_PREFIX, ("/work/train.py", "run"), collective) == "distributed"
    # A stack with no frame of the program's (a library's own thread) is classified whole.
    worker_wait = (
        ("/venv/lib/python3.11/site-packages/torch/utils/data/_utils/worker.py", "_worker_loop"),
        ("/usr/lib/python3.11/multiprocessing/queues.py", "get"),
    )
    assert _classify(*SPAWN_PREFIX[:3], *worker_wait) == "wait"
    assert _classify(*SPAWN_PREFIX) == "torch"


PROBE_HOOKS = "/venv/lib/python3.11/site-packages/probe/collectors/torch/cuda.py"


def test_probes_own_hook_frames_neither_decide_the_state_nor_are_shown(tmp_path: Path) -> None:
    # probe's wrapper around .cpu()/.item() is the innermost Python frame while the thread waits
    # for the GPU: that is a wait for the GPU, not the program's own Python code.
    program = (("/work/train.py", "<module>"), ("/work/train.py", "main"))
    wrapper = (PROBE_HOOKS, "TorchHooks._wrap_sync.<locals>.wrapper")
    sync = (PROBE_HOOKS, "host_waits_for_gpu")
    assert _classify(*program, wrapper, sync) == "gpu-sync"
    # a CPU tensor's .item() passes through the wrapper alone: the program's own time
    assert _classify(*program, wrapper) == "python"
    cuda_sync = ("/venv/lib/python3.11/site-packages/torch/cuda/__init__.py", "synchronize")
    assert _classify(*program, wrapper, sync, cuda_sync) == "gpu-sync"
    # probe's other wrappers (the DataLoader worker's fetch) are transparent
    worker = (
        ("/venv/lib/python3.11/site-packages/torch/utils/data/_utils/worker.py", "_worker_loop"),
        (PROBE_HOOKS, "TorchHooks._wrap_fetch.<locals>.fetch"),
        ("/work/train.py", "__getitem__"),
    )
    assert _classify(*worker) == "python"
    assert _classify(*worker[:2]) == "torch"
    # and the stacks a finding shows are the program's
    b = SessionBuilder(tmp_path / "s", duration_s=4)
    b.process(100)
    b.stacks(100, np.arange(0.1, 3.9, 0.01), [(f, fn, 1) for f, fn in (*program, wrapper, sync)])
    session = Session(b.write())
    from probe.analysis.stacks import classify_stacks

    st = classify_stacks(session, lambda t: np.asarray(t, float) / 1e9)
    (top,) = st.top(np.ones(len(st), bool), n=1)
    assert top["state"] == "gpu-sync"
    assert [f["func"] for f in top["frames"]] == ["<module>", "main"]


def test_a_failed_three_state_fit_is_retried_with_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # hmmlearn rejects a fit that leaves a state unvisited ("transmat_ rows must sum to 1"): a run
    # with two regimes then still gets a window from a two-state model, not the whole run.
    import probe.analysis.segment as segment_module

    real_fit = segment_module._fit

    def fit(Z: np.ndarray, n_states: int) -> tuple[np.ndarray, int, int]:
        if n_states == 3:
            raise ValueError("transmat_ rows must sum to 1 (got row sums of [1. 1. 0.])")
        return real_fit(Z, n_states)

    monkeypatch.setattr(segment_module, "_fit", fit)
    start, end = _import_and_teardown(tmp_path / "s")
    seg = segment(build_timeline(Session(tmp_path / "s")))
    assert seg.method == "hmm", seg.reason
    assert seg.states == 2
    assert seg.window[0] == pytest.approx(start, abs=0.6)
    assert seg.window[1] == pytest.approx(end, abs=0.6)
    assert seg.to_json()["states"] == 2


def test_a_training_thread_starved_by_other_jobs_is_not_healthy(tmp_path: Path) -> None:
    # The job's own threads fit its 2 cores, but the host keeps 12 threads runnable: the training
    # thread waits for a core 80 % of its runnable time (the nanoGPT run of docs/validation.md).
    d = diagnose(Run(main_cpu=0.2, main_wait=0.8, host_running=12.0).build(tmp_path / "s"))
    assert d.category == "cpu-oversubscription"
    top = d.top
    assert top is not None and top.evidence["pressure"] == "other jobs"
    assert top.title.startswith("Other jobs take the cores")
    assert top.next_step.startswith("Run the job where it has its cores to itself")
    # A neighbour that costs the training thread a third of its time is noise, not a verdict.
    d = diagnose(Run(main_cpu=0.6, main_wait=0.3, host_running=6.0).build(tmp_path / "light"))
    assert d.findings["cpu-oversubscription"].evidence["main_thread_run_queue_wait_share"] > 0.3
    assert d.category == "healthy"
    # The program's own issue comes first; other jobs are listed after it.
    d = diagnose(
        Run(main_cpu=0.2, main_wait=0.8, host_running=12.0, wait=0.02).build(tmp_path / "io")
    )
    assert [f.id for f in d.issues] == ["input-bound", "cpu-oversubscription"]
    assert d.issues[1].impact > d.issues[0].impact
    # The job's own oversubscription keeps its own words.
    d = diagnose(Run(main_wait=0.4, extra_runnable=2.0, host_running=12.0).build(tmp_path / "own"))
    assert d.top is not None and d.top.evidence["pressure"] == "job"
    assert d.top.title.startswith("More runnable threads than cores")


def test_the_documented_way_to_make_a_session_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "session-format.md").read_text()
    section = doc[doc.index("## Making a session for a test") :]
    start = section.index("```python\n") + len("```python\n")
    code = section[start : section.index("\n```", start)]
    exec(compile(code, "docs/session-format.md", "exec"), {"tmp_path": tmp_path})
    assert capsys.readouterr().out.strip() == "input-bound"
