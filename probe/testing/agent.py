"""What the agents of a made-up session write: steps, DataLoader waits and fetches, GC pauses,
stacks, event-loop lag, CUDA memory and host syncs (part of ``SessionBuilder``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.session import format as fmt
from probe.testing.records import FrameSpec, Records, Series, values_at


class AgentSeries:
    """The in-process records of ``SessionBuilder`` (probe.testing.builder), one process each."""

    t0: int  # the session's monotonic ns at 0 s
    duration_s: float
    agents: dict[int, Records]  # pid -> what its agent wrote

    def ns(self, seconds: Any) -> Any:
        return (np.asarray(seconds, dtype=np.float64) * 1e9).astype(np.int64) + self.t0

    def agent(self, pid: int) -> Records:
        return self.agents[pid]

    def steps(
        self,
        pid: int,
        ends: Sequence[float] | npt.NDArray[Any],
        *,
        explicit: bool = False,
        source: int | None = None,
        opt: int | None = None,
        durs: Any = 0.0,
        index: Sequence[int] | npt.NDArray[Any] | None = None,
    ) -> None:
        """Step records ending at ``ends``: optimizer steps by default, ``probe.step()`` with
        ``explicit``, or any ``source`` (backward passes, top-level module calls); ``opt`` is
        the optimizer (or module class) id, ``durs`` the time inside the call, seconds; the steps
        are indexed 1, 2, ... unless ``index`` says otherwise."""
        ends = np.asarray(ends, dtype=np.float64)
        if source is None:
            source = fmt.STEP_SOURCE_EXPLICIT if explicit else fmt.STEP_SOURCE_OPTIMIZER
        if opt is None:
            opt = 1 if source in (fmt.STEP_SOURCE_OPTIMIZER, fmt.STEP_SOURCE_FORWARD) else 0
        self.agent(pid).add(
            fmt.STEP,
            t=self.ns(ends),
            tid=pid,
            source=source,
            opt=opt,
            opt_dur=(np.asarray(durs, dtype=np.float64) * 1e9).astype(np.int64),
            index=np.arange(1, len(ends) + 1) if index is None else np.asarray(index),
        )

    def loader(self, pid: int, loader: int = 1, **desc: Any) -> None:
        event = {
            "type": "loader",
            "t": self.t0,
            "loader": loader,
            "dataset": "Synthetic",
            "num_workers": 2,
            "batch_size": 32,
        }
        event.update(desc)
        self.agent(pid).events.append(event)

    def waits(
        self, pid: int, starts: Any, durs: Any, *, loader: int = 1, workers: Sequence[int] = ()
    ) -> None:
        starts = np.asarray(starts, dtype=np.float64)
        self.agent(pid).add(
            fmt.WAIT,
            t=self.ns(starts),
            dur=(np.asarray(durs, dtype=np.float64) * 1e9).astype(np.int64),
            tid=pid,
            loader=loader,
            flags=0,
        )
        self.agent(pid).events.append(
            {
                "type": "loader_iter",
                "t": int(self.ns(starts[0]) if len(starts) else self.t0),
                "loader": loader,
                "workers": list(workers),
            }
        )

    def fetches(self, pid: int, starts: Any, durs: Any, cpus: Any, *, worker: int = 0) -> None:
        self.agent(pid).add(
            fmt.FETCH,
            t=self.ns(starts),
            dur=(np.asarray(durs) * 1e9).astype(np.int64),
            cpu=(np.asarray(cpus) * 1e9).astype(np.int64),
            worker=worker,
            items=32,
        )

    def gc(self, pid: int, starts: Any, durs: Any, *, gen: int = 2, collected: int = 100) -> None:
        self.agent(pid).add(
            fmt.GC,
            t=self.ns(starts),
            dur=(np.asarray(durs) * 1e9).astype(np.int64),
            tid=pid,
            gen=gen,
            collected=collected,
            uncollectable=0,
        )

    def stacks(
        self,
        pid: int,
        times: Any,
        frames: Sequence[FrameSpec] | Callable[[float], Sequence[FrameSpec]],
        *,
        tid: int | None = None,
        state: str | Callable[[float], str] = "R",
        late: float | Callable[[float], float] = 0.0001,
    ) -> None:
        """Stack samples of one thread; the main thread's state letter and GIL lateness too."""
        writer = self.agent(pid)
        times = np.asarray(times, dtype=np.float64)
        tid = pid if tid is None else tid
        if callable(frames):
            ids = np.array([writer.stack(frames(float(x))) for x in times], dtype=np.uint32)
        else:
            ids = np.full(len(times), writer.stack(frames), dtype=np.uint32)
        states = np.array(
            [ord(state(float(x)) if callable(state) else state) for x in times], dtype=np.uint8
        )
        lates = np.array([late(float(x)) if callable(late) else late for x in times])
        writer.add(fmt.STACK, t=self.ns(times), tid=tid, stack=ids, state=states)
        if tid == pid:
            writer.add(fmt.TICK, t=self.ns(times), late=(lates * 1e9).astype(np.int64))

    def stack_table(
        self,
        pid: int,
        times: Any,
        stacks: Sequence[Sequence[FrameSpec]],
        choice: Any,
        *,
        tid: int | None = None,
        states: Any = None,
        late: Any = None,
    ) -> None:
        """Vectorised stack samples: ``stacks[choice[i]]`` at ``times[i]`` (for big sessions)."""
        writer = self.agent(pid)
        tid = pid if tid is None else tid
        ids = np.array([writer.stack(s) for s in stacks], dtype=np.uint32)
        times = np.asarray(times, dtype=np.float64)
        state_codes = np.full(len(times), ord("R"), dtype=np.uint8) if states is None else states
        writer.add(
            fmt.STACK,
            t=self.ns(times),
            tid=tid,
            stack=ids[np.asarray(choice)],
            state=state_codes if tid == pid else 0,
        )
        if tid == pid:
            lates = np.full(len(times), 1e-4) if late is None else np.asarray(late)
            writer.add(fmt.TICK, t=self.ns(times), late=(lates * 1e9).astype(np.int64))

    def lag(
        self, pid: int, times: Any, lags: Any, *, loop: int = 1, tid: int | None = None
    ) -> None:
        writer = self.agent(pid)
        writer.events.append(
            {"type": "loop", "t": self.t0, "loop": loop, "tid": tid or pid, "class": "Loop"}
        )
        writer.add(
            fmt.LAG,
            t=self.ns(times),
            lag=(np.asarray(lags) * 1e9).astype(np.int64),
            tid=tid or pid,
            loop=loop,
        )

    def cuda(
        self,
        pid: int,
        *,
        allocated: Series,
        reserved: Series | None = None,
        device: int = 0,
        every_s: float = 0.5,
        start: float = 0.0,
    ) -> None:
        """The agent's CUDA memory polls (every 0.5 s, like the agent's): bytes."""
        t = np.arange(start, self.duration_s + 1e-9, every_s)
        alloc = values_at(allocated, t)
        res = alloc if reserved is None else values_at(reserved, t)
        self.agent(pid).add(
            fmt.CUDA,
            t=self.ns(t),
            device=device,
            allocated=alloc,
            reserved=res,
            peak=np.maximum.accumulate(alloc),
        )

    def syncs(self, pid: int, starts: Any, durs: Any, *, call: str = "item") -> None:
        """Host waits on the GPU timed by the sync hooks (``call`` from fmt.SYNC_CALLS)."""
        self.agent(pid).add(
            fmt.SYNC,
            t=self.ns(starts),
            dur=(np.asarray(durs, dtype=np.float64) * 1e9).astype(np.int64),
            tid=pid,
            what=fmt.SYNC_CALLS.index(call),
        )
