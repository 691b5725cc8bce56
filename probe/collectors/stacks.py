"""Sampled Python stacks of every thread (in-process; standard library only).

Called from the agent's own thread at the stack rate. Frames are interned as (code, line) and
stacks as nodes of a trie (parent node, frame), so one sample is a fixed 16-byte record however
deep the stack. What a thread was doing (waiting for data, in GC, in torch, in I/O) is decided by
the analysis from these stacks, not here, to keep the sampler cheap.
"""

from __future__ import annotations

import gc
import sys
import threading
import weakref

from probe.collectors.procfiles import KeptFiles
from probe.session import format as fmt
from probe.session.writer import RecordBuffer

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from types import CodeType, FrameType
    from typing import Any

MAX_DEPTH = 256


class no_collection:  # lower case: used like contextlib's managers
    """Hold the garbage collector off while walking other threads' frames (see
    ``StackSampler.sample`` for why); a collector the program disabled stays disabled."""

    __slots__ = ("_held",)

    def __enter__(self) -> None:
        self._held = gc.isenabled()
        if self._held:
            gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._held:
            gc.enable()


class ThreadState(KeptFiles):
    """The kernel's state letter of one of this process's threads (R running, S sleeping, D in
    uninterruptible I/O), as its ord(); 0 when it cannot be read.

    Read for the main thread only: combined with how long the sampler waited for the GIL it
    tells computing in C (R) from blocked (S, D) and from running Python (the GIL was held).

    The read must not let go of the GIL: each release while the training thread runs Python
    costs a forced switch (up to the 5 ms switch interval for the sampler, a handoff for the
    training thread), three per sample with os.open/os.read/os.close. So the stat file stays
    open and is re-read with one pread(2) called through ctypes.PyDLL, which keeps the GIL for
    the few microseconds the kernel takes. Where ctypes is missing, os.pread (one release).
    """

    size = 512

    def __init__(self) -> None:
        super().__init__()
        self._ctypes_pread: Any = None
        self._buf: Any = None
        try:
            import ctypes

            pread = ctypes.PyDLL(None).pread
            pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
            pread.restype = ctypes.c_ssize_t
            self._buf = ctypes.create_string_buffer(self.size)
            self._ctypes_pread = pread
        except (ImportError, OSError, AttributeError):
            pass

    def __call__(self, tid: int) -> int:
        data = self.read(f"/proc/self/task/{tid}/stat")
        if not data:
            return 0
        close = data.rfind(b")")
        return data[close + 2] if 0 <= close < len(data) - 2 else 0

    def runq_wait(self, tid: int) -> int:
        """The thread's cumulative time runnable but waiting for a CPU (ns, from its schedstat),
        read the same GIL-keeping way; -1 when it cannot be read."""
        path = f"/proc/self/task/{tid}/schedstat"
        parts = (self.read(path) or b"").split()
        if len(parts) < 2:
            self.close(path)
            return -1
        return int(parts[1])

    def _pread(self, fd: int) -> bytes:
        if self._ctypes_pread is None:
            return super()._pread(fd)
        n = self._ctypes_pread(fd, self._buf, self.size, 0)
        data: bytes = self._buf.raw[:n] if n > 0 else b""
        return data


class _Forget:
    """Called when a sampled code object dies: drops its cached frames, whose keys hold its id."""

    __slots__ = ("_at", "_codes", "_frames", "at_keys", "frame_keys", "ident", "ref")

    def __init__(
        self, ident: int, codes: dict[int, _Forget], at: dict[int, int], frames: dict[int, int]
    ) -> None:
        self.ident = ident
        self._codes = codes
        self._at = at
        self._frames = frames
        self.at_keys: list[int] = []
        self.frame_keys: list[int] = []
        self.ref: object = None  # the weak reference whose callback this is (kept alive here)

    def __call__(self, _ref: object) -> None:
        # Runs in whichever thread drops the code's last reference, before its memory (and so
        # its id) can be reused; it must never raise into the program.
        try:
            if self._codes.get(self.ident) is self:
                del self._codes[self.ident]
            for key in self.at_keys:
                self._at.pop(key, None)
            for key in self.frame_keys:
                self._frames.pop(key, None)
        except Exception:
            pass


class Pacer:
    """How long to wait before the next stack sample, so that sampling stays cheap for the program.

    Each sample needs the GIL. Taking it from a thread that runs Python costs that thread a forced
    switch and a handoff, and on a machine with no idle core each handoff also waits for the
    scheduler: measured on 2 cores, the sampler at a steady 100 Hz cost a DataLoader-bound loop
    6-11 % and a loop of small ops 5-8 %, at 20 Hz about 1-2 %. How long the sampler waited for
    the GIL after its timer (its lateness) shows that contention from the inside: it is near zero
    while the program waits, or computes in C without the GIL, and grows towards the switch
    interval while it runs Python. So the pacer keeps the sampler's wait plus its own cost (the
    agent thread's CPU for the round: wake-up, sample, flush; on a 2-core VM ~250 us, five times
    the sample's own work) within ``budget`` of the time between samples (an exponential average
    over the last ~10 samples):
    the full rate while sampling is cheap, down to one sample per ``max_ns`` while it is not. A
    wait longer than the switch interval counts as the switch interval: the GIL was held in C, and
    the program paid one handoff, not the whole wait.

    Intervals come from a ladder (``base_ns`` times powers of 2**0.25), so the agent writes a
    ``pace`` record only when the rate moves a rung, and the analysis weighs each sample by the
    interval in force when it was taken.
    """

    __slots__ = ("_load", "_rungs", "budget", "cap_ns")

    ALPHA = 0.1  # weight of the newest sample in the average
    STEP = 2**0.25

    def __init__(self, base_ns: int, budget: float, max_ns: int) -> None:
        self.budget = budget
        self.cap_ns = int(sys.getswitchinterval() * 1e9)
        self._load = 0.0
        rungs = [base_ns]
        while rungs[-1] < max_ns:
            rungs.append(min(max_ns, int(rungs[-1] * self.STEP)))
        self._rungs = rungs

    @property
    def base_ns(self) -> int:
        return self._rungs[0]

    @property
    def max_ns(self) -> int:
        return self._rungs[-1]

    def reset(self) -> None:
        """Forget the contention seen so far (a forked child starts afresh)."""
        self._load = 0.0

    def next_interval(self, late_ns: int, cost_ns: int) -> int:
        """The interval to the next sample, given this sample's lateness and the CPU its round
        cost the agent thread."""
        load = min(max(late_ns, 0), self.cap_ns) + max(cost_ns, 0)
        self._load += self.ALPHA * (load - self._load)
        if self.budget <= 0:
            return self._rungs[0]
        wanted = self._load / self.budget
        for rung in self._rungs:
            if rung >= wanted:
                return rung
        return self._rungs[-1]


class StackSampler:
    def __init__(self, buffer: RecordBuffer) -> None:
        self._state = ThreadState()
        self.reset(buffer)

    def reset(self, buffer: RecordBuffer) -> None:
        if getattr(self, "_gc_off", False):
            # A fork while a sample held the collector off (the sampling thread lost the GIL
            # mid-sample): the child has no sampling thread to turn it back on.
            gc.enable()
        self._gc_off = False
        self._buffer = buffer
        self._frames: dict[int, int] = {}  # (id(code) << 24 | line) -> frame id
        self._at: dict[int, int] = {}  # (id(code) << 32 | instruction offset) -> frame id
        self._next_fid = 1
        # The codes seen, by id(): a weak reference whose callback, when the code dies, takes its
        # entries out of _at and _frames before its id can be handed to a new object. So the
        # sampler keeps none of the program's code alive (a module body caught during its import
        # would stay in memory for good, and each forked DataLoader worker would free it again
        # page by page: ~3,000 copy-on-write faults and 8 ms measured after importing torch),
        # and the per-frame lookup stays one dict probe.
        self._codes: dict[int, _Forget] = {}
        self._nodes: dict[int, int] = {}  # (parent node << 32 | frame id) -> node id
        self._tids: dict[int, int] = {}  # thread ident -> native thread id
        self._main_ident = threading.main_thread().ident
        self._state.close_all()  # after a fork: the stat files of the parent's threads
        self.samples = 0

    def close(self) -> None:
        """Close what sampling keeps open (the stat files) and drop its weak references to the
        program's code (their callbacks go with them): the agent is leaving the process."""
        self._state.close_all()
        for forget in self._codes.values():
            forget.ref = None  # the weak reference and its callback refer to each other
        self._codes.clear()
        self._at.clear()  # their keys hold ids that are no longer watched
        self._frames.clear()

    def runq_wait(self, tid: int) -> int:
        """``tid``'s cumulative run-queue wait in ns (-1: unknown); the agent reads its own."""
        return self._state.runq_wait(tid)

    def sample(self, now: int, skip_ident: int) -> None:
        """One stack sample of every thread but ``skip_ident`` (the sampler's own).

        The garbage collector is held off while it runs. On CPython 3.11 (and earlier),
        ``sys._current_frames()`` and ``frame.f_back`` create frame objects for another thread's
        live frames while holding raw pointers to them; that allocation can start a collection,
        a collection runs ``gc.callbacks`` and finalizers (Python code, ours included), Python
        code can hand the GIL to the thread being sampled, and that thread then pops the very
        frame being wrapped: the frame object is left pointing into freed memory and the process
        later dies of SIGSEGV (seen here in the sampler's ``f_back`` during an import; the same
        race crashes other in-process samplers, e.g. sentry-python's and ddtrace's on 3.11).
        Without a collection no Python code runs inside those calls, so no other thread runs
        either. A collection that falls due meanwhile runs at the next allocation after this.
        (Known gap: were the program to call ``gc.disable()`` from another thread within the
        20 us of a sample, the switch back here would turn the collector on again.)
        """
        held = gc.isenabled()  # inline, not no_collection(): nothing may be allocated first
        if held:
            gc.disable()
            self._gc_off = True
        try:
            add = self._buffer.add_packed
            pack = fmt.STACK.struct.pack
            for ident, frame in sys._current_frames().items():
                if ident == skip_ident:
                    continue
                tid = self._tids.get(ident)
                if tid is None:
                    tid = self._new_thread(ident)
                state = self._state(tid) if ident == self._main_ident and tid else 0
                add(fmt.STACK, pack(now, tid, self._intern(frame), state))
            self.samples += 1
        finally:
            if held:
                self._gc_off = False
                gc.enable()

    def _intern(self, frame: FrameType | None) -> int:
        """The trie node of ``frame``'s stack, writing the frames and nodes not seen before.

        A frame is looked up by its code and instruction offset (``f_lasti``: a field read),
        and its line (``f_lineno``: a scan of the code's line table, the costliest part of a
        sample when done for every frame) is worked out only the first time an offset is seen.
        """
        at = self._at
        fids: list[int] = []
        depth = 0
        while frame is not None and depth < MAX_DEPTH:
            key = id(frame.f_code) << 32 | (frame.f_lasti & 0xFFFFFFFF)
            fid = at.get(key)
            if fid is None:
                fid = at[key] = self._new_frame(frame, key)
            fids.append(fid)
            frame = frame.f_back
            depth += 1
        node = 0
        nodes = self._nodes
        for i in range(len(fids) - 1, -1, -1):
            fid = fids[i]
            key = node << 32 | fid
            nid = nodes.get(key)
            if nid is None:
                nid = len(nodes) + 1
                nodes[key] = nid
                self._buffer.add(fmt.NODE, nid, node, fid)
            node = nid
        return node

    def _new_frame(self, frame: FrameType, at_key: int) -> int:
        """The frame id of ``frame``'s (code, line), written out the first time it is seen;
        ``at_key`` is the frame's (code, offset) key, which the code's death will remove."""
        code = frame.f_code
        forget = self._codes.get(id(code))
        if forget is None:
            forget = self._watch(code)
        forget.at_keys.append(at_key)
        line = (frame.f_lineno or 0) & 0xFFFFFF
        key = id(code) << 24 | line
        fid = self._frames.get(key)
        if fid is not None:
            return fid
        fid = self._next_fid
        self._next_fid += 1
        self._frames[key] = fid
        forget.frame_keys.append(key)
        name = getattr(code, "co_qualname", code.co_name)
        self._buffer.add(
            fmt.FRAME,
            fid,
            self._buffer.intern(code.co_filename),
            self._buffer.intern(name),
            line,
        )
        return fid

    def _watch(self, code: CodeType) -> _Forget:
        forget = _Forget(id(code), self._codes, self._at, self._frames)
        try:
            forget.ref = weakref.ref(code, forget)
        except TypeError:  # an interpreter whose code objects take no weak references
            forget.ref = code  # kept alive then, so its id stays its own
        self._codes[id(code)] = forget
        return forget

    def _new_thread(self, ident: int) -> int:
        thread = threading._active.get(ident)  # type: ignore[attr-defined]
        tid = getattr(thread, "native_id", None) or 0
        if not tid and ident == threading.main_thread().ident:
            tid = threading.main_thread().native_id or 0
        self._tids[ident] = tid
        self._buffer.event(
            {
                "type": "thread",
                "ident": ident,
                "tid": tid,
                "name": getattr(thread, "name", None),
                "daemon": getattr(thread, "daemon", None),
            }
        )
        return tid

    def refresh_threads(self) -> None:
        """Forget threads that ended: Python reuses the idents of finished threads."""
        active = threading._active  # type: ignore[attr-defined]
        for ident, tid in list(self._tids.items()):
            thread = active.get(ident)
            if (thread is None and tid) or (
                thread is not None and getattr(thread, "native_id", tid) != tid
            ):
                del self._tids[ident]
