"""Sampled Python stacks of every thread (in-process; standard library only).

Called from the agent's own thread at the stack rate. Frames are interned as (code, line) and
stacks as nodes of a trie (parent node, frame), so one sample is a fixed 16-byte record however
deep the stack. What a thread was doing (waiting for data, in GC, in torch, in I/O) is decided by
the analysis from these stacks, not here, to keep the sampler cheap.
"""

from __future__ import annotations

import os
import sys
import threading

from probe.session import format as fmt
from probe.session.writer import RecordBuffer

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from types import CodeType, FrameType

MAX_DEPTH = 256


def _thread_state(tid: int) -> int:
    """The kernel's state letter for one of this process's threads (R running, S sleeping,
    D in uninterruptible I/O), as its ord(); 0 when it cannot be read.

    Read for the main thread only: combined with how long the sampler waited for the GIL it
    tells computing in C (R) from blocked (S, D) and from running Python (the GIL was held).
    """
    try:
        fd = os.open(f"/proc/self/task/{tid}/stat", os.O_RDONLY)
    except OSError:
        return 0
    try:
        data = os.read(fd, 512)
    except OSError:
        return 0
    finally:
        os.close(fd)
    close = data.rfind(b")")
    return data[close + 2] if 0 <= close < len(data) - 2 else 0


class StackSampler:
    def __init__(self, buffer: RecordBuffer) -> None:
        self.reset(buffer)

    def reset(self, buffer: RecordBuffer) -> None:
        self._buffer = buffer
        self._frames: dict[int, int] = {}  # (id(code) << 24 | line) -> frame id
        self._codes: list[CodeType] = []  # keeps interned code objects alive: ids stay unique
        self._nodes: dict[tuple[int, int], int] = {}  # (parent node, frame id) -> node id
        self._tids: dict[int, int] = {}  # thread ident -> native thread id
        self._main_ident = threading.main_thread().ident
        self.samples = 0

    def sample(self, now: int, skip_ident: int) -> None:
        add = self._buffer.add_packed
        pack = fmt.STACK.struct.pack
        for ident, frame in sys._current_frames().items():
            if ident == skip_ident:
                continue
            tid = self._tids.get(ident)
            if tid is None:
                tid = self._new_thread(ident)
            state = _thread_state(tid) if ident == self._main_ident and tid else 0
            add(fmt.STACK, pack(now, tid, self._intern(frame), state))
        self.samples += 1

    def _intern(self, frame: FrameType | None) -> int:
        frames = self._frames
        keys: list[int] = []
        walked: list[FrameType] = []
        depth = 0
        while frame is not None and depth < MAX_DEPTH:
            code = frame.f_code
            keys.append(id(code) << 24 | (frame.f_lineno or 0) & 0xFFFFFF)
            walked.append(frame)
            frame = frame.f_back
            depth += 1
        node = 0
        nodes = self._nodes
        for i in range(len(keys) - 1, -1, -1):
            fid = frames.get(keys[i])
            if fid is None:
                fid = self._new_frame(keys[i], walked[i])
            key = (node, fid)
            nid = nodes.get(key)
            if nid is None:
                nid = len(nodes) + 1
                nodes[key] = nid
                self._buffer.add(fmt.NODE, nid, node, fid)
            node = nid
        return node

    def _new_frame(self, key: int, frame: FrameType) -> int:
        code = frame.f_code
        fid = len(self._frames) + 1
        self._frames[key] = fid
        self._codes.append(code)
        name = getattr(code, "co_qualname", code.co_name)
        self._buffer.add(
            fmt.FRAME,
            fid,
            self._buffer.intern(code.co_filename),
            self._buffer.intern(name),
            key & 0xFFFFFF,
        )
        return fid

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
