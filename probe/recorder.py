"""Recording a session: the directory, meta.json, the outside sampler and the agent's environment.

``probe doctor`` and ``probe attach`` both record through ``Recording``; they differ only in how
the target starts (launched, or already running).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import probe.agent
from probe.collectors.gpu import GpuSampler
from probe.collectors.proctree import ProcessTreeSampler, SamplerThread, TreeTotals
from probe.collectors.system import Cgroup, machine_info
from probe.errors import DestinationError
from probe.session.meta import finish_meta, new_meta, write_meta
from probe.session.writer import RecordBuffer

DEFAULT_DEST = ".probe"
BOOTSTRAP_DIR = Path(probe.agent.__file__).parent / "bootstrap"


@dataclass
class Settings:
    """What and how often to sample; stored in meta.json."""

    sample_interval_ms: float = 100.0  # outside sampler (process tree, threads, system)
    stack_hz: float = 100.0  # Python stack sampling in each process; 0 turns it off
    flush_ms: float = 200.0  # how often agents write what they buffered
    lag_ms: float = 20.0  # asyncio lag probe period
    inject: bool = True  # load the agent into Python processes

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def default_name(pid: int | None = None, now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now()
    return f"{now:%Y%m%d-%H%M%S}-{pid if pid is not None else os.getpid()}"


def report_path(session_dir: Path) -> Path:
    return session_dir.parent / f"{session_dir.name}.html"


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
                "flush_ms": self.settings.flush_ms,
                "lag_ms": self.settings.lag_ms,
            }
        )
        return env

    def start_sampler(self, root_pid: int) -> None:
        self.meta["root_pid"] = root_pid
        self._gpu = GpuSampler.open()
        if self._gpu is not None:
            self.meta["gpus"] = self._gpu.describe()
        write_meta(self.directory, self.meta)
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
        self._sampler.stop()
        if self._sampler.error is not None:
            self.meta["warnings"].append(f"the outside sampler failed: {self._sampler.error!r}")
        self._sampler.sampler.buffer.close()
        if self._gpu is not None:
            self._gpu.close()
        self._sampler = None

    def finish(self, *, status: str, exit_code: int | None, signal: int | None) -> None:
        finish_meta(self.meta, status=status, exit_code=exit_code, signal=signal)
        self.meta["torch"] = self._torch_version()
        oom = self.cgroup.oom_kills()
        if oom is not None:
            self.meta["oom_kills"] = oom
        for err in sorted(self.directory.glob("agent-*.err")):
            try:
                text = err.read_text(errors="replace").strip()
            except OSError:
                continue
            if text:
                self.meta["warnings"].append(f"agent in process {err.stem[6:]}: {text[:300]}")
        for fault in self.directory.glob("fault-*.txt"):  # processes that ended without a fault
            try:
                if fault.stat().st_size == 0:
                    fault.unlink()
            except OSError:
                pass
        write_meta(self.directory, self.meta)

    def _torch_version(self) -> str | None:
        from probe.session.records import read_record_file  # numpy-free

        for path in sorted(self.directory.glob("agent-*.rec")):
            try:
                data = read_record_file(path)
            except Exception:
                continue
            for event in data.events:
                if event.get("type") == "torch" and event.get("version"):
                    return str(event["version"])
        return None


__all__ = [
    "BOOTSTRAP_DIR",
    "DEFAULT_DEST",
    "Recording",
    "Settings",
    "default_name",
    "prepare_session_dir",
    "report_path",
]
