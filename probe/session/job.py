"""Which sessions form one distributed job, and where each sits in it (node, host, ranks).

Each node of a multi-node job records its own session (``probe doctor --collect-only -- torchrun
--nnodes 2 --node_rank K ...`` on every node, or ``srun probe doctor ...``). ``probe report DIR
[DIR...]`` first reads who each session is from its meta.json alone (no records), then groups
them:

- A job id: SLURM's job (and step) id when SLURM launched it; else torchrun's rendezvous id
  (``--rdzv-id``, which the ranks get as ``TORCHELASTIC_RUN_ID``) unless it is torchrun's
  default ``none``; else the command (with the node's own rank taken out of it) and the
  rendezvous endpoint. Sessions sharing one are of one job when their runs overlap in time (a
  rendezvous id is often reused from run to run; a SLURM job id is not, so it needs no overlap).
- The node: the rank of the node the launcher gave (``GROUP_RANK``, ``SLURM_NODEID``,
  ``--node_rank``), else the host.
- The ranks: ``RANK`` (``SLURM_PROCID`` for tasks SLURM started itself), the world size
  (``WORLD_SIZE``, ``SLURM_NTASKS``) and the number of nodes (``GROUP_WORLD_SIZE``,
  ``SLURM_NNODES``, ``--nnodes``), to tell which node or rank is missing.

numpy-free, like the rest of ``probe.session`` outside the reader.
"""

from __future__ import annotations

import datetime as _dt
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import JobError, NotASession, SessionNotFound
from probe.session.launch import int_or_none, max_nodes
from probe.session.meta import read_meta

# Runs sharing an id that start within this long after the group's last end are one job (wall
# clocks of different hosts differ; nodes start at different moments and wait at the rendezvous).
OVERLAP_SLACK_S = 120.0
_TORCHRUN_NODE_OPTIONS = ("--node_rank", "--node-rank")


@dataclass(frozen=True)
class SessionIdentity:
    """What one session says about the job it belongs to (from its meta.json)."""

    path: Path
    name: str
    host: str
    boot_id: str | None
    job_key: str  # what sessions of one job share
    job_id: str | None  # the launcher's id for the job, when it gave one
    id_source: str  # slurm | torchrun rendezvous id | rendezvous endpoint | command
    node_rank: int | None
    nnodes: int | None
    world_size: int | None
    ranks: tuple[int, ...]
    start_unix_ns: int | None
    end_unix_ns: int | None
    command: str
    distributed: bool  # launched into a distributed job at all

    @property
    def node_key(self) -> str:
        if self.node_rank is not None:
            return f"node {self.node_rank}"
        return f"host {self.host}" + (f" ({self.boot_id[:8]})" if self.boot_id else "")

    @property
    def started(self) -> str:
        if self.start_unix_ns is None:
            return "at an unknown time"
        return _dt.datetime.fromtimestamp(self.start_unix_ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class NodePlan:
    """One node of the job: its sessions (usually one; one per task with ``srun probe ...``)."""

    key: str
    node_rank: int | None
    host: str
    sessions: list[SessionIdentity]

    @property
    def ranks(self) -> list[int]:
        return sorted({r for s in self.sessions for r in s.ranks})


@dataclass
class JobPlan:
    """The sessions of one job, grouped by node, and what is known to be missing."""

    job_key: str
    job_id: str | None
    id_source: str
    nodes: list[NodePlan]
    nnodes: int | None
    world_size: int | None
    missing_nodes: list[int] = field(default_factory=list)
    missing_ranks: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def sessions(self) -> list[SessionIdentity]:
        return [s for n in self.nodes for s in n.sessions]

    @property
    def name(self) -> str:
        """The job's outputs' name: ``job-<id>`` or ``job-<first session>``."""
        base = self.job_id or self.nodes[0].sessions[0].name
        return "job-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-.")[:80] or "unnamed")

    @property
    def description(self) -> str:
        """How the job is known: its id, or what ran where and when."""
        first = self.nodes[0].sessions[0]
        if self.job_id:
            return f"{self.id_source} {self.job_id.partition(':')[2]}"
        return f"{_short(first.command)} started {first.started}"


def identify(path: Path) -> SessionIdentity:
    """Who a session is in its job, from its meta.json; from the agents' records when meta.json
    does not say (probe itself was killed, or a session written before format 1.4)."""
    meta = read_meta(path)
    processes = _launch_processes(meta)
    if processes is None:
        processes = _launch_from_records(path)
    return identity_of(path, meta, processes)


def identity_of(
    path: Path, meta: Mapping[str, Any], processes: Sequence[Mapping[str, str]]
) -> SessionIdentity:
    """The identity of a session from its meta and the launch environments of its processes."""
    launch = _dict(meta.get("launch"))
    own_env = {str(k): str(v) for k, v in _dict(launch.get("env")).items()}
    args = _dict(launch.get("torchrun"))
    ranked = [dict(p) for p in processes if "RANK" in p or "SLURM_PROCID" in p]
    envs: list[Mapping[str, str]] = [*ranked, own_env]

    def first(*names: str) -> str | None:
        for env in envs:
            for name in names:
                value = env.get(name)
                if value not in (None, ""):
                    return str(value)
        return None

    host = _dict(meta.get("host"))
    hostname = str(host.get("hostname") or "?")
    slurm_job = first("SLURM_JOB_ID")
    run_id = first("TORCHELASTIC_RUN_ID", "PET_RDZV_ID") or _str(args.get("rdzv_id"))
    torchrun = bool(args) or any("TORCHELASTIC_RUN_ID" in e or "GROUP_RANK" in e for e in envs)
    endpoint = _endpoint(args, first)
    command = " ".join(shlex.quote(str(a)) for a in _without_node_rank(meta.get("argv") or []))
    if slurm_job:
        step = first("SLURM_STEP_ID")
        job_id: str | None = f"slurm:{slurm_job}" + (f".{step}" if step else "")
        source = "slurm"
        key = str(job_id)
    elif run_id and run_id != "none":
        job_id = f"torchrun:{run_id}"
        source = "torchrun rendezvous id"
        key = job_id
    elif endpoint:
        job_id = None
        source = "rendezvous endpoint"
        key = f"endpoint:{endpoint} {command}"
    else:
        job_id = None
        source = "command"
        key = f"command:{command}"
    # RANK from torchrun (whose own process, under srun, has only SLURM_PROCID: the node's task);
    # SLURM_PROCID when srun started the ranks itself
    rank_var = "RANK" if any("RANK" in env for env in ranked) else "SLURM_PROCID"
    ranks = {r for r in (int_or_none(env.get(rank_var)) for env in ranked) if r is not None}
    world = int_or_none(first("WORLD_SIZE"))
    if world is None and not torchrun:
        world = int_or_none(first("SLURM_NTASKS"))
    node_rank = int_or_none(first("GROUP_RANK", "SLURM_NODEID"))
    if node_rank is None:
        node_rank = int_or_none(args.get("node_rank")) if args else None
    if node_rank is None:
        node_rank = int_or_none(first("PET_NODE_RANK", "NODE_RANK"))
    nnodes = int_or_none(first("GROUP_WORLD_SIZE", "SLURM_NNODES", "SLURM_JOB_NUM_NODES"))
    if nnodes is None and args:
        nnodes = 1 if args.get("standalone") else max_nodes(args.get("nnodes"))
    if nnodes is None:
        nnodes = max_nodes(first("PET_NNODES"))
    start = _dict(meta.get("start"))
    end = _dict(meta.get("end"))
    return SessionIdentity(
        path=path,
        name=str(meta.get("name") or path.name),
        host=hostname,
        boot_id=_str(host.get("boot_id")),
        job_key=key,
        job_id=job_id,
        id_source=source,
        node_rank=node_rank,
        nnodes=nnodes,
        world_size=world,
        ranks=tuple(sorted(ranks)),
        start_unix_ns=int_or_none(start.get("unix_ns")),
        end_unix_ns=int_or_none(end.get("unix_ns")),
        command=command,
        distributed=bool(ranked or slurm_job or torchrun or world),
    )


def find_sessions(paths: Sequence[Path]) -> list[Path]:
    """The sessions named: each path a session, or a directory holding sessions (one level)."""
    out: list[Path] = []
    for path in paths:
        if not path.exists():
            raise SessionNotFound(f"no such session: {path}")
        if (path / "meta.json").is_file():
            out.append(path)
            continue
        if not path.is_dir():
            raise NotASession(f"{path} is a file, not a session directory")
        inside = sorted(p for p in path.iterdir() if p.is_dir() and (p / "meta.json").is_file())
        if not inside:
            raise NotASession(
                f"{path} is not a probe session and holds none",
                hint="Pass the session directories `probe doctor` printed, or the directory "
                "that holds them.",
            )
        out.extend(inside)
    unique: list[Path] = []
    seen: set[Path] = set()
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def group(identities: Iterable[SessionIdentity]) -> list[list[SessionIdentity]]:
    """Sessions split into jobs: one job id, and runs that overlap in time (see module doc)."""
    by_key: dict[str, list[SessionIdentity]] = {}
    for ident in identities:
        by_key.setdefault(ident.job_key, []).append(ident)
    jobs: list[list[SessionIdentity]] = []
    for key, members in by_key.items():
        if key.startswith("slurm:"):
            jobs.append(members)
            continue
        members.sort(key=lambda s: s.start_unix_ns or 0)
        current: list[SessionIdentity] = []
        current_end = 0
        for ident in members:
            start = ident.start_unix_ns or 0
            end = ident.end_unix_ns or start
            if current and start > current_end + OVERLAP_SLACK_S * 1e9:
                jobs.append(current)
                current = []
            if not current:
                current_end = end
            current.append(ident)
            current_end = max(current_end, end)
        if current:
            jobs.append(current)
    jobs.sort(key=lambda j: min(s.start_unix_ns or 0 for s in j))
    return jobs


def plan_job(paths: Sequence[Path]) -> JobPlan:
    """The one job that ``paths`` (sessions, or directories holding them) record.

    Raises ``JobError`` when they record several jobs (saying which sessions belong to which)
    or when two sessions claim one rank; a node or rank that the launcher announced but no
    session holds is a warning, and the job is analysed without it."""
    sessions = find_sessions(paths)
    identities = [identify(p) for p in sessions]
    jobs = group(identities)
    if len(jobs) > 1:
        lines = [
            f"  {i + 1}. {_job_text(job)}: " + ", ".join(str(s.path) for s in job)
            for i, job in enumerate(jobs)
        ]
        raise JobError(
            f"these {len(identities)} sessions belong to {len(jobs)} different jobs:\n"
            + "\n".join(lines),
            hint="Pass the sessions of one job only (all of its nodes), e.g. "
            f"`probe report {' '.join(shlex.quote(str(s.path)) for s in jobs[0])}`.",
        )
    return _plan(jobs[0])


def _plan(members: list[SessionIdentity]) -> JobPlan:
    nodes: dict[str, NodePlan] = {}
    for ident in sorted(members, key=lambda s: (s.node_rank is None, s.node_rank or 0, s.host)):
        node = nodes.get(ident.node_key)
        if node is None:
            node = NodePlan(ident.node_key, ident.node_rank, ident.host, [])
            nodes[ident.node_key] = node
        elif node.host != ident.host or _boot(node) != ident.boot_id:
            other = node.sessions[0]
            raise JobError(
                f"{ident.node_key} of one job was recorded on two machines: {other.path} "
                f"({other.host}) and {ident.path} ({ident.host})",
                hint="These are sessions of different runs that share a job id; pass the "
                "sessions of one run only.",
            )
        node.sessions.append(ident)
    owner: dict[int, SessionIdentity] = {}
    for ident in members:
        for rank in ident.ranks:
            if rank in owner:
                raise JobError(
                    f"rank {rank} appears in two sessions, {owner[rank].path} and {ident.path}: "
                    "they are not the same run",
                    hint="Pass the sessions of one run of the job only.",
                )
            owner[rank] = ident
    first = members[0]
    nnodes = max((s.nnodes for s in members if s.nnodes is not None), default=None)
    world = max((s.world_size for s in members if s.world_size is not None), default=None)
    plan = JobPlan(
        job_key=first.job_key,
        job_id=first.job_id,
        id_source=first.id_source,
        nodes=list(nodes.values()),
        nnodes=nnodes,
        world_size=world,
    )
    seen_nodes = {n.node_rank for n in plan.nodes if n.node_rank is not None}
    if nnodes is not None and len(seen_nodes) == len(plan.nodes):
        plan.missing_nodes = [k for k in range(nnodes) if k not in seen_nodes]
    if world is not None and owner:
        plan.missing_ranks = [r for r in range(world) if r not in owner]
    if plan.missing_nodes:
        names = _join([str(k) for k in plan.missing_nodes])
        several = len(plan.missing_nodes) > 1
        ranks = (
            f" (ranks {_ranges(plan.missing_ranks)} are not in this diagnosis)"
            if plan.missing_ranks
            else ""
        )
        plan.warnings.append(
            f"node{'s' if several else ''} {names} of {nnodes} {'are' if several else 'is'} "
            f"missing: no session of {'them' if several else 'it'} was given{ranks}; pass "
            "every node's session for a diagnosis of the whole job"
        )
    elif plan.missing_ranks:
        plan.warnings.append(
            f"ranks {_ranges(plan.missing_ranks)} of {world} are in no session given: "
            "their nodes' sessions are missing, or those ranks were not profiled"
        )
    return plan


def _boot(node: NodePlan) -> str | None:
    return node.sessions[0].boot_id


def _job_text(job: list[SessionIdentity]) -> str:
    first = job[0]
    if first.job_id:
        return f"{first.id_source} {first.job_id.partition(':')[2]}"
    return f"{_short(first.command)}, started {first.started}"


def _short(command: str) -> str:
    return f"`{command[:60]}{'...' if len(command) > 60 else ''}`"


def _without_node_rank(argv: Sequence[Any]) -> list[str]:
    """The command with the node's own rank taken out (it differs between nodes of one job)."""
    out: list[str] = []
    skip = False
    for arg in (str(a) for a in argv):
        if skip:
            skip = False
            continue
        name = arg.partition("=")[0]
        if name in _TORCHRUN_NODE_OPTIONS:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def _endpoint(args: Mapping[str, Any], first: Any) -> str | None:
    endpoint = _str(args.get("rdzv_endpoint")) or first("PET_RDZV_ENDPOINT")
    if endpoint:
        return str(endpoint)
    addr = _str(args.get("master_addr")) or first("MASTER_ADDR", "PET_MASTER_ADDR")
    port = _str(args.get("master_port")) or first("MASTER_PORT", "PET_MASTER_PORT")
    if addr and port:
        return f"{addr}:{port}"
    return None


def _launch_processes(meta: Mapping[str, Any]) -> list[dict[str, str]] | None:
    """The launch environments of the session's processes as meta.json holds them (written when
    the run ended), or None when it cannot say: the run did not end (probe itself was killed),
    or the session predates format 1.4."""
    launch = meta.get("launch")
    if not isinstance(launch, dict):
        return None
    processes = launch.get("processes")
    if isinstance(processes, list):
        return [{str(k): str(v) for k, v in p.items()} for p in processes if isinstance(p, dict)]
    return [] if meta.get("status") != "running" else None


def _launch_from_records(path: Path) -> list[dict[str, str]]:
    """The ``launch`` events of the session's agents (read from the record files)."""
    from probe.session.records import read_record_file

    out: list[dict[str, str]] = []
    for rec in sorted(path.glob("agent-*.rec")):
        try:
            data = read_record_file(rec)
        except Exception:  # a damaged file is the reader's to describe, later
            continue
        for event in data.events:
            env = event.get("env") if event.get("type") == "launch" else None
            if isinstance(env, dict):
                out.append({str(k): str(v) for k, v in env.items()})
    return out


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _ranges(values: Sequence[int]) -> str:
    """``0-3, 8, 10-11``."""
    parts: list[str] = []
    vals = sorted(values)
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        parts.append(str(vals[i]) if i == j else f"{vals[i]}-{vals[j]}")
        i = j + 1
    return ", ".join(parts)


__all__ = [
    "JobPlan",
    "NodePlan",
    "SessionIdentity",
    "find_sessions",
    "group",
    "identify",
    "identity_of",
    "plan_job",
]
