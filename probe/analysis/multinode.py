"""One diagnosis for a job whose ranks ran on several nodes, each recorded in its own session.

``diagnose_job(plan)`` takes the sessions of one job (``probe.session.job.plan_job``) and:

1. analyses each session on its own, in parallel worker processes (``analyse_session``): the
   usual diagnosis of that node, plus what the job's analysis needs from it, small enough to send
   back: per rank its steps (with their index), its collective wait per step and in the window,
   its main thread's stacks outside collectives; per host its CPU and memory over time and how
   busy it was outside the job;
2. puts every session on one time axis (``probe.analysis.clock``): the wall clock first, then
   corrected by the step boundaries all ranks share;
3. judges straggler-rank across all ranks (naming the rank and its host, and telling a whole
   slow node from one slow rank), and every other verdict per node, reported with where it
   holds ("input-bound on node 1 only");
4. orders what was found by impact, as for one session.

Pure apart from reading the sessions: nothing is written or printed here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis import clock
from probe.analysis.detectors import straggler_rank
from probe.analysis.detectors.base import INSUFFICIENT, Finding
from probe.analysis.job_model import (
    FloatArray,
    HostSeries,
    IntArray,
    JobDiagnosis,
    JobIssue,
    RankResult,
    SessionResult,
    where_text,
)
from probe.analysis.job_session import analyse_session
from probe.session.job import JobPlan, NodePlan, SessionIdentity

PARALLEL_MIN_BYTES = 32 << 20  # records in all before the sessions are analysed in parallel
PER_NODE = ("healthy", "insufficient-data", straggler_rank.ID)  # not merged per node
SCHEMA = "probe.diagnosis/1"

Progress = Callable[[str], None]


# -- the job --------------------------------------------------------------------------------------


def analyse_sessions(
    paths: Sequence[Path], workers: int | None = None, progress: Progress | None = None
) -> list[SessionResult]:
    """``analyse_session`` for each path, in parallel processes when there are several sessions
    and cores (``workers``: how many at most; default: the usable cores, once the sessions hold
    at least ``PARALLEL_MIN_BYTES`` of records: a worker takes a second or two to start, about
    what analysing that much takes).

    The workers are fresh interpreters (``python -m probe.analysis.multinode PATH...``), each
    given its share of the sessions, that send back the pickled results in a file: a fork of a
    process that has already run the analysis can hang in the child (the OpenMP and BLAS thread
    pools of numpy, scipy and hmmlearn do not survive a fork), and multiprocessing's spawned
    workers re-import the calling program and leave a resource tracker process behind."""
    say = progress or (lambda stage: None)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = min(len(paths), workers if workers is not None else (cores or 1))
    if workers is None and _records_bytes(paths) < PARALLEL_MIN_BYTES:
        n = 1
    if n <= 1:
        out = []
        for i, path in enumerate(paths):
            say(f"analysing session {i + 1} of {len(paths)}")
            out.append(analyse_session(path))
        return out
    say(f"analysing {len(paths)} sessions, {n} at a time")
    return _in_workers(list(paths), n)


def _in_workers(paths: list[Path], n: int) -> list[SessionResult]:
    import pickle
    import subprocess
    import sys
    import tempfile

    import probe

    sizes = [_records_bytes([p]) for p in paths]
    shares: list[list[int]] = [[] for _ in range(n)]
    loads = [0] * n
    for i in sorted(range(len(paths)), key=lambda i: -sizes[i]):  # biggest first, least loaded
        k = loads.index(min(loads))
        shares[k].append(i)
        loads[k] += sizes[i] + 1
    env = {k: v for k, v in os.environ.items() if k != "PROBE_AGENT"}
    root = str(Path(probe.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    results: dict[int, SessionResult] = {}
    with tempfile.TemporaryDirectory(prefix="probe-job-") as tmp:
        procs = []
        for k, share in enumerate(shares):
            out = Path(tmp) / f"worker-{k}.pickle"
            args = [sys.executable, "-m", "probe.analysis.multinode", str(out)]
            args += [str(paths[i]) for i in share]
            procs.append((share, out, subprocess.Popen(args, env=env, stderr=subprocess.PIPE)))
        errors = [proc.communicate()[1] for _, _, proc in procs]  # every worker ends first
        failure: str | None = None
        for (share, out, proc), err in zip(procs, errors):
            if proc.returncode != 0 or not out.exists():
                failure = failure or err.decode(errors="replace").strip()[-2000:]
                continue
            with open(out, "rb") as f:
                kind, payload = pickle.load(f)
            if kind == "error":
                _raise(payload)
            for i, result in zip(share, payload):
                results[i] = result
        if failure is not None:
            from probe.errors import AnalysisError

            raise AnalysisError(f"a worker analysing the sessions failed:\n{failure}")
    return [results[i] for i in range(len(paths))]


def _raise(error: tuple[str, str, str | None]) -> None:
    """Raise in this process the probe error a worker met (a session it could not read)."""
    import probe.errors

    name, message, hint = error
    cls = getattr(probe.errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, probe.errors.ProbeError)):
        cls = probe.errors.AnalysisError
    raise cls(message, hint=hint)


def _worker_main(argv: list[str]) -> int:
    """``python -m probe.analysis.multinode OUT PATH...``: analyse the sessions, pickle the
    results (or the probe error met) into OUT."""
    import pickle

    from probe.errors import ProbeError

    out, paths = Path(argv[0]), [Path(p) for p in argv[1:]]
    try:
        payload: tuple[str, Any] = ("results", [analyse_session(p) for p in paths])
    except ProbeError as exc:
        payload = ("error", (type(exc).__name__, exc.message, exc.hint))
    with open(out, "wb") as f:
        pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
    return 0


def _records_bytes(paths: Sequence[Path]) -> int:
    total = 0
    for path in paths:
        try:
            total += sum(f.stat().st_size for f in Path(path).glob("*.rec"))
        except OSError:
            continue
    return total


def diagnose_job(
    plan: JobPlan, workers: int | None = None, progress: Progress | None = None
) -> JobDiagnosis:
    """One diagnosis for the job ``plan`` describes (see the module)."""
    say = progress or (lambda stage: None)
    idents = plan.sessions
    results = analyse_sessions([s.path for s in idents], workers, progress)
    for ident, result in zip(idents, results):
        result.node = node_label(_node_of(plan, ident))
    say("aligning the nodes' clocks")
    reference = _align(results)
    say("judging the job")
    of = len(plan.nodes)
    straggler = _straggler(results)
    issues: list[JobIssue] = []
    if straggler.is_issue:
        node = str(straggler.evidence["straggler_node"])
        issues.append(
            JobIssue(
                straggler,
                [node],
                [str(straggler.evidence["straggler_host"])],
                of,
                across=True,
            )
        )
    issues.extend(_per_node(results, of))
    issues.sort(key=lambda i: (-i.finding.impact, i.id))
    issues = _causes_first(issues)
    window = _job_window(results)
    for issue in issues:
        issue.finding.windows = [window]
    notes = list(plan.warnings)
    for result in results:
        if result.clock is not None and result.clock.method == clock.WALL_CLOCK:
            notes.append(
                f"{result.node} ({result.name}) is placed by its wall clock: {result.clock.reason}"
            )
    category, headline = _category(results, issues, straggler)
    return JobDiagnosis(
        plan=plan,
        sessions=results,
        category=category,
        issues=issues,
        findings={i.id: i for i in issues},
        straggler=straggler,
        headline=headline,
        window=window,
        reference=reference,
        warnings=notes,
    )


def node_label(node: NodePlan) -> str:
    return f"node {node.node_rank}" if node.node_rank is not None else f"host {node.host}"


def _node_of(plan: JobPlan, ident: SessionIdentity) -> NodePlan:
    return next(n for n in plan.nodes if ident in n.sessions)


def _align(results: list[SessionResult]) -> str:
    """Fit every session's clock to the reference's; returns the reference's name."""

    def instants(r: SessionResult) -> tuple[IntArray, FloatArray]:
        return clock.session_instants([(k.sync_index, k.sync_t) for k in r.ranks])

    with_steps = [r for r in results if any(len(k.sync_t) for k in r.ranks)]
    ranked = sorted(with_steps or results, key=lambda r: min((k.rank for k in r.ranks), default=0))
    ref = ranked[0]
    ref_index, ref_t = instants(ref)
    durations = [k.step_end - k.step_start for k in ref.ranks if len(k.step_end)]
    step_s = float(np.median(np.concatenate(durations))) if durations else None
    ref_wall = ref.start_unix_ns
    for r in results:
        if r is ref:
            r.clock = clock.ClockFit(clock.REFERENCE, 0.0, matched=len(ref_index))
            continue
        if ref_wall is None or r.start_unix_ns is None:
            prior = 0.0
        else:
            prior = (r.start_unix_ns - ref_wall) / 1e9
        index, local = instants(r)
        r.clock = clock.fit(ref_index, ref_t, index, local, prior, step_s)
    return ref.name


def _straggler(results: list[SessionResult]) -> Finding:
    rows: list[dict[str, Any]] = []
    stacks: dict[int, list[dict[str, Any]]] = {}
    loads: dict[str, dict[str, Any]] = {}
    for r in results:
        loads.setdefault(r.node, dict(r.load, host=r.host))
        for k in r.ranks:
            rows.append({**k.row, "rank": k.rank, "node": r.node, "host": r.host})
            stacks[k.rank] = k.stacks
    rows.sort(key=lambda row: row["rank"])
    if len(rows) < 2:
        return Finding(
            id=straggler_rank.ID,
            status=INSUFFICIENT,
            reason=f"steps were seen from {len(rows)} rank(s) only",
        )
    return straggler_rank.across_nodes(rows, loads, stacks)


def _per_node(results: list[SessionResult], of: int) -> list[JobIssue]:
    """Every other verdict, judged on each node: one issue per verdict, with where it holds;
    its figures are those of the node where it costs the most."""
    by_id: dict[str, list[tuple[SessionResult, Finding]]] = {}
    for r in results:
        for vid, f in r.findings.items():
            if f.is_issue and vid not in PER_NODE:
                by_id.setdefault(vid, []).append((r, f))
    out = []
    for hits in by_id.values():
        worst_result, worst = max(hits, key=lambda h: h[1].impact)
        nodes = list(dict.fromkeys(r.node for r, _ in sorted(hits, key=lambda h: h[0].node)))
        hosts = list(dict.fromkeys(r.host for r, _ in sorted(hits, key=lambda h: h[0].node)))
        finding = Finding(**{**worst.__dict__})
        where = where_text(nodes, of)
        if where:
            finding.title = f"{worst.title} ({where})"
            figures = f"; the figures are {worst_result.node}'s" if len(nodes) > 1 else ""
            finding.summary = (
                f"{where[0].upper()}{where[1:]} (host {', '.join(hosts)}){figures}. {worst.summary}"
            )
        impacts: dict[str, float] = {}
        for r, f in hits:
            impacts[r.node] = max(impacts.get(r.node, 0.0), float(f.impact))
        out.append(JobIssue(finding, nodes, hosts, of, impacts))
    return out


def _causes_first(issues: list[JobIssue]) -> list[JobIssue]:
    """A verdict that holds on the straggler's node and not on every node is what makes that
    node late (its input pipeline, its GC, its I/O...): it goes first, the straggler after it,
    whose summary names it."""
    straggler = next((i for i in issues if i.across and i.finding.is_issue), None)
    if straggler is None:
        return issues
    node = straggler.nodes[0]
    causes = [i for i in issues if not i.across and node in i.nodes and len(i.nodes) < i.of]
    if not causes:
        return issues
    names = ", ".join(i.id for i in causes)
    straggler.finding.summary += (
        f" On {node}, probe also finds {names}, which probably makes it late: fix that first."
    )
    rest = [i for i in issues if i is not causes[0]]
    rest.insert(rest.index(straggler), causes[0])
    return rest


def _job_window(results: list[SessionResult]) -> tuple[float, float]:
    """The nodes' analysed windows on the job's axis: where they all overlap, else their span."""
    spans = []
    for r in results:
        if r.clock is None:
            continue
        a, b = (float(x) for x in r.clock.aligned(np.array(r.window)))
        spans.append((a, b))
    if not spans:
        return (0.0, 0.0)
    lo, hi = max(a for a, _ in spans), min(b for _, b in spans)
    if hi > lo:
        return (lo, hi)
    return (min(a for a, _ in spans), max(b for _, b in spans))


def _category(
    results: list[SessionResult], issues: list[JobIssue], straggler: Finding
) -> tuple[str, str]:
    if issues:
        return issues[0].id, issues[0].finding.title
    unjudged = [r for r in results if r.category == "insufficient-data"]
    if unjudged:
        first = unjudged[0]
        return (
            "insufficient-data",
            f"{first.node}: {first.headline}"
            + (f" (and {len(unjudged) - 1} more node(s))" if len(unjudged) > 1 else ""),
        )
    steps = sum(len(k.step_end) for r in results for k in r.ranks)
    return (
        "healthy",
        f"No issue found on any of the {len(results)} sessions' nodes ({steps} rank-steps); "
        + (straggler.reason or "the ranks kept pace with each other")
        + ".",
    )


# -- the probe.diagnosis/1 document of a job ------------------------------------------------------


def to_json(d: JobDiagnosis) -> dict[str, Any]:
    """The job's ``probe.diagnosis/1`` document: the usual keys, judged across the job, plus
    ``job`` (docs/diagnosis-schema.md)."""
    from probe.analysis.diagnosis import _issue_json
    from probe.units import plain

    ref = next(s for s in d.sessions if s.name == d.reference)
    first_exit = next(
        (
            s.run
            for s in d.sessions
            if s.run.get("exit_code") not in (0, None) or s.run.get("signal")
        ),
        ref.run,
    )
    end = max(float(s.clock.aligned(s.duration_s)) if s.clock else s.duration_s for s in d.sessions)
    issues = []
    for issue in d.issues:
        doc = _issue_json(issue.finding)
        doc["where"] = {
            "nodes": issue.nodes,
            "hosts": issue.hosts,
            "of": issue.of,
            "across_ranks": issue.across,
            "impact_by_node": {k: round(v, 4) for k, v in issue.impacts.items()},
        }
        issues.append(doc)
    return {
        "schema": SCHEMA,
        "category": d.category,
        "issues": issues,
        "window": [round(d.window[0], 3), round(d.window[1], 3)],
        "run": {
            "command": ref.run.get("command"),
            "exit_code": first_exit.get("exit_code"),
            "signal": first_exit.get("signal"),
            "duration_s": round(
                end - min(s.clock.start_s if s.clock else 0.0 for s in d.sessions), 3
            ),
            "steps": max((len(k.step_end) for s in d.sessions for k in s.ranks), default=0),
            "processes": sum(int(s.run.get("processes") or 0) for s in d.sessions),
        },
        "partial": d.partial,
        "losses": [dict(loss, session=s.name) for s in d.sessions for loss in s.losses],
        "job": _job_json(d),
        "straggler": plain(
            {"status": d.straggler.status, "reason": d.straggler.reason, **d.straggler.evidence}
        ),
    }


def _job_json(d: JobDiagnosis) -> dict[str, Any]:
    plan = d.plan
    nodes = []
    for node in plan.nodes:
        label = node_label(node)
        mine = [s for s in d.sessions if s.node == label]
        nodes.append(
            {
                "node": label,
                "node_rank": node.node_rank,
                "host": node.host,
                "ranks": sorted(k.rank for s in mine for k in s.ranks),
                "sessions": [
                    {
                        "name": s.name,
                        "path": str(s.path),
                        "category": s.category,
                        "window": [round(s.window[0], 3), round(s.window[1], 3)],
                        "clock": s.clock.to_json() if s.clock else None,
                        "load": s.load,
                    }
                    for s in mine
                ],
            }
        )
    return {
        "id": plan.job_id,
        "id_source": plan.id_source,
        "description": plan.description,
        "nnodes": plan.nnodes,
        "world_size": plan.world_size,
        "missing": {"nodes": plan.missing_nodes, "ranks": plan.missing_ranks},
        "reference": d.reference,
        "clock": {
            "method": d.clock_method,
            "residual_skew_s": (
                round(d.residual_skew_s, 6) if d.residual_skew_s is not None else None
            ),
        },
        "nodes": nodes,
        "warnings": d.warnings,
    }


__all__ = [
    "HostSeries",
    "JobDiagnosis",
    "JobIssue",
    "RankResult",
    "SessionResult",
    "analyse_session",
    "analyse_sessions",
    "diagnose_job",
    "node_label",
    "to_json",
    "where_text",
]


if __name__ == "__main__":  # a worker of analyse_sessions
    import sys

    # through the module's own name, so that what is pickled names probe.analysis.multinode
    from probe.analysis.multinode import _worker_main as worker

    sys.exit(worker(sys.argv[1:]))
