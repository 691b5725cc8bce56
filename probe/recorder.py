"""Recording a session: the directory, meta.json, the outside sampler and the agent's environment.

``probe doctor`` and ``probe attach`` both record through ``Recording``; they differ only in how
the target starts (launched, or already running).

Once the command runs, nothing here raises for a fault of probe's own: a meta.json that cannot be
written, a GPU library that fails, a sampler that dies become ``warnings`` (and the in-memory
``meta`` stays the truth for the analysis). A small reserve file, made when the session is
created and removed when the run ends, keeps room for the last meta.json and the verdict when the
records have filled the disk.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import probe.agent
from probe.collectors.gpu import GpuSampler
from probe.collectors.proctree import STOP_WAIT_S, ProcessTreeSampler, SamplerThread, TreeTotals
from probe.collectors.system import Cgroup, machine_info
from probe.errors import DestinationError
from probe.session.launch import launch_env, launch_facts, short_host, torchrun_args
from probe.session.meta import META_NAME, finish_meta, new_meta, write_meta
from probe.session.recordfile import describe_error
from probe.session.writer import RecordBuffer

if TYPE_CHECKING:
    from collections.abc import Callable

    from probe.session.records import RecordFileData

DEFAULT_DEST = ".probe"
BOOTSTRAP_DIR = Path(probe.agent.__file__).parent / "bootstrap"
RESERVE_NAME = ".reserve"
# Room for the final meta.json and diagnosis.json (each written beside its old copy first).
RESERVE_BYTES = 32 * 1024


@dataclass
class Settings:
    """What and how often to sample; stored in meta.json."""

    sample_interval_ms: float = 100.0  # outside sampler (process tree, threads, system)
    stack_hz: float = 100.0  # Python stack sampling in each process; 0 turns it off
    # the share of the time between samples that sampling may cost the program (the agent's pacer)
    stack_budget: float = 0.01
    flush_ms: float = 200.0  # how often agents write what they buffered
    lag_ms: float = 20.0  # asyncio lag probe period
    inject: bool = True  # load the agent into Python processes

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def report_path(session_dir: Path) -> Path:
    return session_dir.parent / f"{session_dir.name}.html"


def _make_reserve(directory: Path) -> None:
    """Set ``RESERVE_BYTES`` aside in the session (best effort: skipped when they do not fit)."""
    path = directory / RESERVE_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except OSError:
        return
    try:
        os.posix_fallocate(fd, 0, RESERVE_BYTES)
    except OSError:
        try:
            os.unlink(path)
        except OSError:
            pass
    finally:
        os.close(fd)


def prepare_session_dir(dest: Path, name: str, *, force: bool) -> Path:
    """Create ``dest/name`` or explain, before anything runs, why it cannot be created."""
    if not name or name in {".", ".."} or "/" in name or "\0" in name:
        raise DestinationError(f"invalid session name: {name!r}")
    if dest.exists() and not dest.is_dir():
        raise DestinationError(f"cannot use {dest} as the session destination: it is a file")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DestinationError(
            f"cannot create the session destination {dest}: {exc.strerror or exc}"
        ) from exc
    if not os.access(dest, os.W_OK | os.X_OK):
        raise DestinationError(f"cannot write to the session destination {dest}: permission denied")
    session = dest / name
    if session.exists() or session.is_symlink():
        if not force:
            raise DestinationError(
                f"session {session} already exists",
                hint="Pass --force to overwrite it, or choose another --name.",
            )
        try:
            if session.is_dir() and not session.is_symlink():
                shutil.rmtree(session)
            else:
                session.unlink()
            report_path(session).unlink(missing_ok=True)
        except OSError as exc:
            raise DestinationError(f"cannot overwrite {session}: {exc.strerror or exc}") from exc
    try:
        session.mkdir()
    except OSError as exc:
        raise DestinationError(f"cannot create {session}: {exc.strerror or exc}") from exc
    return session


class Recording:
    """One session being recorded."""

    def __init__(
        self,
        directory: Path,
        meta: dict[str, Any],
        settings: Settings,
        cgroup: Cgroup | None = None,
    ) -> None:
        self.directory = directory
        self.meta = meta
        self.settings = settings
        self.cgroup = cgroup or Cgroup()
        self._sampler: SamplerThread | None = None
        self._gpu: GpuSampler | None = None
        self.warnings: list[str] = []  # probe's own faults while recording, for the terminal
        self.meta_written = True  # whether meta.json on disk says what ``meta`` says
        self.meta_error: str | None = None
        self.losses: list[str] = []  # what the record files say they lost (after finish)

    @classmethod
    def create(
        cls,
        *,
        dest: Path,
        name: str,
        force: bool,
        kind: str,
        argv: list[str],
        settings: Settings,
        cwd: str | None = None,
        environ: dict[str, str] | None = None,
    ) -> Recording:
        directory = prepare_session_dir(dest, name, force=force)
        try:
            return cls._start(directory, name, kind, argv, settings, cwd, environ)
        except OSError as exc:  # nothing ran yet: say so, and leave nothing behind
            shutil.rmtree(directory, ignore_errors=True)
            raise DestinationError(
                f"cannot write the session in {directory.parent}: {describe_error(exc)}",
                hint="Free some space there, or choose another --dest.",
            ) from exc

    @classmethod
    def _start(
        cls,
        directory: Path,
        name: str,
        kind: str,
        argv: list[str],
        settings: Settings,
        cwd: str | None,
        environ: dict[str, str] | None,
    ) -> Recording:
        cgroup = Cgroup()
        meta = new_meta(
            kind=kind,
            name=name,
            argv=argv,
            cwd=cwd or os.getcwd(),
            settings=settings.to_json(),
            machine=machine_info(cgroup).to_json(),
            environ=environ,
        )
        write_meta(directory, meta)
        _make_reserve(directory)
        return cls(directory, meta, settings, cgroup)

    def agent_env(self, base: dict[str, str]) -> dict[str, str]:
        """The environment for the command: ``base`` plus the agent's bootstrap and settings."""
        env = dict(base)
        if not self.settings.inject:
            return env
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(BOOTSTRAP_DIR) + (os.pathsep + old if old else "")
        env["PROBE_AGENT"] = json.dumps(
            {
                "dir": str(self.directory.resolve()),
                "session": self.directory.name,
                "stack_hz": self.settings.stack_hz,
                "stack_budget": self.settings.stack_budget,
                "flush_ms": self.settings.flush_ms,
                "lag_ms": self.settings.lag_ms,
            }
        )
        return env

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        self.meta["warnings"].append(message)

    def _write_meta(self) -> None:
        try:
            write_meta(self.directory, self.meta)
            self.meta_written = True
        except OSError as exc:
            self.meta_written = False
            self.meta_error = describe_error(exc)

    def start_sampler(self, root_pid: int) -> None:
        self.meta["root_pid"] = root_pid
        try:
            self._gpu = GpuSampler.open()
        except Exception as exc:  # a broken driver library: no GPU data, the run goes on
            self._warn(f"the GPUs cannot be sampled: {type(exc).__name__}: {exc}")
            self._gpu = None
        if self._gpu is not None:
            self.meta["gpus"] = self._gpu.describe()
        self._write_meta()
        buffer = RecordBuffer(
            str(self.directory),
            "sampler",
            {"writer": "sampler", "pid": os.getpid(), "root_pid": root_pid},
        )
        sampler = ProcessTreeSampler(buffer, root_pid, cgroup=self.cgroup, gpu=self._gpu)
        self._sampler = SamplerThread(sampler, self.settings.sample_interval_ms / 1000.0)
        self._sampler.start()

    @property
    def tree_totals(self) -> TreeTotals | None:
        """The sampler's latest totals for the tree (CPU, RSS, processes), while it runs."""
        return self._sampler.sampler.totals if self._sampler is not None else None

    def stop_sampler(self) -> None:
        if self._sampler is None:
            return
        thread, self._sampler = self._sampler, None
        buffer = thread.sampler.buffer
        if thread.stop():
            buffer.close()
        else:  # its last write blocks (a hung filesystem): leave the file to it
            self._warn(
                f"the outside sampler's last records were not written within {STOP_WAIT_S:g} s "
                "(the session's filesystem did not answer)"
            )
        if thread.error is not None and thread.failures == 0:  # an unexpected end, not a
            self._warn(f"the outside sampler failed: {thread.error!r}")  # collector_off event
        if self._gpu is not None:
            try:
                self._gpu.close()
            except Exception as exc:
                self._warn(f"closing the GPU library failed: {type(exc).__name__}: {exc}")

    @property
    def directory_gone(self) -> bool:
        """The session directory was removed (or replaced) while the command ran."""
        try:
            return not (self.directory / META_NAME).is_file()
        except OSError:
            return True

    def finish(
        self,
        *,
        status: str,
        exit_code: int | None,
        signal: int | None,
        files: Callable[[], list[RecordFileData]] | None = None,
    ) -> None:
        """Record how the run ended in meta.json; when it cannot be written, ``meta_written`` is
        False and a warning says why (``meta`` itself is complete either way). ``files``: the
        record files as a full read gives them, from a reader that kept up with them while the
        run went on (probe.session.preread), instead of reading them all again here."""
        finish_meta(self.meta, status=status, exit_code=exit_code, signal=signal)
        try:
            (self.directory / RESERVE_NAME).unlink(missing_ok=True)  # room for what follows
        except OSError:
            pass
        self._scan(files)
        oom = self.cgroup.oom_kills()
        if oom is not None:
            self.meta["oom_kills"] = oom
        try:
            errs = sorted(self.directory.glob("agent-*.err"))
        except OSError:
            errs = []
        for err in errs:
            try:
                text = err.read_text(errors="replace").strip()
            except OSError:
                continue
            if text:
                self.meta["warnings"].append(f"agent in process {err.stem[6:]}: {text[:300]}")
        try:
            faults = list(self.directory.glob("fault-*.txt"))
        except OSError:
            faults = []
        for fault in faults:  # processes that ended without a fault
            try:
                if fault.stat().st_size == 0:
                    fault.unlink()
            except OSError:
                pass
        self._write_meta()
        if not self.meta_written and not self.directory_gone:  # (gone: the CLI says so)
            self.warnings.append(
                f"cannot write {self.directory / META_NAME}: {self.meta_error}; "
                "`probe report` will not know how the run ended"
            )

    def _scan(self, read: Callable[[], list[RecordFileData]] | None = None) -> None:
        """Read the record files once: the torch version seen, and what the writers lost."""
        from probe.session.losses import losses_of

        files = None
        if read is not None:
            try:
                files = read()
            except Exception:  # the warm-up's reader failing costs time, never the record
                files = None
        if files is None:
            files = _read_all(self.directory)
        for data in files:
            for event in data.events if data.writer == "agent" else ():
                if event.get("type") == "torch" and event.get("version"):
                    self.meta["torch"] = str(event["version"])
                    break
            if self.meta["torch"]:
                break
        self._launches(files)
        start = self.meta["start"]["monotonic_ns"]
        self.losses = [line for loss in losses_of(files) for line in loss.lines(start)]

    def _launches(self, files: list[RecordFileData]) -> None:
        """The launch environments the ranks were given (one of each), for ``probe report`` to
        tell which sessions form one job without reading their records."""
        seen: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        for data in files:
            for event in data.events if data.writer == "agent" else ():
                env = event.get("env") if event.get("type") == "launch" else None
                if isinstance(env, dict) and env:
                    seen.setdefault(tuple(sorted(env.items())), env)
        if seen:
            launch = self.meta.setdefault("launch", {})
            launch["processes"] = sorted(seen.values(), key=_rank_order)


def _read_all(directory: Path) -> list[RecordFileData]:
    """Every record file of the session that can be read."""
    from probe.session.records import read_record_file  # numpy-free

    files = []
    try:
        paths = sorted(directory.glob("*.rec"))
    except OSError:
        paths = []
    for path in paths:
        try:
            files.append(read_record_file(path))
        except Exception:  # a damaged file is the reader's to describe
            continue
    return files


def _rank_order(env: dict[str, str]) -> tuple[int, str]:
    rank = env.get("RANK", env.get("SLURM_PROCID", ""))
    return (int(rank) if rank.isdigit() else -1, repr(sorted(env.items())))


def default_name(
    pid: int | None = None,
    now: _dt.datetime | None = None,
    *,
    argv: list[str] | None = None,
    environ: dict[str, str] | None = None,
) -> str:
    """``<YYYYmmdd-HHMMSS>-<pid>``; for a node of a multi-node job (``torchrun --nnodes 2``,
    ``srun`` on several nodes) ``<YYYYmmdd-HHMMSS>-<host>-node<K>-<pid>``, so that the nodes'
    sessions never collide in a shared directory (``-node<K>`` only when the node's rank is known
    at the start: an elastic rendezvous assigns it later)."""
    now = now or _dt.datetime.now()
    pid = pid if pid is not None else os.getpid()
    facts = launch_facts(launch_env(environ), torchrun_args(argv or []))
    if not facts["multinode"]:
        return f"{now:%Y%m%d-%H%M%S}-{pid}"
    node = f"-node{facts['node_rank']}" if facts["node_rank"] is not None else ""
    return f"{now:%Y%m%d-%H%M%S}-{short_host()}{node}-{pid}"


__all__ = [
    "BOOTSTRAP_DIR",
    "DEFAULT_DEST",
    "Recording",
    "Settings",
    "default_name",
    "prepare_session_dir",
    "report_path",
]
