"""The records the agent writes about its own process: the file header, the process and its
exit, and what the agent cost (probe.agent.runtime.Agent writes them through these)."""

from __future__ import annotations

import _thread
import os
import sys
import threading
import time

from probe.agent.config import MAX_ERRORS
from probe.session import format as fmt
from probe.session.launch import clock_offset_for_tests_ns, launch_env
from probe.session.redact import redact_argv, redact_text

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from typing import Any

    from probe.agent.runtime import Agent

MAX_TRACEBACK_FRAMES = 40

_now = time.monotonic_ns


def header(agent: Agent) -> dict[str, Any]:
    return {
        "writer": "agent",
        "pid": agent.pid,
        "ppid": os.getppid(),
        "origin": agent.origin,
        "session": agent.session,
        "host": os.uname().nodename,
        "python": sys.version.split()[0],
        "clock": {
            "monotonic_ns": time.monotonic_ns(),
            "unix_ns": time.time_ns() + clock_offset_for_tests_ns(),
        },
    }


def record_process(agent: Agent) -> None:
    argv = list(getattr(sys, "orig_argv", None) or _proc_cmdline() or sys.argv)
    main = threading.main_thread()
    agent.buffer.event(
        {
            "type": "process",
            "t": _now(),
            "pid": agent.pid,
            "ppid": os.getppid(),
            "origin": agent.origin,
            "argv": redact_argv(argv),
            "executable": sys.executable,
            "python": sys.version.split()[0],
            "implementation": sys.implementation.name,
            "main_tid": main.native_id if agent.origin != "fork" else threading.get_native_id(),
            "stack_hz": 1e9 / agent.stack_interval_ns if agent.stack_interval_ns else 0,
            "gc_thresholds": list(_gc_threshold()),
        }
    )
    launch = launch_env() if agent.origin != "fork" else None  # a fork inherits its parent's
    if launch:
        agent.buffer.event({"type": "launch", "t": _now(), "env": launch})


def record_exit(agent: Agent) -> None:
    if agent._exit_recorded:
        return
    agent._exit_recorded = True
    if agent.torch is not None:  # a short program may end before the thread's first poll
        try:
            agent.torch.poll(_now())
        except Exception as error:
            agent._error("torch facts at exit", error)
    if agent.errors > MAX_ERRORS:  # how often each part failed, beyond the events written
        agent.buffer.event({"type": "agent_errors", "t": _now(), "counts": agent._error_counts})
    exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    event: dict[str, Any] = {
        "type": "exit",
        "t": _now(),
        "exception": type(exc).__name__ if exc is not None else None,
        "message": redact_text(str(exc))[:300] if exc is not None else None,
    }
    if exc is not None:
        event["traceback"] = _traceback_frames(exc)
    agent.buffer.event(event)


def write_cost(agent: Agent, now: int) -> None:
    hooks = agent.hook_ns + agent.gc.hook_ns
    if agent.torch is not None:
        hooks += agent.torch.hook_ns
    if agent.loops is not None:
        hooks += agent.loops.hook_ns
    thread_cpu = 0
    if agent._thread_ident == _thread.get_ident():
        thread_cpu = time.thread_time_ns()
        agent._thread_cpu = thread_cpu
    else:
        thread_cpu = agent._thread_cpu
    agent.buffer.add(
        fmt.COST,
        now,
        thread_cpu,
        hooks,
        agent.stacks.samples,
        agent.buffer.records_written,
        agent.buffer.bytes_written,
    )


def _traceback_frames(exc: BaseException) -> list[list[Any]]:
    """The exception's traceback as ``[file, line, function]``, outermost first (the innermost
    ``MAX_TRACEBACK_FRAMES``): the analysis picks the program's own innermost frame from it."""
    frames: list[list[Any]] = []
    tb = getattr(exc, "__traceback__", None)
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append([code.co_filename, tb.tb_lineno, getattr(code, "co_qualname", code.co_name)])
        tb = tb.tb_next
    return frames[-MAX_TRACEBACK_FRAMES:]


def _proc_cmdline() -> list[str]:
    try:
        with open("/proc/self/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _gc_threshold() -> tuple[int, ...]:
    import gc

    return tuple(gc.get_threshold())
