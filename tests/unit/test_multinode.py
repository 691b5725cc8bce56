"""Multi-node jobs on hand-built sessions: the launch environment, session names, which sessions
form a job, clock alignment, straggler-rank across nodes, per-node verdicts, the job's JSON and
``probe report DIR``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from probe.analysis import clock
from probe.analysis.multinode import JobDiagnosis, diagnose_job, to_json, where_text
from probe.cli import main
from probe.errors import JobError
from probe.recorder import default_name
from probe.session import format as fmt
from probe.session.job import plan_job
from probe.session.launch import (
    clock_offset_for_tests_ns,
    launch_env,
    launch_facts,
    short_host,
    torchrun_args,
)
from probe.session.meta import new_meta
from probe.testing import job_sessions

# -- the launch environment and names -------------------------------------------------------------


def test_torchrun_args_reads_both_spellings_and_stops_at_the_script() -> None:
    argv = [
        "/venv/bin/torchrun",
        "--nnodes=2",
        "--node-rank",
        "1",
        "--max-restarts",
        "3",
        "--rdzv_id",
        "abc",
        "--rdzv-endpoint",
        "10.0.0.1:29500",
        "train.py",
        "--node_rank",
        "7",
    ]
    assert torchrun_args(argv) == {
        "nnodes": "2",
        "node_rank": "1",
        "rdzv_id": "abc",
        "rdzv_endpoint": "10.0.0.1:29500",
    }
    module = ["python", "-m", "torch.distributed.run", "--standalone", "--no-python", "echo"]
    assert torchrun_args(module) == {"standalone": True}
    assert torchrun_args(["python", "train.py", "--nnodes", "2"]) is None


def test_launch_facts_know_the_node_from_torchrun_or_slurm() -> None:
    args = torchrun_args(["torchrun", "--nnodes", "1:4", "--node_rank", "2", "t.py"])
    assert launch_facts({}, args) == {"node_rank": 2, "nnodes": 4, "multinode": True}
    slurm = {"SLURM_NODEID": "3", "SLURM_NNODES": "8", "SLURM_JOB_ID": "991"}
    assert launch_facts(slurm, None) == {"node_rank": 3, "nnodes": 8, "multinode": True}
    single = torchrun_args(["torchrun", "--standalone", "--nproc_per_node", "2", "t.py"])
    assert launch_facts({}, single)["multinode"] is False


def test_launch_env_keeps_only_the_launch_variables() -> None:
    env = {"RANK": "3", "SLURM_JOB_ID": "7", "HOME": "/root", "API_TOKEN": "x", "PATH": "/bin"}
    assert launch_env(env) == {"RANK": "3", "SLURM_JOB_ID": "7"}


def test_session_names_carry_host_and_node_for_a_node_of_a_multinode_job() -> None:
    import datetime as dt

    now = dt.datetime(2026, 11, 21, 10, 15, 0)
    two = ["torchrun", "--nnodes", "2", "--node_rank", "1", "train.py"]
    name = default_name(42, now, argv=two, environ={})
    assert name.startswith("20261121-101500-") and name.endswith("-node1-42")
    assert name != default_name(42, now, argv=["torchrun", "--nnodes", "2", "--node_rank", "0"])
    elastic = ["torchrun", "--nnodes", "2:4", "--rdzv-backend", "c10d", "train.py"]
    assert "-node" not in default_name(42, now, argv=elastic, environ={})
    host = short_host()
    assert default_name(42, now, argv=elastic, environ={}) == f"20261121-101500-{host}-42"
    slurm = {"SLURM_NNODES": "4", "SLURM_NODEID": "3"}
    assert default_name(42, now, argv=["python", "t.py"], environ=slurm).endswith("-node3-42")
    assert default_name(42, now, argv=["python", "t.py"], environ={}) == "20261121-101500-42"


def test_the_test_clock_offset_moves_only_the_wall_clock() -> None:
    assert clock_offset_for_tests_ns({"PROBE_TEST_CLOCK_OFFSET_S": "2.5"}) == 2_500_000_000
    assert clock_offset_for_tests_ns({}) == 0
    kwargs = {
        "kind": "doctor",
        "name": "n",
        "argv": ["torchrun", "--nnodes", "2", "--node_rank", "0", "--rdzv-id", "r", "t.py"],
        "cwd": "/",
        "settings": {},
        "machine": {},
    }
    plain = new_meta(**kwargs, environ={"RANK": "0"})  # type: ignore[arg-type]
    moved = new_meta(**kwargs, environ={"PROBE_TEST_CLOCK_OFFSET_S": "100"})  # type: ignore[arg-type]
    assert moved["start"]["unix_ns"] - plain["start"]["unix_ns"] == pytest.approx(100e9, abs=1e9)
    assert moved["start"]["monotonic_ns"] - plain["start"]["monotonic_ns"] < 1e9
    assert moved["test_clock_offset_s"] == 100 and "test_clock_offset_s" not in plain
    assert plain["launch"]["env"] == {"RANK": "0"}
    assert plain["launch"]["torchrun"]["rdzv_id"] == "r"


# -- which sessions form a job --------------------------------------------------------------------


def test_a_directory_of_node_sessions_is_one_job(tmp_path: Path) -> None:
    job_sessions(tmp_path / "shared", nodes=3, ranks_per_node=2, duration_s=8, run_id="r7")
    plan = plan_job([tmp_path / "shared"])
    assert plan.job_id == "torchrun:r7" and plan.id_source == "torchrun rendezvous id"
    assert [(n.key, n.host, n.ranks) for n in plan.nodes] == [
        ("node 0", "host0", [0, 1]),
        ("node 1", "host1", [2, 3]),
        ("node 2", "host2", [4, 5]),
    ]
    assert (plan.nnodes, plan.world_size) == (3, 6)
    assert plan.missing_nodes == [] and plan.warnings == []
    assert plan.name == "job-torchrun-r7"


def test_sessions_of_different_jobs_are_refused_saying_which_is_which(tmp_path: Path) -> None:
    a = job_sessions(tmp_path / "a", duration_s=8, run_id="first")
    b = job_sessions(tmp_path / "b", duration_s=8, run_id="second")
    with pytest.raises(JobError) as err:
        plan_job([*a, *b])
    text = err.value.message
    assert "belong to 2 different jobs" in text
    assert "rendezvous id first" in text and "rendezvous id second" in text
    assert err.value.hint is not None and str(a[0]) in err.value.hint


def test_a_reused_rendezvous_id_an_hour_apart_is_two_jobs(tmp_path: Path) -> None:
    a = job_sessions(tmp_path / "a", duration_s=8, run_id="same")
    b = job_sessions(tmp_path / "b", duration_s=8, run_id="same", wall_errors_s=[3600, 3600])
    assert len(plan_job(a).nodes) == 2
    with pytest.raises(JobError, match="2 different jobs"):
        plan_job([*a, *b])


def test_without_a_rendezvous_id_the_command_and_endpoint_tell_the_job(tmp_path: Path) -> None:
    paths = job_sessions(tmp_path / "j", duration_s=8, run_id=None)
    plan = plan_job(paths)
    assert plan.job_id is None and plan.id_source == "rendezvous endpoint"
    assert len(plan.nodes) == 2
    assert plan.name == f"job-{paths[0].name}"


def test_a_missing_node_is_named_and_the_job_still_planned(tmp_path: Path) -> None:
    paths = job_sessions(tmp_path / "j", nodes=3, ranks_per_node=2, duration_s=8)
    shutil.rmtree(paths[1])
    plan = plan_job([tmp_path / "j"])
    assert plan.missing_nodes == [1] and plan.missing_ranks == [2, 3]
    assert plan.warnings == [
        "node 1 of 3 is missing: no session of it was given (ranks 2-3 are not in this "
        "diagnosis); pass every node's session for a diagnosis of the whole job"
    ]


def test_a_rank_in_two_sessions_is_refused(tmp_path: Path) -> None:
    paths = job_sessions(tmp_path / "j", duration_s=8)
    copy = tmp_path / "j" / "copy-of-node0"
    shutil.copytree(paths[0], copy)
    with pytest.raises(JobError, match="rank 0 appears in two sessions"):
        plan_job([tmp_path / "j"])


# -- clocks ---------------------------------------------------------------------------------------


def test_the_fit_finds_offset_and_drift_and_reports_the_residual() -> None:
    rng = np.random.default_rng(1)
    index = np.arange(1, 3001)
    ref_t = 5.0 + 0.2 * index + rng.normal(0, 1e-4, len(index))
    offset, drift = -3.25, 40e-6  # the node's wall clock is 3.25 s ahead; its clock runs slow
    prior = 11.0  # where its wall clock puts its start
    # the node's own times of the same instants: aligned = p + offset + drift * p, p = local + prior
    local = (ref_t - offset) / (1 + drift) - prior + rng.normal(0, 1e-4, len(index))
    fit = clock.fit(index, ref_t, index, local, prior, step_s=0.2)
    assert fit.method == clock.STEPS
    assert fit.offset_s == pytest.approx(offset, abs=2e-3)
    assert fit.drift == pytest.approx(drift, abs=5e-6)
    assert fit.residual_p90_s is not None and fit.residual_p90_s < 5e-4
    aligned = fit.aligned(local)
    assert np.median(np.abs(aligned - ref_t)) < 3e-4


def test_steps_that_are_not_synchronous_fall_back_to_the_wall_clock() -> None:
    rng = np.random.default_rng(2)
    index = np.arange(1, 400)
    ref_t = np.cumsum(rng.uniform(0.05, 0.15, len(index)))
    local = np.cumsum(rng.uniform(0.05, 0.15, len(index)))  # its own pace: not lock-step
    fit = clock.fit(index, ref_t, index, local, 0.7, step_s=0.1)
    assert fit.method == clock.WALL_CLOCK and fit.offset_s == 0.0
    assert "not synchronous" in fit.reason
    assert fit.aligned(1.0) == pytest.approx(1.7)
    few = clock.fit(index[:3], ref_t[:3], index[:3], local[:3], 0.7, step_s=0.1)
    assert few.method == clock.WALL_CLOCK and "only 3 of its steps" in few.reason


def test_the_shared_instants_are_backward_returns_else_optimizer_starts() -> None:
    back, opt = fmt.STEP_SOURCE_BACKWARD, fmt.STEP_SOURCE_OPTIMIZER
    n = 6
    source = np.array([back, opt] * n, dtype=np.uint8)
    index = np.repeat(np.arange(1, n + 1), 2)
    t = np.array([[100 * k, 100 * k + 30] for k in range(1, n + 1)]).ravel()
    dur = np.array([[0, 20] for _ in range(n)]).ravel()
    idx, at = clock.sync_times(source, index, t, dur)
    assert list(idx) == list(range(1, n + 1)) and list(at) == [100 * k for k in range(1, n + 1)]
    only_opt = source == opt
    idx, at = clock.sync_times(source[only_opt], index[only_opt], t[only_opt], dur[only_opt])
    assert list(at) == [100 * k + 10 for k in range(1, n + 1)]  # the optimizer step's start


def test_a_session_instant_is_the_median_of_its_ranks() -> None:
    a = (np.array([1, 2, 3]), np.array([0.9, 1.9, 2.9]))
    b = (np.array([2, 3, 4]), np.array([2.1, 3.1, 4.1]))
    c = (np.array([2, 3]), np.array([2.3, 3.3]))
    index, t = clock.session_instants([a, b, c])
    assert list(index) == [1, 2, 3, 4]
    assert np.allclose(t, [0.9, 2.1, 3.1, 4.1])


# -- the job's diagnosis --------------------------------------------------------------------------


def _diagnose(path: Path, **kwargs: object) -> JobDiagnosis:
    job_sessions(path, **kwargs)  # type: ignore[arg-type]
    return diagnose_job(plan_job([path]), workers=1)


@pytest.fixture(scope="module")
def slow_node(tmp_path_factory: pytest.TempPathFactory) -> JobDiagnosis:
    """2 nodes x 2 ranks; both ranks of node 1 are late (its host busy with other work); node
    1's wall clock is 5 s ahead and it started 1.3 s later."""
    return _diagnose(
        tmp_path_factory.mktemp("slow-node") / "job",
        ranks_per_node=2,
        duration_s=30,
        slow={2: 0.05, 3: 0.05},
        wall_errors_s=[0.0, 5.0],
        start_delays_s=[0.0, 1.3],
        busy_outside={1: 1.5},
    )


def test_a_whole_slow_node_is_told_from_a_slow_rank(slow_node: JobDiagnosis) -> None:
    assert slow_node.category == "straggler-rank"
    f = slow_node.issues[0].finding
    assert f.evidence["scope"] == "node"
    assert (f.evidence["straggler_node"], f.evidence["straggler_host"]) == ("node 1", "host1")
    assert f.title.startswith("Node 1 (host host1) is slow: all its 2 ranks are late")
    assert "1.5 of its 4 cores were busy outside the job" in f.summary
    assert f.next_step.startswith("Find what else runs on host host1")
    waits = f.evidence["node_wait_shares"]
    assert waits["node 0"] > 0.3 and waits["node 1"] < 0.2
    assert slow_node.issues[0].nodes == ["node 1"]


def test_node_clocks_are_aligned_on_the_steps_not_the_wall_clock(slow_node: JobDiagnosis) -> None:
    ref, other = slow_node.sessions
    assert ref.clock is not None and ref.clock.method == clock.REFERENCE
    assert other.clock is not None and other.clock.method == clock.STEPS
    assert other.clock.prior_s == pytest.approx(6.3)  # 1.3 s later, wall clock 5 s ahead
    assert other.clock.offset_s == pytest.approx(-5.0, abs=1e-3)
    assert other.clock.start_s == pytest.approx(1.3, abs=1e-3)
    assert slow_node.residual_skew_s is not None and slow_node.residual_skew_s < 1e-3
    assert slow_node.clock_method == clock.STEPS
    # the same step ends at the same aligned time on every rank
    ends = [
        s.clock.aligned(k.step_end[k.step_index == 100])
        for s in slow_node.sessions
        for k in s.ranks
        if s.clock is not None
    ]
    assert np.ptp(np.concatenate(ends)) < 1e-3


def test_a_node_without_steps_is_placed_by_its_wall_clock_and_says_so(tmp_path: Path) -> None:
    from probe.report.job import clock_line

    d = _diagnose(
        tmp_path / "job",
        duration_s=20,
        wall_errors_s=[0.0, 2.0],
        start_delays_s=[0.0, 0.5],
        no_steps=[1],
    )
    ref, other = d.sessions
    assert ref.clock is not None and ref.clock.method == clock.REFERENCE
    assert other.clock is not None and other.clock.method == clock.WALL_CLOCK
    assert other.clock.reason == "no steps were recorded"
    assert other.clock.start_s == pytest.approx(2.5)  # where its (wrong) wall clock puts it
    assert d.clock_method == clock.WALL_CLOCK and d.residual_skew_s is None
    assert any(
        w.startswith("node 1 (host1-node1) is placed by its wall clock: no steps were recorded")
        for w in d.warnings
    )
    assert clock_line(d) == (
        "placed by the hosts' wall clocks (no step boundaries shared by the nodes)"
    )
    doc = to_json(d)
    assert doc["job"]["clock"] == {"method": "wall-clock", "residual_skew_s": None}


def test_one_slow_rank_among_healthy_ranks_of_its_node(tmp_path: Path) -> None:
    d = _diagnose(
        tmp_path / "job", ranks_per_node=2, duration_s=30, slow={3: 0.05}, wall_errors_s=[0, -0.7]
    )
    f = d.issues[0].finding
    assert (d.category, f.evidence["scope"], f.evidence["straggler_rank"]) == (
        "straggler-rank",
        "rank",
        3,
    )
    assert f.title.startswith("Rank 3 on host host1 (node 1) is a straggler")
    assert "The other ranks of node 1 are not late" in f.summary
    assert d.sessions[1].clock is not None
    assert d.sessions[1].clock.offset_s == pytest.approx(0.7, abs=1e-3)


def test_a_verdict_on_one_node_only_says_where_and_goes_before_its_straggler(
    tmp_path: Path,
) -> None:
    d = _diagnose(tmp_path / "job", duration_s=30, data_wait={1: 0.06})
    assert [i.id for i in d.issues] == ["input-bound", "straggler-rank"]
    first, straggler = d.issues
    assert (
        first.nodes == ["node 1"] and first.hosts == ["host1"] and first.where == ("on node 1 only")
    )
    assert first.finding.title.endswith("(on node 1 only)")
    assert first.finding.summary.startswith("On node 1 only (host host1). ")
    assert straggler.finding.evidence["scope"] == "rank-or-node"
    assert "It is the only rank profiled on node 1" in straggler.finding.summary
    assert "On node 1, probe also finds input-bound" in straggler.finding.summary
    doc = to_json(d)
    assert doc["category"] == "input-bound"
    assert doc["issues"][0]["where"] == {
        "nodes": ["node 1"],
        "hosts": ["host1"],
        "of": 2,
        "across_ranks": False,
        "impact_by_node": {"node 1": pytest.approx(first.finding.impact, abs=1e-4)},
    }


def test_a_healthy_job_and_the_same_diagnosis_in_parallel(tmp_path: Path) -> None:
    job_sessions(tmp_path / "job", duration_s=24)
    plan = plan_job([tmp_path / "job"])
    serial = diagnose_job(plan, workers=1)
    parallel = diagnose_job(plan, workers=2)
    assert serial.category == "healthy" and serial.straggler.status == "not-detected"
    assert "evenly" in serial.straggler.reason
    assert json.dumps(to_json(serial), sort_keys=True) == json.dumps(
        to_json(parallel), sort_keys=True
    )


def test_the_job_json_is_the_diagnosis_schema_with_the_job(slow_node: JobDiagnosis) -> None:
    doc = json.loads(json.dumps(to_json(slow_node), allow_nan=False))
    assert doc["schema"] == "probe.diagnosis/1"
    assert set(doc) >= {"category", "issues", "window", "run", "partial", "losses", "job"}
    job = doc["job"]
    assert job["id"] == "torchrun:job-1" and job["nnodes"] == 2 and job["world_size"] == 4
    assert job["clock"]["method"] == "steps" and job["clock"]["residual_skew_s"] < 1e-3
    assert [n["node"] for n in job["nodes"]] == ["node 0", "node 1"]
    assert [n["ranks"] for n in job["nodes"]] == [[0, 1], [2, 3]]
    assert job["nodes"][1]["sessions"][0]["clock"]["offset_s"] == pytest.approx(-5.0, abs=1e-3)
    assert job["nodes"][1]["sessions"][0]["load"]["outside_cores"] == pytest.approx(1.5, abs=0.1)
    t0, t1 = doc["window"]
    assert 0 < t0 < t1 <= 30


def test_where_a_verdict_holds_in_words() -> None:
    assert where_text(["node 1"], 2) == "on node 1 only"
    assert where_text(["node 0", "node 1"], 2) == "on every node"
    assert where_text(["node 0", "node 2", "node 3"], 8) == "on node 0, node 2 and node 3 (of 8)"
    assert where_text(["node 0"], 1) == ""


# -- probe report DIR -----------------------------------------------------------------------------


def test_probe_report_on_a_directory_of_node_sessions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBE_NO_OPEN", "1")
    job_sessions(tmp_path / "shared", duration_s=24, slow={1: 0.05}, wall_errors_s=[0, 2.0])
    assert main(["report", str(tmp_path / "shared"), "--json", str(tmp_path / "copy.json")]) == 0
    err = capsys.readouterr().err
    assert "probe: job:     torchrun rendezvous id job-1: 2 nodes, 2 ranks" in err
    assert "node 0 on host0: rank 0; node 1 on host1: rank 1" in err
    assert "probe: clocks:  aligned on " in err and "node 1's, 2.000 s ahead" in err
    assert "verdict: straggler-rank (high) - Rank 1 on host host1 (node 1)" in err
    written = tmp_path / "shared" / "job-torchrun-job-1.json"
    assert json.loads(written.read_text())["category"] == "straggler-rank"
    assert json.loads((tmp_path / "copy.json").read_text()) == json.loads(written.read_text())
    assert f"again:   probe report {tmp_path / 'shared'}" in err


def test_probe_report_refuses_sessions_of_two_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = job_sessions(tmp_path / "a", duration_s=8, run_id="one")
    b = job_sessions(tmp_path / "b", duration_s=8, run_id="two")
    assert main(["report", str(a[0]), str(b[1])]) == 1
    err = capsys.readouterr().err
    assert "probe: error: these 2 sessions belong to 2 different jobs" in err
    assert "Pass the sessions of one job only" in err


def test_a_session_a_worker_cannot_read_is_the_error_of_probe_report(tmp_path: Path) -> None:
    from probe.analysis.multinode import analyse_sessions
    from probe.errors import NotASession

    paths = job_sessions(tmp_path / "job", duration_s=8)
    (paths[1] / "meta.json").write_text("{not json")
    with pytest.raises(NotASession, match="cannot be read"):
        analyse_sessions(paths, workers=2)


# -- the job's page and Markdown ------------------------------------------------------------------


def test_the_heat_map_has_a_row_per_rank_and_the_slow_node_waits_least(
    slow_node: JobDiagnosis,
) -> None:
    from probe.report.job_page import MAX_HEAT_COLUMNS, heat_matrix

    ranks = [k for s in slow_node.sessions for k in s.ranks]
    made = heat_matrix(ranks)
    assert made is not None
    matrix, first, _ = made
    assert matrix.shape[0] == 4 and matrix.shape[1] <= MAX_HEAT_COLUMNS
    assert first == min(int(k.step_index[k.step_index >= 0].min()) for k in ranks)
    waits = np.nanmean(matrix, axis=1)
    assert max(waits[2:]) < min(waits[:2])  # node 1's ranks 2 and 3 wait least


def test_a_step_waits_no_longer_than_it_lasts_even_between_sparse_samples(
    tmp_path: Path,
) -> None:
    # stacks at 5 Hz: each sample stands for 0.2 s, longer than a step of about 0.12 s
    d = _diagnose(tmp_path / "job", duration_s=30, slow={1: 0.05}, stack_hz=5.0)
    capped = 0
    for k in (k for s in d.sessions for k in s.ranks):
        known = np.isfinite(k.step_wait)
        lengths = (k.step_end - k.step_start)[known]
        assert known.sum() > 20
        assert np.all(k.step_wait[known] <= lengths + 1e-12)
        capped += int(np.sum(np.isclose(k.step_wait[known], lengths)))
    assert capped > 0


def test_the_heat_map_bins_long_runs_into_columns() -> None:
    from probe.analysis.multinode import RankResult
    from probe.report.job_page import MAX_HEAT_COLUMNS, heat_matrix

    n = 5000
    index = np.arange(1, n + 1)
    wait = np.where(index % 2 == 0, 0.002, 0.004)
    wait[:10] = np.nan
    rank = RankResult(
        pid=1,
        rank=0,
        local_rank=0,
        step_index=index,
        step_start=index * 0.1,
        step_end=index * 0.1 + 0.1,
        step_wait=wait,
        sync_index=index,
        sync_t=index * 0.1,
        row={},
        stacks=[],
        run_queue_share=None,
    )
    made = heat_matrix([rank])
    assert made is not None
    matrix, first, block = made
    assert (first, block) == (1, 9) and matrix.shape == (1, MAX_HEAT_COLUMNS - 44)
    assert np.isnan(matrix[0, 0])  # steps 1-9: none known
    assert matrix[0, 1] == pytest.approx(3.0)  # steps 10-18: 10 unknown, four of 2 ms, four of 4
    assert matrix[0, 5] == pytest.approx((5 * 2 + 4 * 4) / 9)  # steps 46-54
    no_index = RankResult(**{**rank.__dict__, "step_index": np.full(n, -1)})
    assert heat_matrix([no_index]) is None


def test_the_job_page_groups_ranks_by_node_with_every_graph(slow_node: JobDiagnosis) -> None:
    import re

    from probe.report.job_page import render_job

    page = render_job(slow_node, again=["/shared/.probe"])
    for title in (
        "Step time per rank",
        "Collective wait per step (ms): rank x step",
        "CPU per node (cores)",
        "Memory per node (GB)",
        "Ranks by node",
    ):
        assert title in page
    assert "Node 1 (host host1) is slow: all its 2 ranks are late" in page
    assert "steps, wall clock corrected by -5.000 s" in page
    table = page[page.index("Ranks by node") :]
    cells = re.findall(r"<tr><td>(node \d)</td><td>(host\d)</td><td>(\d)</td>", table)
    assert cells == [
        ("node 0", "host0", "0"),
        ("node 0", "host0", "1"),
        ("node 1", "host1", "2"),
        ("node 1", "host1", "3"),
    ]
    assert not re.search(r"<script[^>]+src=", page)  # opens from disk: nothing loaded
    assert "render again: <code>probe report /shared/.probe</code>" in page


def test_the_job_page_escapes_what_the_sessions_say(tmp_path: Path) -> None:
    from probe.report.job_page import render_job

    d = _diagnose(tmp_path / "job", duration_s=12, host_prefix="<img src=x onerror=alert(1)>$$")
    page = render_job(d)
    body = page[page.index("<body") :]
    assert "<img src=x" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;$$0" in body


def test_the_job_markdown_says_the_verdict_where_and_the_nodes(slow_node: JobDiagnosis) -> None:
    from probe.report.job import markdown_text

    text = markdown_text(slow_node, report=Path("/r/job.html"), json_path=None)
    assert text.startswith("## probe: straggler-rank (high) (job job-torchrun-job-1)")
    assert "**Where:** judged across all ranks; the straggler is on node 1 (host host1)." in text
    assert "| node 1 | host1 | ranks 2-3 | healthy | steps, corrected by -5.000 s |" in text
    assert "Report: `/r/job.html`" in text


def test_probe_report_on_a_job_writes_its_page_and_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBE_NO_OPEN", "1")
    paths = job_sessions(tmp_path / "shared", duration_s=12, slow={1: 0.05})
    md = tmp_path / "job.md"
    assert main(["report", *map(str, paths), "--markdown", str(md)]) == 0
    err = capsys.readouterr().err
    page = tmp_path / "shared" / "job-torchrun-job-1.html"
    assert f"report:  {page}" in err
    assert "Ranks by node" in page.read_text()
    assert md.read_text().startswith("## probe: straggler-rank")


def test_probe_report_on_a_job_with_a_node_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBE_NO_OPEN", "1")
    paths = job_sessions(tmp_path / "shared", nodes=3, duration_s=12)
    shutil.rmtree(paths[2])
    out = tmp_path / "job.json"
    assert main(["report", str(tmp_path / "shared"), "--json", str(out)]) == 0
    err = capsys.readouterr().err
    assert "probe: warning: node 2 of 3 is missing: no session of it was given" in err
    assert "note: partial: a node is missing" in err
    doc = json.loads(out.read_text())
    assert doc["partial"] is True and doc["job"]["missing"]["nodes"] == [2]


def test_a_node_s_own_probe_says_how_to_see_the_whole_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from probe.cli.common import conclude
    from probe.testing import SessionBuilder

    paths = job_sessions(tmp_path / "shared", duration_s=8)
    conclude(paths[1], collect_only=True, json_path=None, open_report=False)
    err = capsys.readouterr().err
    assert f"probe: analyse it with: probe report {paths[1]}" in err
    assert (
        "probe: note: this session is node 1 of a 2-node job; for one diagnosis of the whole "
        f"job: probe report {(tmp_path / 'shared').resolve()}"
    ) in err
    b = SessionBuilder(tmp_path / "alone" / "one", duration_s=5)
    b.process(100)
    conclude(b.write(), collect_only=True, json_path=None, open_report=False)
    assert "note:" not in capsys.readouterr().err  # one machine: nothing to merge
