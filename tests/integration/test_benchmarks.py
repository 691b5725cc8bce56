"""The benchmark scripts run, end to end, on tiny configurations (their numbers are not checked:
timings on shared machines are for the benchmark commands, never for tests)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import PYTHON, REPO

BENCH = REPO / "benchmarks"
# Smoke runs: they check what the scripts write, never their numbers.
pytestmark = pytest.mark.shareable


def _mirrored() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mirrored", BENCH / "mirrored.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mirrored_rounds_cancel_a_linear_drift() -> None:
    mirrored = _mirrored()
    arms = ["bare", "probe", "control"]
    orders = [mirrored.order(arms, i) for i in range(3)]
    assert orders[0] == ["bare", "probe", "control", "control", "probe", "bare"]
    # Each arm takes the outer places in turn, and runs twice a round.
    assert [o[0] for o in orders] == arms
    assert all(sorted(o) == sorted(arms * 2) for o in orders)
    # A machine that slows by 3 % a run: a 2 % overhead is read as 2 %, and the control as
    # nothing, whichever arm runs first; a plain A-then-B pair reads ~5 % and ~3 %.
    for i in range(3):
        got: dict[str, list[float]] = {arm: [] for arm in arms}
        for k, arm in enumerate(mirrored.order(arms, i)):
            got[arm].append((1.02 if arm == "probe" else 1.0) * (1 + 0.03 * k))
        assert mirrored.ratio(got, "probe", "bare") == pytest.approx(1.02)
        assert mirrored.ratio(got, "control", "bare") == pytest.approx(1.0)
        assert mirrored.pooled_ratio(got, "probe", ["bare", "control"]) == pytest.approx(1.02)


def test_the_pooled_ratio_sets_an_arm_against_the_mean_of_its_baselines() -> None:
    mirrored = _mirrored()
    got = {"bare": [1.0, 1.0], "control": [1.1, 1.1], "probe": [1.05, 1.05]}
    assert mirrored.pooled_ratio(got, "probe", ["bare", "control"]) == pytest.approx(1.0)
    assert mirrored.pooled_ratio(got, "probe", ["bare"]) == pytest.approx(1.05)


def bench(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [PYTHON, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": f"{Path(PYTHON).parent}:/usr/bin:/bin", "PROBE_NO_OPEN": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_overhead_runs(tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    md = tmp_path / "o.md"
    args = ["--rounds", "1", "--steps", "20", "--json", str(out), "--markdown", str(md)]
    bench([str(BENCH / "overhead.py"), *args, "--", "--stack-rate", "50"], 300)
    result = json.loads(out.read_text())
    assert result["rounds"] == 1 and result["runs_per_arm"] == 2  # rounds: unit-tested above
    assert result["probe_args"] == ["--stack-rate", "50"]
    keys = ("loop_ratio", "wall_ratio", "control_loop_ratio", "pooled_loop_ratio", "tree_cpu_ratio")
    for key in keys:
        ratio = result[key]
        assert 0 < ratio["min"] <= ratio["ci_low"] <= ratio["median"] <= ratio["ci_high"]
        assert ratio["ci_high"] <= ratio["max"]
    assert 0 < result["probe_share_of_job_cpu"] < 1
    assert result["session_mb_per_min"] > 0
    assert "control / bare" in md.read_text() and "both bare arms" in md.read_text()


def test_analysis_scale_runs_and_reports_the_report_size(tmp_path: Path) -> None:
    md = tmp_path / "scale.md"
    bench([str(BENCH / "analysis_scale.py"), "--minutes", "0.25", "--markdown", str(md)], 300)
    row = md.read_text().splitlines()[-1]
    assert row.startswith("| 15 s |")
    report_mb = float(row.rstrip(" |").split("|")[-1].strip().split()[0])
    assert 0.1 < report_mb < 2.0


def test_export_scale_runs_every_format(tmp_path: Path) -> None:
    md = tmp_path / "export.md"
    bench([str(BENCH / "export_scale.py"), "--minutes", "0.25", "--markdown", str(md)], 300)
    rows = md.read_text().splitlines()[2:]
    assert [r.split("|")[3].strip() for r in rows] == [
        "`probe report` (for comparison)",
        *(f"`--format {f}`" for f in ("chrome-trace", "speedscope", "collapsed", "csv", "parquet")),
    ]


def test_verdict_latency_runs_both_arms(tmp_path: Path) -> None:
    out = tmp_path / "v.json"
    args = ["--rounds", "1", "--command-s", "1", "--arms", "off", "always", "--json", str(out)]
    bench([str(BENCH / "verdict_latency.py"), *args], 300)
    result = json.loads(out.read_text())
    assert result["runs_per_arm"] == 2 and list(result["arms"]) == ["off", "always"]
    for arm in result["arms"].values():
        assert 0 < arm["to_verdict_s"] < arm["to_exit_s"] and arm["loop_s"] > 0
        assert arm["sampler_max_ms"] >= arm["sampler_p99_ms"] > 0
    assert result["arms"]["off"]["steps"] == 0 and result["arms"]["always"]["steps"] > 0


def test_verdict_latency_runs_the_paced_training_loop_and_times_the_stages(
    tmp_path: Path,
) -> None:
    out = tmp_path / "v.json"
    args = ["--workload", "paced", "--command-s", "3", "--plain", "--rounds", "1"]
    args += ["--arms", "always", "--stages", "--keep", str(tmp_path / "runs"), "--json", str(out)]
    bench([str(BENCH / "verdict_latency.py"), *args], 300)
    arm = json.loads(out.read_text())["arms"]["always"]
    assert arm["loop_s"] >= 3 and 0 < arm["to_verdict_s"] < arm["to_exit_s"]
    assert arm["session_mb"] > 0 and arm["stage_to_verdict_s"] > 0 and arm["stage_page_s"] > 0
    assert len(list((tmp_path / "runs" / ".probe").glob("*/diagnosis.json"))) == 1


@pytest.mark.skipif(shutil.which("gdb") is None, reason="needs gdb")
def test_attach_latency_runs() -> None:
    result = bench([str(BENCH / "attach_latency.py"), "--runs", "1"], 300)
    assert "median" in result.stdout + result.stderr


def test_peers_runs_and_names_missing_tools(tmp_path: Path) -> None:
    out = tmp_path / "peers"
    out.mkdir()
    # --update keeps the rows of tools not measured now and replaces those measured again
    kept = {"tool": "scalene run", "kind": "loader", "status": "not run this time"}
    kept.update(pairs=0, loop_ratio=None, wall_ratio=None, rss_added_mb=None, mb_per_min=None)
    stale = dict(kept, tool="probe doctor --collect-only", status="stale", pairs=99)
    (out / "peers.json").write_text(json.dumps([stale, kept]))
    bench(
        [
            str(BENCH / "peers.py"),
            "--tiny",
            "--kinds",
            "loader",
            "--tools",
            "probe doctor --collect-only",
            "torch.profiler",
            "pyinstrument",
            "bare (A/A control)",
            "--out",
            str(out),
            "--update",
        ],
        600,
    )
    rows = {r["tool"]: r for r in json.loads((out / "peers.json").read_text())}
    assert rows["scalene run"] == kept
    assert "not run this time" in (out / "peers.md").read_text()
    probe = rows["probe doctor --collect-only"]
    assert probe["status"] == "ok" and probe["rounds"] == 1 and probe["pairs"] == 2
    assert probe["loop_ratio"]["median"] > 0
    # probe records the DataLoader workers' own stacks; torch.profiler stays in the main process.
    assert probe["saw_workers"] is True
    assert rows["torch.profiler"]["saw_workers"] is False
    if rows["pyinstrument"]["status"] != "ok":
        assert "not installed" in rows["pyinstrument"]["status"]
        assert "not installed" in (out / "peers.md").read_text()
    # the A/A control: the bare command timed as a tool, in the table with no workers column
    control = rows["bare (A/A control)"]
    assert control["status"] == "ok" and control["loop_ratio"]["median"] > 0
    assert "| loader | bare (A/A control) |" in (out / "peers.md").read_text()
    assert (out / "peers.html").stat().st_size > 10_000


def _gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", BENCH / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_check_runs_its_whole_pipeline_on_the_cpu(tmp_path: Path) -> None:
    """The GPU check's plumbing, with toy sizes on the CPU: every step runs, and what the device
    tool brings back (at most 8 files, plain names) holds the table, the diagnoses and reports."""
    out = tmp_path / "out"
    env = {
        "PATH": f"{Path(PYTHON).parent}:/usr/bin:/bin",
        "PROBE_NO_OPEN": "1",
        "OUT": str(out),
        "GPU_CHECK_PYTHON": PYTHON,
        "TMPDIR": str(tmp_path),
    }
    result = subprocess.run(
        ["bash", str(BENCH / "gpu_check.sh"), "--cpu-smoke", "--no-venv"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    files = {p.name for p in out.iterdir()}
    assert {"results.md", "results.json", "gpu-check.log", "reports.tar.gz"} <= files
    assert len(files) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files)
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "cpu-smoke"
    assert results["torch"]["version"]  # the torch of this environment, recorded
    for step in "abcd":
        assert results[step]["exit_status"] == 0, results[step]
        assert results[step]["status"].startswith("ran"), results[step]
        assert results[step]["loop"]["steps"] > 0
        assert set(results[step]["findings"]) >= {"host-sync-stalls", "gpu-underutilized"}
    assert results["overhead"]["rounds"] == 1 and results["overhead"]["loop_ratio"]["median"] > 0
    assert results["context"]["cuda_initialized_in_program"] is False
    assert results["context"]["exit_status"] == 0
    table = (out / "results.md").read_text()
    for title in (
        "(a) healthy",
        "(b) .item()",
        "(c) GPU starved",
        "(d) CUDA tensors",
        "(e) overhead",
    ):
        assert f"| {title}" in table
    with tarfile.open(out / "reports.tar.gz") as tar:
        names = set(tar.getnames())
    for name in ("a-gpu_healthy", "b-gpu_host_sync", "c-gpu_input_bound", "d-gpu_memory_growth"):
        assert f"diagnoses/{name}.json" in names and f"sessions/{name}.html" in names
    assert not list(tmp_path.glob("gpu-check.*")), "the work folder is left behind"


def test_the_gpu_check_judges_each_scenario_by_what_must_hold_on_a_gpu() -> None:
    gpu_check = _gpu_check()
    good = {
        "exit_status": 0,
        "category": "input-bound",
        "expected": "input-bound",
        "expected_also": ["gpu-underutilized"],
        "issues": [{"id": "input-bound"}, {"id": "gpu-underutilized"}],
        "nvml_samples": 200,
        "nvml_gpu_memory_mb": 1800,
        "cuda_samples": 40,
        "processes_with_cuda_context": [4242],
        "report_gpu_utilisation": True,
        "report_nvml_process_memory": True,
    }
    assert gpu_check._judge_scenario(good, smoke=False) == "pass"
    bad = dict(good, issues=[{"id": "input-bound"}], processes_with_cuda_context=[1, 2])
    bad["nvml_gpu_memory_mb"] = None
    verdict = gpu_check._judge_scenario(bad, smoke=False)
    assert verdict.startswith("FAIL")
    assert "gpu-underutilized not among the issues" in verdict
    assert "no NVML per-process memory" in verdict and "more than one process" in verdict
    assert gpu_check._judge_scenario(dict(good, exit_status=None), smoke=True) == "FAIL: timed out"


def test_compare_study_runs_every_part_and_reports(tmp_path: Path) -> None:
    study = str(BENCH / "compare_study.py")
    results = ["--results", str(tmp_path)]
    bench([study, *results, "synthetic", "--trials", "2", "--profiles", "quiet"], 300)
    bench([study, *results, "sessions", "--trials", "1"], 300)
    bench([study, *results, "real", "--trials", "1", "--repeat", "1", "--steps", "60"], 300)
    bench([study, *results, "report"], 60)
    text = (tmp_path / "compare_study.md").read_text()
    assert "| quiet | 5 + 5 | mirrored |" in text
    assert "comparisons of 5 + 5 runs" in text
    assert "1 + 1 runs in mirrored rounds" in text
    trials = json.loads((tmp_path / "compare_real.json").read_text())["trials"]
    assert [t["effect"] for t in trials] == [0.0, 0.1]


def test_compare_scale_runs(tmp_path: Path) -> None:
    md = tmp_path / "scale.md"
    bench([str(BENCH / "compare_scale.py"), "--minutes", "0.25", "--markdown", str(md)], 300)
    row = md.read_text().splitlines()[-1]
    assert row.startswith("| 2 x 0.25 min |")
