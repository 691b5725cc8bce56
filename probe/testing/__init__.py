"""Sessions made from numbers, written through the real record format: for tests and benchmarks.

The way to give the analysis and the report a run without running a program
(docs/session-format.md shows a whole example); nothing in probe itself uses it.

    b = SessionBuilder(tmp / "s", duration_s=20)
    b.process(100, argv=["python", "train.py"], torch_threads=2)
    b.cpu(100, main=0.9, pool=0.1)
    b.steps(100, np.arange(1, 20, 0.05))
    b.waits(100, starts, durations)
    path = b.write()

Times are seconds since the start of the run; the builder converts them to the session's
monotonic nanoseconds. Everything a detector reads can be given: per-process CPU (main thread,
pool, run-queue waits), memory, steps, DataLoader waits and worker fetches, GC pauses, stacks with
the main thread's kernel state and the sampler's GIL lateness, event-loop lag, CUDA and GPU.
"""

from probe.testing.builder import SessionBuilder
from probe.testing.job import job_sessions
from probe.testing.records import FrameSpec, Series

__all__ = ["FrameSpec", "Series", "SessionBuilder", "job_sessions"]
