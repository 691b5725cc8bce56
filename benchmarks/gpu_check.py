"""The steps of benchmarks/gpu_check.sh that need Python: run a GPU scenario under probe and read
what it recorded, check that probe never creates a CUDA context, screenshot a report, and write
the results table.

    python benchmarks/gpu_check.py scenario a --work DIR [--tiny] [--seconds 20]
    python benchmarks/gpu_check.py steps-for --work DIR --seconds 6
    python benchmarks/gpu_check.py context --work DIR [--seconds 8]
    python benchmarks/gpu_check.py torch-info --work DIR
    python benchmarks/gpu_check.py screenshot --work DIR --png FILE
    python benchmarks/gpu_check.py table --work DIR --out DIR [--smoke]

Each step writes ``DIR/results/<step>.json``; ``table`` reads them all (and gpu_check.sh's own
``DIR/steps.tsv``: each step's exit status and seconds) and writes ``results.md`` and
``results.json``. Only the standard library is imported at the top: ``table`` runs even where
the project's environment failed to install. The scenario and context steps read sessions with
probe's own reader (probe never imports torch; ``torch-info`` does, in its own process).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "examples" / "scenarios"
CPU_ONLY = REPO / "benchmarks" / "workloads" / "torch_cpu_only.py"
# The GPU steps: (a)-(d) are scenarios, with their expected verdicts from catalog.py.
STEPS = {
    "a": "gpu_healthy.py",
    "b": "gpu_host_sync.py",
    "c": "gpu_input_bound.py",
    "d": "gpu_memory_growth.py",
}
TITLES = {
    "a": "(a) healthy CUDA loop",
    "b": "(b) .item() and .cpu() every step",
    "c": "(c) GPU starved by a slow DataLoader",
    "d": "(d) CUDA tensors kept alive",
    "e": "(e) overhead A/B of (a), bare vs probed",
    "context": "no CUDA context from probe",
}
OVERHEAD_BUDGET = 1.02


def _catalog() -> dict[str, dict[str, Any]]:
    sys.path.insert(0, str(SCENARIOS))
    try:
        import catalog  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(SCENARIOS))
    return {entry["file"]: entry for entry in catalog.SCENARIOS}


def _write(work: Path, step: str, result: dict[str, Any]) -> None:
    (work / "results").mkdir(parents=True, exist_ok=True)
    (work / "results" / f"{step}.json").write_text(json.dumps(result, indent=2) + "\n")


def _probe(python: str, work: Path, name: str, command: list[str], analyse: bool) -> list[str]:
    return [
        python,
        "-m",
        "probe",
        "doctor",
        "--no-open",
        "--force",
        "--dest",
        str(work / "sessions"),
        "--name",
        name,
        *([] if analyse else ["--collect-only"]),
        *(["--json", str(work / "diagnoses" / f"{name}.json")] if analyse else []),
        "--",
        *command,
    ]


def _run_logged(cmd: list[str], log: Path, timeout: float) -> tuple[int | None, float, str]:
    """Run ``cmd``, its output to ``log``; (exit status or None on timeout, seconds, stdout).

    At the time limit the command gets SIGINT first (probe then ends the job and still writes
    what it recorded), and SIGKILL only if it is still there 20 s later."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PROBE_NO_OPEN="1", PYTHONUNBUFFERED="1")
    env.pop("PROBE_AGENT", None)
    limit = float(os.environ.get("GPU_CHECK_STEP_LIMIT", "0")) - 25  # gpu_check.sh's own limit
    timeout = min(timeout, limit) if limit > 0 else timeout
    start = time.perf_counter()
    # from the log's folder, so that `python -m probe` is the installed probe, not the source's
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=log.parent
    )
    code: int | None = None
    try:
        stdout, stderr = proc.communicate(timeout=max(timeout, 1.0))
        code = proc.returncode
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        stderr += f"\n[gpu_check: stopped after {timeout:.0f} s]"
    seconds = time.perf_counter() - start
    log.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
    return code, seconds, stdout


def _loop_line(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith('{"loop_s"'):
            return dict(json.loads(line))
    return None


def session_facts(path: Path) -> dict[str, Any]:
    """What a session recorded from the GPU: NVML utilisation and per-process memory, the
    agent's CUDA memory and host syncs, and which of the tree's processes held a CUDA context."""
    from probe.session.reader import Session

    s = Session(path)
    tree = {int(p) for p in s.table("proc")["pid"]}
    gpu = s.table("gpu")
    util = gpu["util"][gpu["util"] >= 0] if len(gpu) else []
    procs = s.table("gpu_proc")
    ours = [(int(p), int(m)) for p, m in zip(procs["pid"], procs["mem"]) if int(p) in tree]
    cuda = s.table("cuda")
    sync = s.table("sync")
    return {
        "nvml_samples": len(gpu),
        "nvml_util_mean": round(float(sum(util) / len(util)), 1) if len(util) else None,
        "nvml_gpu_memory_mb": round(max(m for _, m in ours) / 2**20) if ours else None,
        "processes_with_cuda_context": sorted({p for p, _ in ours}),
        "tree_processes": len(tree),
        "cuda_samples": len(cuda),
        "cuda_allocated_peak_mb": round(float(cuda["allocated"].max()) / 2**20)
        if len(cuda)
        else None,
        "host_syncs": len(sync),
        "gpus": s.meta.get("gpus"),
    }


def every_finding(path: Path) -> dict[str, Any]:
    """Every detector's outcome on the session (the diagnosis JSON lists the issues only): what
    a run on a GPU needs to say why a verdict was or was not given, without the GPU again."""
    from probe.analysis.diagnosis import diagnose
    from probe.session.reader import Session

    d = diagnose(Session(path))
    return {
        k: {
            "status": f.status,
            "impact": round(f.impact, 4),
            "why": f.reason or f.title,
            "evidence": json.loads(json.dumps(f.evidence, default=str)),
        }
        for k, f in d.findings.items()
    }


def report_shows(html: Path) -> dict[str, bool]:
    """Whether the report draws NVML's utilisation and per-process GPU memory."""
    text = html.read_text(errors="replace") if html.exists() else ""
    return {
        "report_gpu_utilisation": "GPU 0 utilisation" in text,
        "report_nvml_process_memory": "memory, NVML" in text,
        "report_cuda_memory": "CUDA allocated" in text,
    }


def scenario(args: argparse.Namespace) -> int:
    work: Path = args.work
    file = STEPS[args.step]
    entry = _catalog()[file]
    name = f"{args.step}-{Path(file).stem}"
    program = [args.python, str(SCENARIOS / file), "--seconds", str(args.seconds)]
    if args.tiny:
        program.append("--tiny")
    (work / "diagnoses").mkdir(parents=True, exist_ok=True)
    cmd = _probe(args.python, work, name, program, analyse=True)
    code, seconds, stdout = _run_logged(cmd, work / "logs" / f"{name}.log", args.timeout)
    result: dict[str, Any] = {
        "step": args.step,
        "title": TITLES[args.step],
        "command": " ".join(["probe doctor --", "python", f"examples/scenarios/{file}"]),
        "expected": entry["id"],
        "expected_also": entry.get("also", []),
        "exit_status": code,
        "seconds": round(seconds, 1),
        "loop": _loop_line(stdout),
        "notes": [],
    }
    diagnosis_path = work / "diagnoses" / f"{name}.json"
    if diagnosis_path.exists():
        d = json.loads(diagnosis_path.read_text())
        result["category"] = d["category"]
        result["issues"] = [
            {"id": i["id"], "severity": i["severity"], "impact": round(i["impact"], 3)}
            for i in d["issues"]
        ]
    session = work / "sessions" / name
    if session.is_dir():
        try:
            result.update(session_facts(session))
            result["findings"] = every_finding(session)
        except Exception as exc:  # the table says what broke; the next steps still run
            result["notes"].append(f"session unreadable: {type(exc).__name__}: {exc}")
    result.update(report_shows(work / "sessions" / f"{name}.html"))
    result["status"] = _judge_scenario(result, args.tiny)
    _write(work, args.step, result)
    print(f"{name}: {result['status']} ({result.get('category')})")
    return 0


def _judge_scenario(r: dict[str, Any], smoke: bool) -> str:
    if r["exit_status"] is None:
        return "FAIL: timed out"
    if r["exit_status"] != 0 or "category" not in r:
        return f"FAIL: exit status {r['exit_status']}"
    if smoke:
        return "ran (CPU smoke run: verdict not judged)"
    problems = []
    if r["category"] != r["expected"]:
        problems.append(f"verdict {r['category']}, expected {r['expected']}")
    found = {i["id"] for i in r.get("issues", [])}
    problems += [f"{also} not among the issues" for also in r["expected_also"] if also not in found]
    if not r.get("nvml_samples"):
        problems.append("no NVML samples")
    if r.get("nvml_gpu_memory_mb") is None:
        problems.append("no NVML per-process memory for the job")
    if not r.get("cuda_samples"):
        problems.append("no CUDA memory samples from the agent")
    if len(r.get("processes_with_cuda_context", [])) > 1:
        problems.append("more than one process of the tree held a CUDA context")
    if not (r.get("report_gpu_utilisation") and r.get("report_nvml_process_memory")):
        problems.append("the report lacks GPU utilisation or NVML process memory")
    return "FAIL: " + "; ".join(problems) if problems else "pass"


def steps_for(args: argparse.Namespace) -> int:
    """How many steps of (a) take about ``--seconds`` on this device (from its probed run)."""
    result = args.work / "results" / "a.json"
    loop = json.loads(result.read_text()).get("loop") if result.exists() else None
    if not loop or not loop.get("steps"):
        print(args.default)
        return 0
    rate = loop["steps"] / max(loop["loop_s"], 1e-9)
    print(max(10, round(rate * args.seconds)))
    return 0


def _nvidia_smi_pids(stop: threading.Event, seen: set[int], errors: list[str]) -> None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        errors.append("nvidia-smi not found")
        return
    while not stop.is_set():
        try:
            out = subprocess.run(
                [smi, "--query-compute-apps=pid", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            seen.update(int(x) for x in out.stdout.split() if x.strip().isdigit())
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(str(exc))
            return
        stop.wait(0.5)


def context(args: argparse.Namespace) -> int:
    """A torch program that never uses CUDA, run under probe: nothing may hold a context."""
    work: Path = args.work
    name = "context-torch-cpu-only"
    program = [args.python, str(CPU_ONLY), "--seconds", str(args.seconds)]
    cmd = _probe(args.python, work, name, program, analyse=False)
    stop, seen, errors = threading.Event(), set[int](), list[str]()
    watcher = threading.Thread(target=_nvidia_smi_pids, args=(stop, seen, errors))
    watcher.start()
    try:
        code, seconds, stdout = _run_logged(cmd, work / "logs" / f"{name}.log", args.timeout)
    finally:
        stop.set()
        watcher.join()
    last = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith("{")), "{}")
    try:
        program_said = dict(json.loads(last))
    except ValueError:
        program_said = {}
    result: dict[str, Any] = {
        "step": "context",
        "title": TITLES["context"],
        "exit_status": code,
        "seconds": round(seconds, 1),
        "cuda_initialized_in_program": program_said.get("cuda_initialized"),
        "nvidia_smi": "; ".join(errors) or "polled every 0.5 s",
        "notes": [],
    }
    session = work / "sessions" / name
    facts = session_facts(session) if session.is_dir() else {}
    tree: set[int] = set()
    if session.is_dir():
        from probe.session.reader import Session

        tree = {int(p) for p in Session(session).table("proc")["pid"]}
    result.update(
        nvml_samples=facts.get("nvml_samples"),
        tree_processes=len(tree),
        tree_pids_with_context_nvml=facts.get("processes_with_cuda_context"),
        tree_pids_with_context_nvidia_smi=sorted(seen & tree),
        compute_apps_seen=len(seen),
    )
    problems = []
    if code != 0:
        problems.append(f"exit status {code}")
    if program_said.get("cuda_initialized") is not False:
        problems.append(f"torch.cuda.is_initialized() was {program_said.get('cuda_initialized')}")
    if seen & tree:
        problems.append(f"nvidia-smi listed the tree's pids {sorted(seen & tree)}")
    if facts.get("processes_with_cuda_context"):
        problems.append(f"NVML listed the tree's pids {facts['processes_with_cuda_context']}")
    if problems:
        result["status"] = "FAIL: " + "; ".join(problems)
    elif not facts.get("nvml_samples") or errors:
        result["status"] = "partial: CUDA never initialised; no NVML/nvidia-smi to confirm"
    else:
        result["status"] = "pass"
    _write(work, "context", result)
    print(f"context: {result['status']}")
    return 0


def torch_info(args: argparse.Namespace) -> int:
    """The torch this environment holds (its own process: a CUDA context here is fine)."""
    info: dict[str, Any] = {"python": sys.version.split()[0]}
    try:
        import torch

        info.update(version=torch.__version__, cuda_build=torch.version.cuda)
        info["cuda_available"] = bool(torch.cuda.is_available())
        if info["cuda_available"]:
            info["device"] = torch.cuda.get_device_name(0)
            info["devices"] = torch.cuda.device_count()
    except Exception as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
    pinned = next(
        (
            line.split("==", 1)[1].strip()
            for line in (REPO / "constraints.txt").read_text().splitlines()
            if line.startswith("torch==")
        ),
        None,
    )
    info["pinned"] = pinned
    info["cpu_only"] = not info.get("cuda_build")
    _write(args.work, "torch", info)
    print(json.dumps(info))
    if info.get("cuda_available"):
        return 0
    return 3 if info.get("cuda_build") else 1  # 3: a CUDA build that sees no GPU


def screenshot(args: argparse.Namespace) -> int:
    """A PNG of one report through headless Chromium, where a Chromium is installed."""
    reports = sorted((args.work / "sessions").glob("*.html"))
    chosen = next((r for r in reports if r.name.startswith("b-")), reports[0] if reports else None)
    browser = next(
        (
            shutil.which(b)
            for b in ("chromium", "chromium-browser", "google-chrome", "chrome")
            if shutil.which(b)
        ),
        None,
    )
    result: dict[str, Any] = {"step": "screenshot", "report": chosen.name if chosen else None}
    if chosen is None or browser is None:
        result["status"] = "skipped: " + ("no report" if chosen is None else "no Chromium here")
        _write(args.work, "screenshot", result)
        print(result["status"])
        return 0
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1400,2600",
        "--virtual-time-budget=8000",
        f"--screenshot={args.png}",
        chosen.resolve().as_uri(),
    ]
    code, seconds, _ = _run_logged(cmd, args.work / "logs" / "screenshot.log", args.timeout)
    ok = code == 0 and args.png.exists() and args.png.stat().st_size > 10_000
    result.update(status="pass" if ok else f"FAIL: exit status {code}", seconds=round(seconds, 1))
    _write(args.work, "screenshot", result)
    print(result["status"])
    return 0


# -- the table ------------------------------------------------------------------------------------


def _load(work: Path, step: str) -> dict[str, Any] | None:
    path = work / "results" / f"{step}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _steps_tsv(work: Path) -> list[tuple[str, str, str]]:
    path = work / "steps.tsv"
    if not path.exists():
        return []
    return [tuple(line.split("\t")[:3]) for line in path.read_text().splitlines() if line]  # type: ignore[misc]


def _issues(r: dict[str, Any]) -> str:
    return ", ".join(f"{i['id']} {i['impact']:.2f}" for i in r.get("issues", [])) or "none"


def _left_out(step: str) -> bool:
    """Whether gpu_check.sh was told to run a subset of the steps without this one."""
    only = os.environ.get("GPU_CHECK_ONLY", "").split()
    return bool(only) and step not in only


def _steady_util(r: dict[str, Any]) -> Any:
    """gpu-underutilized's mean utilisation over the analysed window, where it judged one."""
    return r.get("findings", {}).get("gpu-underutilized", {}).get("evidence", {}).get("utilization")


def _cell(value: Any, unit: str = "") -> str:
    return "n/a" if value is None else f"{value}{unit}"


def table(args: argparse.Namespace) -> int:
    work: Path = args.work
    out: Path = args.out
    torch = _load(work, "torch") or {}
    rows = [
        "| step | expected | verdict (issues: impact) | GPU busy (NVML: steady state; run) | "
        "job's GPU memory (NVML) | CUDA allocated peak | host syncs | wall | result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    results: dict[str, Any] = {"mode": "cpu-smoke" if args.smoke else "gpu", "torch": torch}
    for step in STEPS:
        r = _load(work, step)
        results[step] = r
        if r is None:
            why = "skipped (GPU_CHECK_ONLY)" if _left_out(step) else "FAIL: no result"
            rows.append(f"| {TITLES[step]} | | not run | | | | | | {why} |")
            continue
        expected = r["expected"] + "".join(f" + {a}" for a in r.get("expected_also", []))
        rows.append(
            f"| {r['title']} | {expected} | {r.get('category', 'none')} ({_issues(r)}) | "
            f"{_cell(_steady_util(r), ' %')}; {_cell(r.get('nvml_util_mean'), ' %')} | "
            f"{_cell(r.get('nvml_gpu_memory_mb'), ' MB')} "
            f"| {_cell(r.get('cuda_allocated_peak_mb'), ' MB')} | {_cell(r.get('host_syncs'))} | "
            f"{r['seconds']} s | {r['status']} |"
        )
    overhead_path = work / "overhead.json"
    overhead = json.loads(overhead_path.read_text()) if overhead_path.exists() else None
    results["overhead"] = overhead
    if overhead:
        ratio = overhead["loop_ratio"]
        if args.smoke:
            status = "ran (CPU smoke run: ratio not judged)"
        else:
            status = (
                "pass" if ratio["median"] <= OVERHEAD_BUDGET else f"FAIL: above {OVERHEAD_BUDGET}"
            )
        rows.append(
            f"| {TITLES['e']} | loop ratio <= {OVERHEAD_BUDGET} | median {ratio['median']:.3f} "
            f"(min-max {ratio['min']:.3f}-{ratio['max']:.3f}, {overhead['rounds']} mirrored rounds,"
            f" bare loop {overhead['bare_loop_s']:.2f} s) | | | | | | {status} |"
        )
    else:
        rows.append(
            f"| {TITLES['e']} | loop ratio <= {OVERHEAD_BUDGET} | not run | | | | | | "
            + ("skipped (GPU_CHECK_ONLY) |" if _left_out("overhead") else "FAIL |")
        )
    ctx = _load(work, "context")
    results["context"] = ctx
    if ctx:
        rows.append(
            f"| {TITLES['context']} (torch on the CPU only, 2 workers) | no process of the tree "
            f"holds a context | cuda initialised: {ctx['cuda_initialized_in_program']}; NVML: "
            f"{ctx['tree_pids_with_context_nvml']}; nvidia-smi: "
            f"{ctx['tree_pids_with_context_nvidia_smi']} ({ctx['nvidia_smi']}) | | | | | "
            f"{ctx['seconds']} s | {ctx['status']} |"
        )
    else:
        why = "skipped (GPU_CHECK_ONLY)" if _left_out("context") else "FAIL"
        rows.append(f"| {TITLES['context']} | | not run | | | | | | {why} |")
    shot = _load(work, "screenshot")
    results["screenshot"] = shot
    lines = [
        f"# GPU check ({'CPU smoke run, no GPU' if args.smoke else 'on a GPU'})",
        "",
        f"- torch: {_cell(torch.get('version'))} (CUDA build {_cell(torch.get('cuda_build'))}, "
        f"pinned in constraints.txt: {_cell(torch.get('pinned'))}); CUDA available: "
        f"{_cell(torch.get('cuda_available'))}; device: {_cell(torch.get('device'))}",
        f"- screenshot: {shot['status'] if shot else 'not run'}",
        "",
        *rows,
        "",
        "Steps (gpu_check.sh: name, exit status, seconds):",
        "",
        *(f"- {name}: {code}, {sec} s" for name, code, sec in _steps_tsv(work)),
        "",
    ]
    if torch.get("cpu_only") and not args.smoke:
        lines.insert(
            2, "- **FAIL: the torch installed is a CPU-only build; no GPU step could run.**"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))
    failed = any("FAIL" in row.rsplit("|", 2)[-2] for row in rows[2:])
    return 1 if failed or (torch.get("cpu_only") and not args.smoke) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--work", type=Path, required=True)
        p.add_argument("--python", default=sys.executable)
        p.add_argument("--timeout", type=float, default=120.0)

    p = sub.add_parser("scenario")
    p.add_argument("step", choices=sorted(STEPS))
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--tiny", action="store_true")
    common(p)
    p = sub.add_parser("steps-for")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--default", type=int, default=200)
    common(p)
    p = sub.add_parser("context")
    p.add_argument("--seconds", type=float, default=8.0)
    common(p)
    p = sub.add_parser("torch-info")
    common(p)
    p = sub.add_parser("screenshot")
    p.add_argument("--png", type=Path, required=True)
    common(p)
    p = sub.add_parser("table")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--smoke", action="store_true")
    common(p)
    args = parser.parse_args(argv)
    handlers = {
        "scenario": scenario,
        "steps-for": steps_for,
        "context": context,
        "torch-info": torch_info,
        "screenshot": screenshot,
        "table": table,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
