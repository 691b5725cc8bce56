"""What every exporter reads: a session (through ``probe.session``), what to export of it, and the
facts the analysis derives from it (through ``probe.analysis``): process roles and names, steps,
thread names, the analysed window and the verdict.

Times are seconds since the start of the run (the session's time zero, as in the report and the
diagnosis JSON), so a time seen in an export is the same time in the report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from probe.errors import ExportError
from probe.session.reader import Frame, Session

if TYPE_CHECKING:
    from probe.analysis.diagnosis import Diagnosis, Progress
    from probe.analysis.timeline import ProcessInfo, Timeline

MAIN = "main"  # --thread main: every process's main thread


@dataclass(frozen=True)
class Selection:
    """What of the session to export: a time window, some processes, some threads."""

    window: tuple[float | None, float | None] | None = None  # seconds; None: that end of the run
    pids: frozenset[int] = field(default_factory=frozenset)  # empty: every process
    threads: tuple[str, ...] = ()  # tids, thread names, or "main"; empty: every thread


def parse_window(text: str) -> tuple[float | None, float | None]:
    """``START:END`` in seconds since the start of the run; either side may be left out."""
    start, sep, end = text.partition(":")
    if not sep:
        raise ExportError(f"--window {text!r}: expected START:END in seconds, such as 30:90")
    try:
        a = float(start) if start.strip() else None
        b = float(end) if end.strip() else None
    except ValueError:
        raise ExportError(
            f"--window {text!r}: START and END must be seconds, such as 30:90 or 120:"
        ) from None
    if a is not None and b is not None and b <= a:
        raise ExportError(f"--window {text!r}: END must come after START")
    return a, b


class ExportData:
    """A session and a selection of it, with the analysis's derived facts computed on demand."""

    def __init__(
        self,
        session: Session,
        selection: Selection | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.session = session
        self.selection = selection or Selection()
        self.progress = progress or (lambda stage: None)
        self.t0_ns = session.start_ns
        self.duration_s = max(session.end_ns - self.t0_ns, 0) / 1e9
        self.window = self._window()
        self._check_pids()
        self._frames_cache: dict[int, list[Frame]] = {}

    # -- the selection -------------------------------------------------------------------------

    def _window(self) -> tuple[float, float]:
        whole = (0.0, self.duration_s)
        if self.selection.window is None:
            return whole
        a, b = self.selection.window
        start = max(a if a is not None else 0.0, 0.0)
        end = min(b if b is not None else self.duration_s, self.duration_s)
        if end <= start:
            raise ExportError(
                f"the window {a if a is not None else ''}:{b if b is not None else ''} lies "
                f"outside the run, which lasted {self.duration_s:.1f} s"
            )
        return start, end

    def _check_pids(self) -> None:
        if not self.selection.pids:
            return
        known = self.known_pids()
        missing = sorted(self.selection.pids - known)
        if missing:
            raise ExportError(
                f"no process {', '.join(map(str, missing))} in this session",
                hint=f"Its processes: {', '.join(map(str, sorted(known)))}.",
            )

    def known_pids(self) -> set[int]:
        """The processes of the tree: sampled from outside, or with an agent inside."""
        pids = {f.pid for f in self.session.files if f.writer == "agent"}
        pids.update(int(p) for p in np.unique(self.session.table("proc")["pid"]))
        return pids

    def wants_pid(self, pid: int) -> bool:
        return not self.selection.pids or pid in self.selection.pids

    def wants_thread(self, pid: int, tid: int) -> bool:
        if not self.wants_pid(pid):
            return False
        if not self.selection.threads:
            return True
        name = self.thread_name(pid, tid)
        for wanted in self.selection.threads:
            if wanted == MAIN and tid == self.main_tid(pid):
                return True
            if wanted == str(tid) or wanted == name:
                return True
        return False

    def to_s(self, t_ns: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        return (np.asarray(t_ns, dtype=np.int64) - self.t0_ns) / 1e9

    # -- what the analysis derives -------------------------------------------------------------

    @cached_property
    def diagnosis(self) -> Diagnosis:
        from probe.analysis.diagnosis import diagnose

        return diagnose(self.session, self.progress)

    @property
    def timeline(self) -> Timeline:
        if "diagnosis" in self.__dict__:
            return self.diagnosis.timeline
        return self._timeline

    @cached_property
    def _timeline(self) -> Timeline:
        from probe.analysis.timeline import build_timeline

        self.progress("building the timeline")
        return build_timeline(self.session)

    def process(self, pid: int) -> ProcessInfo | None:
        return self.timeline.processes.get(pid)

    def process_title(self, pid: int) -> str:
        """What the process is ("rank 0", "DataLoader worker 1", "main: python train.py"),
        with its pid."""
        info = self.process(pid)
        if info is None:
            return f"pid {pid}"
        return info.label or f"{info.short_command} (pid {pid})"

    def process_name(self, pid: int) -> str:
        """The title without the pid, for tools that show the pid beside the name."""
        return self.process_title(pid).removesuffix(f" (pid {pid})")

    def main_tid(self, pid: int) -> int:
        info = self.process(pid)
        return info.main_tid if info is not None and info.main_tid else pid

    def agent_tid(self, pid: int) -> int | None:
        info = self.process(pid)
        return info.agent_tid if info is not None else None

    @cached_property
    def _thread_names(self) -> dict[tuple[int, int], str]:
        names: dict[tuple[int, int], str] = {}
        for pid, groups in self.timeline.threads.items():
            for tid, name in groups.names.items():
                names[(pid, int(tid))] = name
        for e in self.session.events_of("thread"):  # Python's names, also for unsampled threads
            tid = int(e.get("tid") or 0)
            if tid and e.get("name"):
                names[(int(e["pid"]), tid)] = str(e["name"])
        return names

    def thread_name(self, pid: int, tid: int) -> str:
        if tid == self.agent_tid(pid):
            return "probe agent"
        name = self._thread_names.get((pid, tid))
        if name:
            return name
        return "MainThread" if tid == self.main_tid(pid) else f"thread {tid}"

    def thread_title(self, pid: int, tid: int) -> str:
        return f"{self.thread_name(pid, tid)} (tid {tid})"

    # -- stacks --------------------------------------------------------------------------------

    def frames(self, stack_id: int) -> list[Frame]:
        """The frames of one sampled stack, outermost first (cached: stacks repeat)."""
        cached = self._frames_cache.get(stack_id)
        if cached is None:
            cached = self.session.stack_frames(stack_id) if stack_id else []
            self._frames_cache[stack_id] = cached
        return cached

    def thread_samples(self) -> list[ThreadSamples]:
        """The stack samples of each selected thread inside the window, in time order, with the
        time each stands for (the sampling interval in force when it was taken)."""
        st = self.timeline.stacks
        a, b = self.window
        mask = (st.t >= a) & (st.t <= b)
        if self.selection.pids:
            mask &= np.isin(st.pid, np.fromiter(self.selection.pids, dtype=np.int64))
        out: list[ThreadSamples] = []
        if not mask.any():
            return out
        keys = np.unique(np.stack([st.pid[mask], st.tid[mask]], axis=1), axis=0)
        for pid, tid in keys:
            p, t = int(pid), int(tid)
            if not self.wants_thread(p, t) or t == self.agent_tid(p):
                continue
            rows = mask & (st.pid == p) & (st.tid == t)
            order = np.argsort(st.t[rows], kind="stable")
            out.append(
                ThreadSamples(
                    pid=p,
                    tid=t,
                    t=st.t[rows][order],
                    stack=st.stack[rows][order],
                    weight=st.weight[rows][order],
                )
            )
        out.sort(key=lambda s: (self.process_order(s.pid), s.pid, s.tid != self.main_tid(s.pid)))
        return out

    def process_order(self, pid: int) -> int:
        """Where a process sorts among the others: the launcher, then the training processes
        (by rank), then DataLoader workers, then the rest."""
        info = self.process(pid)
        if info is None:
            return 9
        role_rank = {"launcher": 0, "main": 1, "rank": 1, "worker": 2, "helper": 3, "other": 4}
        return role_rank.get(info.role, 5) * 100_000 + (info.rank or 0)

    @property
    def name(self) -> str:
        return str(self.session.meta.get("name") or os.path.basename(self.session.path))


@dataclass
class ThreadSamples:
    pid: int
    tid: int
    t: npt.NDArray[np.float64]  # seconds since the start
    stack: npt.NDArray[np.int64]  # stack ids (0: no Python frame)
    weight: npt.NDArray[np.float64]  # seconds each sample stands for


NO_FRAME = "(no Python frame)"


__all__ = [
    "MAIN",
    "NO_FRAME",
    "ExportData",
    "Selection",
    "ThreadSamples",
    "parse_window",
]
