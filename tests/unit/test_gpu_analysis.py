"""The GPU verdicts on hand-built sessions: host syncs, GPU utilisation, CUDA memory growth.

No GPU is needed: the sessions carry what the agent's sync hooks and CUDA polls and the outside
NVML sampler would have written on one (probe.testing).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from probe.analysis.detectors.base import Context
from probe.analysis.detectors.gpu_share import gpus_used, sync_per_step, utilization
from probe.analysis.diagnosis import diagnose, to_json
from probe.analysis.segment import segment
from probe.analysis.timeline import build_timeline
from probe.session.reader import Session
from probe.testing import SessionBuilder
from tests.unit.synthetic_runs import Run

GB = 2**30


def test_a_sync_every_step_that_leaves_the_gpu_idle_is_host_sync_stalls(tmp_path: Path) -> None:
    # 20 ms of every 50 ms step waiting in .item(); the GPU idle 60 % of the time
    d = diagnose(Run(duration=20, sync=0.02, gpu_util=40.0, main_cpu=0.6).build(tmp_path / "s"))
    f = d.findings["host-sync-stalls"]
    assert d.category == "host-sync-stalls", [(i.id, i.impact) for i in d.issues]
    assert f.severity == "high"
    assert f.evidence["sync_share"] == pytest.approx(0.4, abs=0.02)
    assert f.evidence["steps_with_sync"] == pytest.approx(1.0, abs=0.01)
    assert f.evidence["gpu_idle_share"] == pytest.approx(0.6, abs=0.01)
    assert f.evidence["calls"] == {"item": len(d.timeline.session.table("sync"))}
    assert f.impact == pytest.approx(0.4, abs=0.02)  # the wait, within the idle time
    # the idle GPU is the syncs' symptom: listed after them, with what explains it
    under = d.findings["gpu-underutilized"]
    assert under.is_issue and under.impact < f.impact
    assert under.evidence["explained_by_host_syncs"] == pytest.approx(0.4, abs=0.02)
    assert "waits for the GPU to catch up (host-sync-stalls), 40 % of step time" in under.summary
    assert to_json(d)["category"] == "host-sync-stalls"


def test_a_gpu_bound_loop_that_prints_its_loss_every_step_is_healthy(tmp_path: Path) -> None:
    # .item() every step: the host waits 80 % of each step, but for a GPU busy 97 % of the time
    run = Run(duration=20, sync=0.04, gpu_util=97.0)
    d = diagnose(run.build(tmp_path / "s"))
    f = d.findings["host-sync-stalls"]
    assert f.status == "not-detected"
    assert f.evidence["sync_share"] == pytest.approx(0.8, abs=0.02)
    assert "busy 97 %" in f.reason
    assert d.category == "healthy", [(i.id, i.impact) for i in d.issues]


def test_host_syncs_are_not_judged_without_the_gpus_utilisation(tmp_path: Path) -> None:
    d = diagnose(Run(duration=20, sync=0.02, cuda_alloc=2e9).build(tmp_path / "s"))
    f = d.findings["host-sync-stalls"]
    assert f.status == "insufficient-data"
    assert "NVML" in f.reason and f.evidence["sync_share"] == pytest.approx(0.4, abs=0.02)
    assert d.findings["gpu-underutilized"].status == "insufficient-data"


def test_a_sync_now_and_then_is_not_the_pattern(tmp_path: Path) -> None:
    # a long wait in every 4th step only: a quarter of the steps hold one
    run = Run(duration=20, sync=0.04, sync_every=4, gpu_util=40.0, main_cpu=0.6)
    ctx = _context(run, tmp_path)
    waited, has = sync_per_step(ctx)
    assert has.mean() == pytest.approx(0.25, abs=0.02)
    assert waited[has] == pytest.approx(np.full(int(has.sum()), 0.04), abs=1e-6)
    assert not waited[~has].any()
    f = diagnose(ctx.tl.session).findings["host-sync-stalls"]
    assert f.status == "not-detected" and f.evidence["steps_with_sync"] == pytest.approx(
        0.25, abs=0.02
    )


def test_a_sync_belongs_to_the_step_it_starts_in(tmp_path: Path) -> None:
    b = SessionBuilder(tmp_path / "s", duration_s=10)
    b.process(100, torch_threads=2)
    b.steps(100, np.arange(0.5, 9.5, 0.05))
    b.cpu(100, main=0.9, pool=0.9)
    b.system(busy=1.8)
    # one wait during start-up, before any step began; one inside the step (2.0, 2.05]
    b.syncs(100, [0.1, 2.01], [0.3, 0.01])
    ctx = _context_of(Session(b.write()))
    waited, has = sync_per_step(ctx)
    assert has.sum() == 1
    assert waited.sum() == pytest.approx(0.01, abs=1e-6)
    assert float(ctx.steps.start[has][0]) == pytest.approx(2.0, abs=1e-6)


def test_an_idle_gpu_that_waits_for_data_is_input_bound_first(tmp_path: Path) -> None:
    # the loop waits 35 ms of each 50 ms step on its DataLoader; the GPU runs 25 % of the time
    d = diagnose(Run(duration=20, wait=0.035, gpu_util=25.0, main_cpu=0.3).build(tmp_path / "s"))
    ids = [i.id for i in d.issues]
    assert d.category == "input-bound", ids
    under = d.findings["gpu-underutilized"]
    assert under.is_issue and under.severity == "moderate"
    assert under.evidence["explained_by_data_waits"] == pytest.approx(0.7, abs=0.03)
    assert under.impact == pytest.approx(0.05, abs=0.03)
    assert ids.index("input-bound") < ids.index("gpu-underutilized")
    # the symptom names its cause, with the cause's share of step time
    assert "Most of it is explained by the loop's waits for its input pipeline" in under.summary
    assert "70 % of step time" in under.summary and "host-sync" not in under.summary


def test_an_idle_gpu_nothing_else_explains_is_gpu_underutilized(tmp_path: Path) -> None:
    d = diagnose(Run(duration=20, gpu_util=15.0, main_cpu=0.5).build(tmp_path / "s"))
    f = d.findings["gpu-underutilized"]
    assert d.category == "gpu-underutilized", [(i.id, i.impact) for i in d.issues]
    assert f.severity == "high" and f.impact == pytest.approx(0.85, abs=0.01)
    assert f.evidence["gpus"] == [{"gpu": 0, "utilization": 15.0, "memory_used_mb": 19073}]
    assert "only 15 % of the steady state" in f.summary
    assert "No wait of the loop explains it" in f.summary


def test_a_busy_gpu_is_not_underutilized(tmp_path: Path) -> None:
    f = diagnose(Run(duration=20, gpu_util=85.0).build(tmp_path / "s")).findings
    assert f["gpu-underutilized"].status == "not-detected"
    assert "busy 85 %" in f["gpu-underutilized"].reason


def test_unknown_utilisation_readings_are_left_out(tmp_path: Path) -> None:
    # NVML answers -1 where it cannot read the utilisation (a MIG slice): no mean of -1s
    ctx = _context(Run(duration=20, gpu_util=-1.0), tmp_path)
    assert utilization(ctx).rows == []
    assert diagnose(ctx.tl.session).findings["gpu-underutilized"].status == "insufficient-data"


def test_the_gpus_used_come_from_cuda_when_nvml_lists_other_pids(tmp_path: Path) -> None:
    # in a container NVML reports the host's pids: the agent's CUDA records name the device
    ctx = _context(Run(duration=10, gpu_util=60.0, gpu_proc_mem=None), tmp_path)
    assert len(ctx.tl.session.table("gpu_proc")) == 0
    assert gpus_used(ctx) == [0]
    assert utilization(ctx).busiest == {"gpu": 0, "utilization": 60.0, "memory_used_mb": 19073}


def test_a_gpu_bound_loop_whose_main_thread_spins_is_not_python_bound(tmp_path: Path) -> None:
    # a busy main thread and an idle intra-op pool: python-bound's idle-pool sign, unless the
    # GPU it drives says the loop is bound by the GPU
    cpu_only = diagnose(Run(duration=20, main_cpu=0.95, pool_cpu=0.0).build(tmp_path / "a"))
    assert cpu_only.category == "python-bound"
    gpu = diagnose(
        Run(duration=20, main_cpu=0.95, pool_cpu=0.0, gpu_util=96.0).build(tmp_path / "b")
    )
    f = gpu.findings["python-bound"]
    assert f.status == "not-detected" and "bound by the GPU" in f.reason
    assert f.evidence["gpu_idle_share"] == pytest.approx(0.04, abs=0.01)
    assert gpu.category == "healthy", [(i.id, i.impact) for i in gpu.issues]


def test_waits_on_the_gpu_are_not_counted_as_python(tmp_path: Path) -> None:
    # CUDA spins a core while .item() waits: 90 % of the step, which is not the interpreter's
    run = Run(duration=20, main_cpu=0.95, pool_cpu=0.0, sync=0.045, cuda_alloc=2e9)
    f = diagnose(run.build(tmp_path / "s")).findings["python-bound"]
    assert f.evidence["gpu_wait_share"] == pytest.approx(0.9, abs=0.02)
    assert f.status == "not-detected"


def test_host_work_that_follows_a_sync_is_the_syncs_to_fix(tmp_path: Path) -> None:
    # .item() waits 60 % of each step, then the host computes metrics while the GPU idles 33 %:
    # the main thread is busy throughout, but the host work only blocks the GPU because of the
    # sync before it
    run = Run(duration=20, sync=0.03, gpu_util=67.0, main_cpu=0.95, pool_cpu=0.0)
    d = diagnose(run.build(tmp_path / "s"))
    assert d.category == "host-sync-stalls", [(i.id, i.impact) for i in d.issues]
    assert d.findings["host-sync-stalls"].impact == pytest.approx(0.33, abs=0.01)
    python = d.findings["python-bound"]
    assert python.status == "not-detected", python.summary
    assert python.evidence["gpu_idle_unexplained"] == pytest.approx(0.0, abs=0.01)
    assert d.findings["gpu-underutilized"].status == "not-detected"


def test_a_loss_read_every_n_steps_is_no_stall_while_the_gpu_stays_busy(tmp_path: Path) -> None:
    # every 20th step waits 0.5 s for the work queued ahead of it (loss.item()): long steps on a
    # beat, but the GPU ran throughout
    busy = diagnose(Run(stall_every=20, stall=0.5, gpu_util=99.0).build(tmp_path / "a"))
    f = busy.findings["periodic-stall"]
    assert f.status == "not-detected" and f.evidence["gpu_idle_share"] == pytest.approx(0.01)
    # the same stalls with the GPU idle meanwhile (a checkpoint): a fifth of the run lost
    idle = diagnose(Run(stall_every=20, stall=0.5, gpu_util=80.0).build(tmp_path / "b"))
    assert idle.category == "periodic-stall"
    assert idle.findings["periodic-stall"].impact == pytest.approx(0.2, abs=0.01)


def test_cuda_memory_that_keeps_growing_is_memory_growth(tmp_path: Path) -> None:
    # 300 MB/s of CUDA tensors kept alive; 5 GB of the GPU held by others and contexts
    def alloc(t: np.ndarray) -> np.ndarray:
        return 2e9 + 300e6 * t

    run = Run(duration=20, gpu_util=95.0, cuda_alloc=alloc)
    session = run.build(tmp_path / "s")
    d = diagnose(session)
    f = d.findings["memory-growth"]
    assert d.category == "memory-growth", [(i.id, i.impact) for i in d.issues]
    assert f.evidence["memory"] == "cuda"
    assert f.evidence["process"].endswith("cuda:0")
    assert f.evidence["slope_mb_per_s"] == pytest.approx(300e6 / 2**20, rel=0.02)
    assert "CUDA memory allocated" in f.summary and "GPU's memory" in f.summary
    # the device and the process in words; both ends of the growth in one unit
    assert f.title.startswith("CUDA memory grows steadily: ")
    assert f.title.endswith(" per minute on cuda:0 in main: python train.py (pid 100)"), f.title
    assert re.search(r"grew from \d+ MB to \d+ MB over", f.summary), f.summary


def test_the_time_to_fill_the_gpu_counts_what_others_hold(tmp_path: Path) -> None:
    b = SessionBuilder(tmp_path / "s", duration_s=20)
    b.process(100, torch_threads=2)
    b.steps(100, np.arange(0.5, 19.9, 0.05))
    b.cpu(100, main=0.9, pool=0.9)
    b.system(busy=1.8)
    rate = 500e6

    def alloc(t: np.ndarray) -> np.ndarray:
        return 4e9 + rate * t

    # the GPU holds 40 GB of another process beside this one's pool (allocated + 1 GB cached)
    b.cuda(100, allocated=alloc, reserved=lambda t: alloc(t) + 1e9)
    b.gpu(util=95.0, mem_used=lambda t: 40e9 + alloc(t) + 1e9 + 0.5e9, mem_total=80 * GB)
    f = diagnose(Session(b.write())).findings["memory-growth"]
    assert f.evidence["memory"] == "cuda"
    end = 4e9 + rate * 20
    headroom = 80 * GB - 40.5e9 - end
    assert f.evidence["limit_mb"] == pytest.approx((80 * GB - 40.5e9) / 2**20, rel=0.01)
    assert f.evidence["seconds_to_limit"] == pytest.approx(headroom / rate, rel=0.1)
    assert f.severity == "high"


def test_a_cuda_pool_that_fills_and_levels_off_is_no_leak(tmp_path: Path) -> None:
    def alloc(t: np.ndarray) -> np.ndarray:
        return 2e9 + 3e9 * np.minimum(t / 6.0, 1.0)

    f = diagnose(Run(duration=20, gpu_util=95.0, cuda_alloc=alloc).build(tmp_path / "s"))
    assert f.findings["memory-growth"].status == "not-detected"


def _context(run: Run, tmp_path: Path) -> Context:
    return _context_of(run.build(tmp_path / "s"))


def _context_of(session: Session) -> Context:
    tl = build_timeline(session)
    return Context(tl, segment(tl))


def test_the_report_draws_nvml_utilisation_and_the_jobs_gpu_memory(tmp_path: Path) -> None:
    from probe.report.page import build_page

    b = SessionBuilder(tmp_path / "s", duration_s=10)
    b.process(100, torch_threads=2)
    b.steps(100, np.arange(0.5, 9.5, 0.05))
    b.cpu(100, main=0.9, pool=0.9)
    b.system(busy=1.8)
    b.cuda(100, allocated=2e9, reserved=3e9)
    # a GPU shared with another job (pid 999): only the job's own process is drawn; NVML could
    # not read the utilisation for the first second (-1)
    b.gpu(
        util=lambda t: np.where(t < 1.0, -1.0, 90.0),
        processes={100: 3.5e9, 999: 20e9},
    )
    page = build_page(diagnose(Session(b.write())))
    gpu = page.graph("gpu")
    assert gpu is not None and gpu.series[0].label == "GPU 0 utilisation"
    assert np.nanmin(gpu.series[0].y) == pytest.approx(90.0)
    memory = page.graph("memory")
    assert memory is not None
    labels = [s.label for s in memory.series]
    nvml = [s for s in memory.series if "NVML" in s.label]
    assert [s.label for s in nvml] == ["GPU 0 memory, NVML (main (pid 100))"], labels
    assert np.nanmax(nvml[0].y) == pytest.approx(3.5e9 / 2**20, rel=0.01)
