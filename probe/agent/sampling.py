"""The agent's thread: stack samples at a paced rate, and riding on them the flushes and polls.

One thread per process (probe.agent.runtime.Agent starts it with ``_thread``); its state lives
in the locals of ``run``, which goes round up to 1000 times a second inside the profiled program.
A part of a round that keeps failing is switched off (``collector_off``) while the others go on.
"""

from __future__ import annotations

import _thread
import threading
import time

from probe.agent.records import write_cost
from probe.session import format as fmt

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from probe.agent.runtime import Agent

# Flushes and polls wait for the next stack sample when samples come at least this often, so the
# agent thread wakes once per sample and not also for them (each wake is a GIL handoff).
COALESCE_NS = 250_000_000
POLL_NS = 500_000_000
MAX_PART_FAILURES = 20  # a part of the agent's thread that failed this often is switched off

_now = time.monotonic_ns


class StopFlag:
    """The agent thread's stop flag, which it also sleeps on between samples: a wait is one
    acquire of a lock with a timeout (``threading.Event.wait`` builds a Condition waiter, and
    takes and drops two more locks, on every call), and ``set`` wakes it at once."""

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._set = False
        self._lock = _thread.allocate_lock()
        self._lock.acquire()  # held while not set: a wait times out

    def set(self) -> None:
        if not self._set:
            self._set = True
            try:
                self._lock.release()
            except RuntimeError:  # set by two threads at once: released already
                pass

    def is_set(self) -> bool:
        return self._set

    def wake(self) -> None:
        """End the current (or next) wait early, without setting the flag."""
        try:
            self._lock.release()
        except RuntimeError:  # released already (woken, or set)
            pass

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, or until set or woken; whether it is set."""
        if self._lock.acquire(True, timeout) and self._set:
            self._lock.release()  # stays released: later waits return at once
        # Woken (not set): the lock stays held, so the next wait sleeps again.
        return self._set


# One loop, its state in locals: the round runs up to 1000 times a second inside the profiled
# program, where moving next_sample, runq and cpu into attributes and methods costs it time.
def run(agent: Agent) -> None:
    agent._thread_ident = _thread.get_ident()
    stop = agent._stop
    done = agent._thread_done
    tid = threading.get_native_id()
    agent.buffer.event({"type": "agent_thread", "t": _now(), "tid": tid})
    runq = agent.stacks.runq_wait(tid)  # this thread's time waiting for a CPU, cumulative
    thread_cpu = time.thread_time_ns
    cpu = thread_cpu()
    now = _now()
    next_sample = now
    next_flush = now + agent.flush_ns
    next_poll = now
    far = 1 << 62
    try:
        while not stop.is_set():
            now = _now()
            request = agent._flush_request
            if request is not None:  # the program is exiting and waits for this
                agent._flush_request = None
                agent._final_writes()
                request.set()
            interval = agent.stack_interval_ns  # may change while running
            if interval and not agent.buffer.keeps_stacks:  # writing failed: none are kept
                agent.stack_interval_ns = interval = 0
            if interval and now >= next_sample:
                try:
                    late = now - next_sample
                    # The interval this sample was taken at: the one announced after the last
                    # sample, unless the configured one grew since (a DataLoader worker's).
                    in_force = max(interval, agent._paced_ns)
                    if in_force != agent._paced_ns:  # also the first sample (none announced)
                        _pace(agent, now - 1, in_force)
                    # The tick records the wait for the GIL: the lateness less the time this
                    # thread waited for a CPU since the last sample (on busy cores a timer's
                    # wake-up queues for a core, which says nothing about Python running).
                    gil_late = late
                    if runq >= 0:
                        runq_now = agent.stacks.runq_wait(tid)
                        if runq_now >= runq:
                            gil_late = max(0, late - (runq_now - runq))
                            runq = runq_now
                    agent.buffer.add(fmt.TICK, now, gil_late)
                    agent.stacks.sample(now, agent._thread_ident)
                    # What this round cost the program: the GIL wait (a forced switch of
                    # the thread running Python; a wait for a CPU costs the program nothing)
                    # and the thread's CPU since the last sample, its wake-up, flushes and
                    # polls included, not only the sample's own work.
                    cpu_now = thread_cpu()
                    cost, cpu = cpu_now - cpu, cpu_now
                    if agent.pacer is not None and interval < agent.pacer.max_ns:
                        interval = max(interval, agent.pacer.next_interval(gil_late, cost))
                    if interval != agent._paced_ns:
                        _pace(agent, now, interval)
                except Exception as exc:
                    if _part_failed(agent, "stack sampler", exc):
                        agent.stack_interval_ns = interval = 0
                next_sample += interval
                if next_sample <= now:
                    next_sample = now + interval
            if now >= next_poll:
                next_poll = now + POLL_NS
                if agent.end_when is not None:
                    try:
                        ended = agent.end_when()
                    except Exception as exc:
                        agent._error("attach watch", exc)
                        ended = True  # cannot tell whether probe attach still runs: leave
                    if ended:
                        agent._end_attach()
                        return
                if agent.torch is not None:
                    _part(agent, "torch facts", agent.torch.poll, now)
                _part(agent, "thread list", agent.stacks.refresh_threads)
                _part(agent, "cost record", write_cost, agent, now)
            if now >= next_flush:
                next_flush = now + agent.flush_ns
                try:  # never switched off: it is how everything else reaches the disk
                    agent.buffer.flush()
                except Exception as exc:
                    agent._error("writer", exc)
            if interval and interval <= COALESCE_NS:
                wake = next_sample  # flush and poll ride on the sample ticks
            else:
                wake = min(next_sample if interval else far, next_flush, next_poll)
            delay = (wake - _now()) / 1e9
            if delay > 0:
                stop.wait(delay)
    finally:
        if agent._exiting:  # stop() at exit waits for these, from here where a write that
            agent._final_writes()  # blocks holds up no thread of the program's
        done.set()


def _part(agent: Agent, name: str, run: Callable[..., object], *args: Any) -> None:
    """Run one part of the thread's round, unless it was switched off for failing."""
    if name in agent._parts_off:
        return
    try:
        run(*args)
    except Exception as exc:
        _part_failed(agent, name, exc)


def _part_failed(agent: Agent, name: str, exc: BaseException) -> bool:
    """Note a failure of one part of the agent; whether it is now switched off."""
    agent._error(name, exc)
    failures = agent._part_failures.get(name, 0) + 1
    agent._part_failures[name] = failures
    if failures < MAX_PART_FAILURES:
        return False
    agent._parts_off.add(name)
    try:
        agent.buffer.event(
            {
                "type": "collector_off",
                "t": _now(),
                "collector": name,
                "failures": failures,
                "error": f"{type(exc).__name__}: {exc}"[:500],
            }
        )
    except Exception:
        pass
    return True


def _pace(agent: Agent, t: int, interval: int) -> None:
    agent._paced_ns = interval
    agent.buffer.add(fmt.PACE, t, interval)
