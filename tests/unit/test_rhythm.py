"""The loop's rhythm when it is not optimizer.step(): which unit the analysis takes, and the
verdicts that need no steps judged on time whatever the step count."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from probe.analysis.diagnosis import diagnose, to_json
from probe.analysis.timeline import MIN_RHYTHM, build_timeline
from probe.cli import status
from probe.session import format as fmt
from probe.session.reader import Session
from probe.testing import SessionBuilder
from tests.unit.synthetic_runs import Run

# A loop the interpreter sets the pace of: main thread pinned, pool idle, Python holding the GIL.
PINNED = {"main_cpu": 1.0, "pool_cpu": 0.05, "python_share": 0.9, "late_when_python": 0.004}


@pytest.mark.parametrize(
    ("rhythm", "unit", "label"),
    [
        ("optimizer", "optimizer", "optimizer.step() calls"),
        ("backward", "backward", "backward passes"),
        ("lbfgs", "backward", "backward passes"),
        ("forward", "forward", "top-level module calls"),
    ],
)
def test_the_unit_is_the_first_kind_the_loop_shows_often_enough(
    tmp_path: Path, rhythm: str, unit: str, label: str
) -> None:
    d = diagnose(Run(rhythm=rhythm, **PINNED).build(tmp_path / "s"))  # type: ignore[arg-type]
    assert d.timeline.steps.source == unit
    assert len(d.timeline.steps) > 300
    assert d.run["step_unit"] == label
    assert d.category == "python-bound", d.headline


def test_an_lbfgs_fit_is_judged_on_its_closure_calls(tmp_path: Path) -> None:
    # 18 optimizer steps in 20 s, each around 20 closure calls: before, "run at least 30 steps".
    d = diagnose(Run(rhythm="lbfgs", **PINNED).build(tmp_path / "s"))  # type: ignore[arg-type]
    assert d.category == "python-bound"
    steps = d.timeline.steps
    # the optimizer's own time inside each unit is known (all of it, inside a closure's step)
    assert float(steps.opt.sum()) == pytest.approx(float(steps.duration.sum()), rel=0.1)
    assert to_json(d)["run"]["step_unit"] == "backward passes"


def test_an_input_bound_loop_with_no_optimizer_is_judged_on_its_batches(tmp_path: Path) -> None:
    d = diagnose(Run(rhythm="dataloader", wait=0.02).build(tmp_path / "s"))
    assert d.timeline.steps.source == "dataloader"
    assert d.category == "input-bound"
    assert d.findings["input-bound"].evidence["data_wait_share"] == pytest.approx(0.4, abs=0.05)


def test_a_periodic_stall_in_an_inference_loop_is_seen_on_its_forward_calls(
    tmp_path: Path,
) -> None:
    d = diagnose(Run(rhythm="forward", stall_every=40, stall=0.6).build(tmp_path / "s"))
    assert d.timeline.steps.source == "forward"
    assert d.category == "periodic-stall"
    assert "every 40 forward calls" in d.issues[0].title


def test_few_steps_in_a_long_steady_state_are_judged_on_time(tmp_path: Path) -> None:
    # 5 optimizer steps in 20 s and nothing else: the step-based checks cannot judge, the others
    # can, and a pinned interpreter is python-bound whatever the step count.
    d = diagnose(Run(rhythm="few", **PINNED).build(tmp_path / "s"))  # type: ignore[arg-type]
    assert len(d.timeline.steps) < 10
    assert d.category == "python-bound", d.headline
    healthy = diagnose(Run(rhythm="few").build(tmp_path / "h"))
    assert healthy.category == "healthy", healthy.headline
    assert "were not judged" in healthy.headline
    assert healthy.findings["input-bound"].status == "insufficient-data"


def test_few_steps_in_a_short_steady_state_are_not_enough(tmp_path: Path) -> None:
    d = diagnose(Run(rhythm="few", duration=6.0).build(tmp_path / "s"))
    assert d.category == "insufficient-data"
    assert d.issues[0].summary.startswith("Only ")
    assert "Run at least 30 steps" in d.issues[0].summary


def test_a_dataloader_workers_module_calls_are_not_a_loop(tmp_path: Path) -> None:
    b = SessionBuilder(tmp_path / "s", duration_s=10)
    b.process(100)
    b.process(201, ppid=100, worker=0)
    b.cpu(100, main=0.9)
    b.cpu(201, main=0.9)
    b.system(busy=1.8)
    b.steps(201, np.arange(1, 9, 0.01), source=fmt.STEP_SOURCE_FORWARD)  # a transform module
    b.steps(100, np.arange(1, 9, 0.05))
    tl = build_timeline(Session(b.write()))
    assert set(tl.steps.pid.tolist()) == {100}
    assert tl.steps.source == "optimizer"


def test_the_forward_unit_is_the_busiest_class_not_the_loss(tmp_path: Path) -> None:
    b = SessionBuilder(tmp_path / "s", duration_s=10)
    b.process(100)
    b.cpu(100, main=0.9)
    b.system(busy=1.8)
    model = np.arange(1, 9, 0.05)
    b.steps(100, model, source=fmt.STEP_SOURCE_FORWARD, opt=1, durs=np.full(len(model), 0.04))
    loss = np.sort(np.concatenate([model + 0.001, model + 0.002]))  # called twice as often
    b.steps(100, loss, source=fmt.STEP_SOURCE_FORWARD, opt=2, durs=np.full(len(loss), 1e-4))
    tl = build_timeline(Session(b.write()))
    assert len(tl.steps) == len(model) - 1
    assert np.median(tl.steps.duration) == pytest.approx(0.05)


def test_the_status_line_counts_the_unit_the_analysis_takes() -> None:
    assert status.MIN_RHYTHM == MIN_RHYTHM
    counts = {(fmt.STEP_SOURCE_OPTIMIZER, 1): 4, (fmt.STEP_SOURCE_BACKWARD, 0): 80}
    assert status._steps_of(Counter(counts)) == 80
    counts = {(fmt.STEP_SOURCE_OPTIMIZER, 1): 40, (fmt.STEP_SOURCE_BACKWARD, 0): 160}
    assert status._steps_of(Counter(counts)) == 40


def _loop(tmp_path: Path) -> SessionBuilder:
    b = SessionBuilder(tmp_path / "s", duration_s=12)
    b.process(100)
    b.cpu(100, main=0.9)
    b.system(busy=1.8)
    return b


def test_a_gan_steps_once_per_iteration_whichever_optimizer_counts(tmp_path: Path) -> None:
    b = _loop(tmp_path)
    iterations = np.arange(1, 11, 0.05)
    b.steps(100, iterations - 0.02, opt=1)  # discriminator
    b.steps(100, iterations, opt=2)  # generator
    b.steps(
        100, np.sort(np.r_[iterations - 0.03, iterations - 0.01]), source=fmt.STEP_SOURCE_BACKWARD
    )
    tl = build_timeline(Session(b.write()))
    assert tl.steps.source == "optimizer"
    assert len(tl.steps) == len(iterations) - 1


def test_gradient_accumulation_with_few_optimizer_steps_counts_micro_batches(
    tmp_path: Path,
) -> None:
    b = _loop(tmp_path)
    micro = np.arange(1, 11, 0.05)  # 200 backward passes, an optimizer step every 8
    b.steps(100, micro, source=fmt.STEP_SOURCE_BACKWARD)
    b.steps(100, micro[7::8] + 0.004, durs=np.full(len(micro[7::8]), 0.003))
    tl = build_timeline(Session(b.write()))
    assert tl.steps.source == "backward"
    assert len(tl.steps) == len(micro) - 1
    # the optimizer's time is in the micro-batch it ran in (one in eight)
    assert int((tl.steps.opt > 0).sum()) == len(micro[7::8]) - 1
    assert float(tl.steps.opt.max()) == pytest.approx(0.003)


def test_gradient_accumulation_with_enough_optimizer_steps_counts_them(tmp_path: Path) -> None:
    b = _loop(tmp_path)
    micro = np.arange(1, 11, 0.01)
    b.steps(100, micro, source=fmt.STEP_SOURCE_BACKWARD)
    b.steps(100, micro[3::4] + 0.001)
    tl = build_timeline(Session(b.write()))
    assert tl.steps.source == "optimizer"
