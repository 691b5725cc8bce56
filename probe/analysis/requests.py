"""Requests a load generator sent to the server (``probe load``'s ``request`` records).

Pure: ``load_requests(session, sec)`` reads the session's request and client records into a
``Requests`` table (times in seconds since the run's start). When a session holds requests the
run was a server under load: requests, not steps, are its unit of work, and the analysed window
is the load's (``load_window``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.session import format as fmt
from probe.session.reader import Session

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass
class Requests:
    """One row per request: sent at ``start``, answered (or failed) ``dur`` seconds later."""

    pid: IntArray  # the load generator's process
    start: FloatArray
    dur: FloatArray
    status: IntArray  # HTTP status, 0: no response
    error: IntArray  # 0, or 1 + index into REQUEST_ERRORS
    nbytes: IntArray
    late: FloatArray  # seconds sent after its scheduled time (--rate), else 0
    loads: list[dict[str, Any]] = field(default_factory=list)  # each load run's settings
    client_cpu: dict[int, tuple[FloatArray, FloatArray]] = field(default_factory=dict)

    @property
    def end(self) -> FloatArray:
        return self.start + self.dur

    def __len__(self) -> int:
        return len(self.start)

    @property
    def responded(self) -> npt.NDArray[np.bool_]:
        ok: npt.NDArray[np.bool_] = self.status > 0
        return ok

    def select(self, mask: npt.NDArray[np.bool_]) -> Requests:
        return Requests(
            self.pid[mask],
            self.start[mask],
            self.dur[mask],
            self.status[mask],
            self.error[mask],
            self.nbytes[mask],
            self.late[mask],
            self.loads,
            self.client_cpu,
        )

    def within(self, t0: float, t1: float) -> Requests:
        """Requests sent and answered inside [t0, t1]."""
        return self.select((self.start >= t0) & (self.end <= t1))

    def window(self) -> tuple[float, float] | None:
        """From the first answer to the last: the server is judged once it answers (requests
        sent before that waited for a server still starting); without any answer, from the
        first request sent."""
        if not len(self):
            return None
        answered = self.responded
        first = float(self.end[answered].min()) if answered.any() else float(self.start.min())
        return first, float(self.end.max())

    def errors_by_kind(self) -> dict[str, int]:
        kinds, counts = np.unique(self.error[self.error > 0], return_counts=True)
        names = fmt.REQUEST_ERRORS
        return {
            names[int(k) - 1] if 0 < k <= len(names) else "other": int(n)
            for k, n in zip(kinds, counts)
        }

    def client_cpu_s(self, t0: float, t1: float) -> float:
        """CPU the load generator(s) used between t0 and t1, in seconds."""
        total = 0.0
        for t, cpu in self.client_cpu.values():
            if len(t) >= 2:
                total += float(np.interp(t1, t, cpu) - np.interp(t0, t, cpu))
        return total


def load_requests(session: Session, sec: Callable[[npt.NDArray[Any]], FloatArray]) -> Requests:
    table = session.table("request")
    order = np.argsort(table["t"], kind="stable")
    clients: dict[int, tuple[FloatArray, FloatArray]] = {}
    rows = session.table("client")
    for pid in np.unique(rows["pid"]):
        mine = rows.where(rows["pid"] == pid)
        clients[int(pid)] = (sec(mine["t"]), mine["cpu_ns"].astype(np.float64) / 1e9)
    return Requests(
        pid=table["pid"][order].astype(np.int64),
        start=sec(table["t"][order]),
        dur=table["dur"][order].astype(np.float64) / 1e9,
        status=table["status"][order].astype(np.int64),
        error=table["error"][order].astype(np.int64),
        nbytes=table["bytes"][order].astype(np.int64),
        late=table["late"][order].astype(np.float64) / 1e9,
        loads=[e for e in session.events_of("load")],
        client_cpu=clients,
    )


__all__ = ["Requests", "load_requests"]
