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
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.analysis import clock
from probe.analysis.detectors import straggler_rank
from probe.analysis.detectors.base import INSUFFICIENT, Context, Finding
from probe.session.job import JobPlan, NodePlan, SessionIdentity
from probe.session.launch import int_or_none

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PARALLEL_MIN_BYTES = 32 << 20  # records in all before the sessions are analysed in parallel
HOST_POINTS = 600  # per host series, at most (block means of the analysis grid)
PER_NODE = ("healthy", "insufficient-data", straggler_rank.ID)  # not merged per node
SCHEMA = "probe.diagnosis/1"

Progress = Callable[[str], None]


@dataclass
class RankResult:
    """One rank of one session: what the job's analysis needs of it."""

    pid: int
    rank: int
    local_rank: int | None
    step_index: IntArray  # each step row's index among the job's steps (-1: unknown)
    step_start: FloatArray  # seconds since the session's start
    step_end: FloatArray
    step_wait: FloatArray  # seconds blocked in collectives inside the step (nan: unknown)
    sync_index: IntArray  # the instants this rank shares with every other (clock.sync_times)
    sync_t: FloatArray
    row: dict[str, Any]  # straggler_rank.measure_ranks's row (wait share, main thread CPU)
    stacks: list[dict[str, Any]]  # main thread outside collectives, in the window
    run_queue_share: float | None


@dataclass
class HostSeries:
    """A host's CPU and memory over the run (seconds since the session's start)."""

    t: FloatArray
    busy_cores: FloatArray  # all of the host
    job_cores: FloatArray  # the recorded process tree
    job_rss: FloatArray  # bytes, the tree's processes summed
    mem_available: FloatArray
    cores: float
    memory_total: float | None


@dataclass
class SessionResult:
    """One session of the job, analysed on its own (in a worker process)."""

    path: Path
    name: str
    host: str
    start_unix_ns: int | None
    start_ns: int  # the session's monotonic start (its time zero)
    duration_s: float
    window: tuple[float, float]  # its analysed window, seconds since its start
    category: str
    headline: str
    findings: dict[str, Finding]
    run: dict[str, Any]
    warnings: list[str]
    losses: list[dict[str, Any]]
    partial: bool
    ranks: list[RankResult]
    hosts: HostSeries
    load: dict[str, Any]  # in the window: outside_cores, cores, run_queue_share
    node: str = ""  # the node's label in the job ("node 1", "host b")
    clock: clock.ClockFit | None = None


@dataclass
class JobIssue:
    """A verdict of the job, and where it holds."""

    finding: Finding
    nodes: list[str]  # the nodes where it holds (all of them for a job-wide verdict)
    hosts: list[str]
    of: int  # the job's nodes
    impacts: dict[str, float] = field(default_factory=dict)  # per node, for per-node verdicts
    across: bool = False  # judged across all ranks (straggler-rank), not per node

    @property
    def id(self) -> str:
        return self.finding.id

    @property
    def where(self) -> str:
        return where_text(self.nodes, self.of)


@dataclass
class JobDiagnosis:
    plan: JobPlan
    sessions: list[SessionResult]  # ordered by node, then name
    category: str
    issues: list[JobIssue]  # ordered by impact, largest first
    findings: dict[str, JobIssue]  # every verdict that was an issue somewhere, by id
    straggler: Finding  # straggler-rank across the job, whatever its outcome
    headline: str
    window: tuple[float, float]  # on the job's axis (seconds since the reference's start)
    reference: str  # the session whose clock is the axis
    warnings: list[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return any(s.partial for s in self.sessions) or bool(self.plan.missing_nodes)

    @property
    def top(self) -> JobIssue | None:
        return self.issues[0] if self.issues else None

    @property
    def nodes(self) -> list[str]:
        return list(dict.fromkeys(s.node for s in self.sessions))

    @property
    def clock_method(self) -> str:
        methods = {
            s.clock.method
            for s in self.sessions
            if s.clock is not None and s.clock.method != clock.REFERENCE
        }
        if not methods or methods == {clock.STEPS}:
            return clock.STEPS
        return clock.WALL_CLOCK if methods == {clock.WALL_CLOCK} else "mixed"

    @property
    def residual_skew_s(self) -> float | None:
        """The worst session's residual (90th percentile) after alignment on the steps."""
        values = [
            s.clock.residual_p90_s
            for s in self.sessions
            if s.clock and s.clock.method == clock.STEPS and s.clock.residual_p90_s is not None
        ]
        return max(values) if values else None


def where_text(nodes: Sequence[str], of: int) -> str:
    """``on node 1 only``, ``on every node``, ``on node 0 and node 2 (of 4)``."""
    if of <= 1:
        return ""
    if len(nodes) >= of:
        return "on every node"
    if len(nodes) == 1:
        return f"on {nodes[0]} only"
    return f"on {', '.join(nodes[:-1])} and {nodes[-1]} (of {of})"


# -- one session (in a worker process) ------------------------------------------------------------


def analyse_session(path: Path) -> SessionResult:
    """Load and diagnose one session, and keep what the job needs of it (see the module)."""
    from probe.analysis.diagnosis import diagnose
    from probe.session.reader import Session

    session = Session(path)
    diagnosis = diagnose(session)
    tl = diagnosis.timeline
    ctx = Context(tl, diagnosis.segmentation)
    ranks = _global_ranks(session, ctx.training_pids)
    rows = {
        r["pid"]: r
        for r in straggler_rank.measure_ranks(ctx, {pid: r for pid, (r, _) in ranks.items()})
    }
    st = tl.stacks
    outside_collectives = ~straggler_rank.in_collective(st)
    results = []
    for pid, (rank, local_rank) in sorted(ranks.items(), key=lambda kv: kv[1][0]):
        steps = tl.steps.select(tl.steps.pid == pid)
        mask = ctx.main_samples(pid)
        table = session.table("step")
        mine = table.where(table["pid"] == pid)
        sync_index, sync_ns = clock.sync_times(
            mine["source"], mine["index"], mine["t"], mine["opt_dur"]
        )
        sync_t = (sync_ns.astype(np.float64) - tl.t0_ns) / 1e9
        results.append(
            RankResult(
                pid=pid,
                rank=rank,
                local_rank=local_rank,
                step_index=_step_index(sync_index, sync_t, steps.start, steps.end),
                step_start=steps.start,
                step_end=steps.end,
                step_wait=_wait_per_step(ctx, pid, steps.start, steps.end),
                sync_index=sync_index,
                sync_t=sync_t,
                row=rows[pid],
                stacks=st.top(mask & outside_collectives, 5),
                run_queue_share=_run_queue_share(ctx, [pid]),
            )
        )
    t0 = session.start_ns
    start = session.meta.get("start") or {}
    return SessionResult(
        path=Path(path),
        name=str(session.meta.get("name") or Path(path).name),
        host=str((session.meta.get("host") or {}).get("hostname") or "?"),
        start_unix_ns=int_or_none(start.get("unix_ns")),
        start_ns=t0,
        duration_s=tl.duration_s,
        # (a node that never reached its loop: its whole run, as its segmentation took it)
        window=diagnosis.window if diagnosis.window is not None else diagnosis.segmentation.window,
        category=diagnosis.category,
        headline=diagnosis.headline,
        findings=diagnosis.findings,
        run=diagnosis.run,
        warnings=list(diagnosis.warnings),
        losses=[loss.to_json(t0) for loss in diagnosis.losses],
        partial=diagnosis.partial,
        ranks=results,
        hosts=_host_series(ctx),
        load={
            "outside_cores": round(_outside_cores(ctx), 3),
            "cores": tl.effective_cores,
            "run_queue_share": _run_queue_share(ctx, [r.pid for r in results]),
        },
    )


def _global_ranks(session: Any, training: list[int]) -> dict[int, tuple[int, int | None]]:
    """pid -> (rank, local rank) of the training processes: from the launcher's environment
    (``RANK``, ``LOCAL_RANK``, or SLURM's), else torch.distributed's own rank."""
    out: dict[int, tuple[int, int | None]] = {}
    for e in session.events_of("launch"):
        pid = int(e.get("pid", -1))
        env = e.get("env") or {}
        if pid not in training or not isinstance(env, dict):
            continue
        rank = int_or_none(env.get("RANK", env.get("SLURM_PROCID")))
        local = int_or_none(env.get("LOCAL_RANK", env.get("SLURM_LOCALID")))
        if rank is not None:
            out[pid] = (rank, local)
    for e in session.events_of("distributed"):
        pid = int(e.get("pid", -1))
        if pid in training and pid not in out and int_or_none(e.get("rank")) is not None:
            out[pid] = (int(e["rank"]), None)
    return out


def _step_index(
    sync_index: IntArray, sync_t: FloatArray, starts: FloatArray, ends: FloatArray
) -> IntArray:
    """Each step's index among the job's steps: that of the shared instant it ends with (the
    last one in ``(start, end]``), -1 when it holds none."""
    if not len(sync_t) or not len(ends):
        return np.full(len(ends), -1, dtype=np.int64)
    pos = np.searchsorted(sync_t, ends + 1e-9, side="right") - 1
    ok = pos >= 0
    ok[ok] = sync_t[pos[ok]] > starts[ok] - 1e-9
    out: IntArray = np.where(ok, sync_index[np.clip(pos, 0, None)], -1)
    return out


def _wait_per_step(ctx: Context, pid: int, starts: FloatArray, ends: FloatArray) -> FloatArray:
    """Seconds each step spent blocked in collectives, from the main thread's samples (each
    weighs the interval it stands for, which can be longer than a short step: the estimate is
    capped at the step's length); nan where too few samples had their thread state."""
    st = ctx.tl.stacks
    mine = st.thread_mask(pid, ctx.main_tid(pid))
    t = st.t[mine]
    order = np.argsort(t, kind="stable")
    t = t[order]
    w = st.weight[mine][order]
    hit = straggler_rank.in_collective(st)[mine][order]
    known = (st.thread_state[mine][order] != 0).astype(np.float64)
    cum_hit = np.concatenate([[0.0], np.cumsum(w * hit)])
    cum_known = np.concatenate([[0.0], np.cumsum(w * known)])
    cum_all = np.concatenate([[0.0], np.cumsum(w)])
    a = np.searchsorted(t, starts, side="left")
    b = np.searchsorted(t, ends, side="left")
    wait = cum_hit[b] - cum_hit[a]
    seen = cum_all[b] - cum_all[a]
    known_w = cum_known[b] - cum_known[a]
    wait = np.minimum(wait, np.maximum(ends - starts, 0.0))
    out: FloatArray = np.where((seen > 0) & (known_w >= 0.5 * seen), wait, np.nan)
    return out


def _run_queue_share(ctx: Context, pids: list[int]) -> float | None:
    """The share of their time the main threads spent runnable, waiting for a CPU."""
    ran = waited = 0.0
    for pid in pids:
        groups = ctx.tl.threads.get(pid)
        if groups is None:
            continue
        ran += float(groups.main[ctx.bins].sum())
        waited += float(groups.main_wait[ctx.bins].sum())
    if ran + waited <= 0:
        return None
    return round(waited / (ran + waited), 3)


def _outside_cores(ctx: Context) -> float:
    """Cores the host kept busy outside the recorded job, on average in the window."""
    outside = ctx.tl.sys_busy - ctx.tl.total_cpu()
    return max(ctx.mean_in_window(outside), 0.0)


def _host_series(ctx: Context) -> HostSeries:
    tl = ctx.tl
    rss = np.zeros(tl.n_bins)
    for series in tl.rss.values():
        rss += np.nan_to_num(series, nan=0.0)
    block = max(1, int(np.ceil(tl.n_bins / HOST_POINTS)))

    def means(x: FloatArray) -> FloatArray:
        n = len(x) // block * block
        head = x[:n].reshape(-1, block)
        out = np.nanmean(head, axis=1) if n else np.zeros(0)
        if len(x) > n:
            out = np.append(out, np.nanmean(x[n:]))
        return np.asarray(out, dtype=np.float64)

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-nan block: no memory samples
        return HostSeries(
            t=means(tl.centers),
            busy_cores=means(tl.sys_busy),
            job_cores=means(tl.total_cpu()),
            job_rss=means(rss),
            mem_available=means(tl.mem_available),
            cores=tl.effective_cores,
            memory_total=tl.memory_total,
        )


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
