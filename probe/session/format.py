"""The on-disk record format shared by every writer and the one reader.

This module is imported inside profiled processes (by the agent), so it uses the standard library
only and must stay importable on every Python the agent supports.

A record file is a header followed by chunks::

    file   := MAGIC u16:major u16:minor u32:header_len header_json chunk*
    chunk  := u32:CHUNK_MAGIC u16:kind u16:flags u32:count u32:nbytes u32:crc32 payload[nbytes]

Every chunk is written with a single ``write`` call on an ``O_APPEND`` descriptor, so a process
killed at any moment leaves at most one torn chunk at the end of the file; the CRC lets the reader
find and skip it. Fixed-size kinds carry ``count`` packed little-endian records (the struct layout
below, which the reader maps 1:1 onto a numpy structured dtype); JSON kinds carry one UTF-8 JSON
document. docs/session-format.md is the human description of the same thing.
"""

from __future__ import annotations

import struct

FORMAT_MAJOR = 1
FORMAT_MINOR = 6

FILE_MAGIC = b"PROBEREC"
FILE_HEADER = struct.Struct("<8sHHI")  # magic, major, minor, header json length
CHUNK_MAGIC = 0x4B4E4843  # b"CHNK" read as a little-endian u32
CHUNK_HEADER = struct.Struct("<IHHIII")  # magic, kind, flags, count, nbytes, crc32

# Kinds whose payload is JSON.
STRINGS = 1  # {"<id>": "text", ...}: strings interned by this writer
EVENTS = 2  # [{"type": ..., "t": ...}, ...]: rare, variable-shaped facts

JSON_KINDS = {STRINGS: "strings", EVENTS: "events"}


class Kind:
    """A fixed-size record kind: a name, a code and its fields as (name, struct code) pairs."""

    __slots__ = ("code", "fields", "name", "string_fields", "struct")

    def __init__(
        self,
        code: int,
        name: str,
        fields: list[tuple[str, str]],
        string_fields: tuple[str, ...] = (),
    ) -> None:
        self.code = code
        self.name = name
        self.fields = fields
        self.string_fields = string_fields
        self.struct = struct.Struct("<" + "".join(c for _, c in fields))


_q, _i, _I, _H, _h, _B, _b, _f = "q", "i", "I", "H", "h", "B", "b", "f"

# Written by the sampler in the probe process (outside the target).
PROC = Kind(
    10,
    "proc",
    [
        ("t", _q),  # time.monotonic_ns() of the sample
        ("pid", _i),
        ("ppid", _i),
        ("state", _B),  # ord() of the /proc state letter: R S D Z T ...
        ("cpu_ns", _q),  # cumulative CPU (schedstat of all threads, ns; exited threads kept)
        ("utime_ns", _q),  # cumulative user CPU from /proc/<pid>/stat (10 ms ticks)
        ("stime_ns", _q),  # cumulative system CPU, same source
        ("wait_ns", _q),  # cumulative time runnable but waiting for a CPU (schedstat)
        ("rss", _q),  # bytes
        ("rss_anon", _q),  # anonymous resident bytes (what leaks), -1 if unknown
        ("threads", _i),
        ("ctx_vol", _q),
        ("ctx_invol", _q),
        ("read_bytes", _q),  # storage I/O, -1 if not readable
        ("write_bytes", _q),
        ("rchar", _q),  # all read() bytes incl. sockets and page cache
        ("wchar", _q),
    ],
)
THREAD = Kind(
    11,
    "thread",
    [
        ("t", _q),
        ("pid", _i),
        ("tid", _i),
        ("cpu_ns", _q),  # cumulative, schedstat
        ("wait_ns", _q),  # cumulative run-queue wait, schedstat
        ("state", _B),
        ("name", _I),  # string id of /proc/<pid>/task/<tid>/comm
    ],
    string_fields=("name",),
)
SYSTEM = Kind(
    12,
    "system",
    [
        ("t", _q),
        ("user_ns", _q),  # cumulative, summed over all cores (includes nice)
        ("system_ns", _q),  # includes irq and softirq
        ("idle_ns", _q),
        ("iowait_ns", _q),
        ("steal_ns", _q),
        ("running", _i),  # procs_running: runnable threads on the whole host
        ("blocked", _i),  # procs_blocked: threads in uninterruptible I/O wait
        ("mem_total", _q),
        ("mem_available", _q),
        ("cgroup_mem", _q),  # memory charged to probe's cgroup, -1 if unknown
        ("probe_cpu_ns", _q),  # the probe process's own CPU
        ("sampler_cpu_ns", _q),  # the sampler thread's own CPU
    ],
)
MAIN_IO = Kind(
    16,
    "main_io",
    [
        ("t", _q),
        ("pid", _i),  # the process; its main thread is the thread group leader (tid == pid)
        ("rchar", _q),  # that thread's own read() bytes (/proc/<pid>/task/<pid>/io)
        ("wchar", _q),  # and write() bytes: I/O the other threads do is not in these
    ],
)
# CPU of the host's other processes that give way to the job: niced more than it, in its cgroup
# and autogroup (probe.collectors.priority), cumulative since sampling began (format 1.6).
YIELDING = Kind(17, "yielding", [("t", _q), ("cpu_ns", _q)])
CORE = Kind(13, "core", [("t", _q), ("core", _H), ("busy_ns", _q), ("idle_ns", _q)])
GPU = Kind(
    14,
    "gpu",
    [
        ("t", _q),
        ("index", _H),
        ("util", _f),  # percent of time a kernel ran
        ("mem_util", _f),  # percent of time memory was read or written
        ("mem_used", _q),
        ("mem_total", _q),
    ],
)
GPU_PROC = Kind(15, "gpu_proc", [("t", _q), ("index", _H), ("pid", _i), ("mem", _q)])

# Written by the agent inside each Python process. The process id is the file's (header "pid").
GC = Kind(
    20,
    "gc",
    [
        ("t", _q),  # start
        ("dur", _q),
        ("tid", _i),
        ("gen", _b),
        ("collected", _i),
        ("uncollectable", _i),
    ],
)
GC_SUMMARY = Kind(
    21,
    "gc_summary",
    [
        ("t0", _q),  # bucket start
        ("t1", _q),  # bucket end
        ("gen", _b),
        ("count", _i),
        ("dur", _q),  # total pause time of the collections summarised here
        ("collected", _q),
    ],
)
STEP = Kind(
    22,
    "step",
    [
        ("t", _q),  # end of the step (optimizer.step() returned, or probe.step() called)
        ("tid", _i),
        ("source", _B),  # 1 optimizer hook, 2 probe.step()
        ("opt", _I),  # which optimizer (per-process counter), 0 for probe.step()
        ("opt_dur", _q),  # time inside optimizer.step(), 0 for probe.step()
        ("index", _q),  # per-process, per-source counter
    ],
)
WAIT = Kind(
    23,
    "wait",
    [
        ("t", _q),  # next() on a DataLoader iterator was called
        ("dur", _q),  # and returned this much later
        ("tid", _i),
        ("loader", _I),  # per-process loader id, described by a "loader" event
        ("flags", _B),  # 1: the iterator was exhausted (StopIteration)
    ],
)
FETCH = Kind(
    24,
    "fetch",
    [
        ("t", _q),  # a dataset fetcher started building one batch
        ("dur", _q),
        ("cpu", _q),  # CPU time of the fetching thread meanwhile
        ("worker", _i),  # DataLoader worker id, -1 in the main process
        ("items", _i),
    ],
)
SPAN = Kind(
    25, "span", [("t", _q), ("dur", _q), ("tid", _i), ("name", _I)], string_fields=("name",)
)
LAG = Kind(
    26,
    "lag",
    [
        ("t", _q),  # when the probe callback ran
        ("lag", _q),  # how late it ran
        ("tid", _i),
        ("loop", _I),  # per-process loop id
    ],
)
STACK = Kind(
    27,
    "stack",
    [
        ("t", _q),
        ("tid", _i),
        ("stack", _I),
        ("state", _B),  # main thread only: ord() of its /proc state letter when sampled, else 0
    ],
)
NODE = Kind(28, "node", [("id", _I), ("parent", _I), ("frame", _I)])  # stack trie; parent 0 = root
FRAME = Kind(
    29,
    "frame",
    [("id", _I), ("file", _I), ("func", _I), ("line", _i)],
    string_fields=("file", "func"),
)
CUDA = Kind(
    30,
    "cuda",
    [("t", _q), ("device", _h), ("allocated", _q), ("reserved", _q), ("peak", _q)],
)
COST = Kind(
    31,
    "cost",
    [
        ("t", _q),
        ("thread_cpu", _q),  # cumulative CPU of the agent's own thread
        ("hook_ns", _q),  # cumulative wall time spent inside probe's hooks on the target's threads
        ("samples", _q),  # stack samples taken
        ("records", _q),  # records written
        ("bytes", _q),  # bytes written
    ],
)

TICK = Kind(
    32,
    "tick",
    [
        ("t", _q),  # the agent thread woke to sample stacks
        # this long after it asked to, waiting for the GIL: from format 1.2 less the time the
        # agent thread waited for a CPU meanwhile (its schedstat); before, both together
        ("late", _q),
    ],
)

PACE = Kind(
    34,
    "pace",
    [
        ("t", _q),  # from now on (until the next pace record of this process)
        ("interval", _q),  # the agent samples stacks every this many ns
    ],
)

SYNC = Kind(
    33,
    "sync",
    [
        ("t", _q),  # the host started waiting for the GPU
        ("dur", _q),
        ("tid", _i),
        ("what", _B),  # SYNC_* below: which call made the host wait
    ],
)

# Written by `probe load` in its own process (format 1.5).
REQUEST = Kind(
    35,
    "request",
    [
        ("t", _q),  # the request was sent (its first byte written)
        ("dur", _q),  # and its response read to the last byte (or the error came) this much later
        ("status", _H),  # the HTTP status, 0 when no response came
        ("error", _B),  # 0, or 1 + an index into REQUEST_ERRORS
        ("bytes", _q),  # response body bytes
        ("worker", _H),  # which of the client's connections (0 .. concurrency - 1)
        ("late", _q),  # with --rate: how long after its scheduled time it was sent
    ],
)
CLIENT = Kind(
    36,
    "client",
    [
        ("t", _q),
        ("cpu_ns", _q),  # cumulative CPU of the load generator's process
    ],
)

KINDS: dict[int, Kind] = {
    k.code: k
    for k in (
        PROC,
        THREAD,
        SYSTEM,
        CORE,
        GPU,
        GPU_PROC,
        MAIN_IO,
        YIELDING,
        GC,
        GC_SUMMARY,
        STEP,
        WAIT,
        FETCH,
        SPAN,
        LAG,
        STACK,
        NODE,
        FRAME,
        CUDA,
        COST,
        TICK,
        SYNC,
        PACE,
        REQUEST,
        CLIENT,
    )
}
KINDS_BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS.values()}

STEP_SOURCE_OPTIMIZER = 1
STEP_SOURCE_EXPLICIT = 2
STEP_SOURCE_BACKWARD = 3  # a backward pass returned (format 1.4)
STEP_SOURCE_FORWARD = 4  # a top-level module call returned; opt: its class, opt_dur: its time
WAIT_EXHAUSTED = 1
SYNC_CALLS = ("synchronize", "item", "cpu", "tolist", "stream.synchronize", "event.synchronize")
# Why a request got no response (REQUEST.error - 1): no answer within the timeout; the connection
# could not be made; the server closed or reset it; the response broke HTTP; anything else.
REQUEST_ERRORS = ("timeout", "connect", "disconnected", "protocol", "other")
