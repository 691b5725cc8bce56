"""Append-only record writer, used by the sampler in probe and by the agent in profiled processes.

Standard library only (it runs inside the target). One ``RecordBuffer`` writes one file at a time,
a ``RecordFile`` (probe.session.recordfile): never written by two processes, each writer creates
its own with ``O_EXCL``.

probe's own faults never become the program's, so a write that fails never raises out of
``RecordBuffer.flush``; the buffer writes less instead, and says so in the file:

- A chunk that could not be written whole is cut off again, so the file ends at its last whole
  chunk (a full disk gets back what the torn chunk took).
- Out of space (disk full, quota, file size limit) or any other write error: the stack samples,
  the bulk of an agent's records, are dropped from then on (steps, waits, GC and the outside
  samples are written first in every flush, stacks last). If writing still fails, it pauses:
  records are dropped and counted, and every ``RETRY_NS`` the buffer tries again (still without
  stacks), in case space came back.
- The file closed or replaced under the writer (a program that closes every descriptor it did
  not open): that descriptor is never touched again, and writing goes on in a new file
  (``<prefix>-<n>.rec``) whose header names the old one; without stacks, whose trie lives in the
  old file.
- The file removed (the session directory deleted): writing stops.
- A write that blocks (a hung network filesystem) blocks only the thread that flushes: records
  added meanwhile are held up to ``MAX_PENDING`` per kind, past which new ones are dropped and
  counted, and ``add`` never waits for anything.

What was lost is written into the file's own header, which is padded to a fixed slot when the
file is created and rewritten in place, so the note needs no new space on a full disk (the
``lost`` key, docs/session-format.md).
"""

from __future__ import annotations

import collections
import errno
import json
import os
import threading
import time

from probe.session import format as fmt
from probe.session.recordfile import FileGone, RecordFile, describe_error

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from typing import Any

MAX_PENDING = 50_000  # records of one kind held while a write blocks (~60 s of stacks)
MAX_PENDING_EVENTS = 10_000
RETRY_NS = 5_000_000_000  # how often a paused writer tries again
NOTE_EVERY_NS = 1_000_000_000  # the header note is rewritten at most this often (and at close)
MAX_REOPENS = 3  # new files after the old one was closed under the writer
MAX_EPISODES = 16

# Dropped first when writing fails, and always written last in a flush (nodes and frames before
# the stacks that use them).
STACK_CODES = (fmt.FRAME.code, fmt.NODE.code, fmt.STACK.code, fmt.TICK.code, fmt.PACE.code)
# Never bounded: each holds what is seen once (a new frame, a new trie node), and a stack
# written later may need it.
_UNBOUNDED = frozenset((fmt.NODE.code, fmt.FRAME.code))
_WRITE_ORDER = tuple(c for c in fmt.KINDS if c not in STACK_CODES) + STACK_CODES

# Writing levels.
FULL = 0  # everything
LEAN = 1  # everything but stacks
PAUSED = 2  # nothing; tries again every RETRY_NS
STOPPED = 3  # nothing, for good (the file is gone)
LEVELS = ("full", "lean", "paused", "stopped")

_now = time.monotonic_ns


class RecordBuffer:
    """Records buffered in memory until ``flush``; safe to fill from any thread.

    ``add`` packs a record at once (a deque append is atomic under the GIL, so hooks running on the
    target's threads never take a lock); ``flush`` drains what is there into a ``RecordFile``,
    strings first so every id a record uses is on disk no later than the record.
    The file is created at the first flush that has something to write. See the module's
    docstring for what happens when writing fails.
    """

    def __init__(self, directory: str, prefix: str, header: dict[str, Any]) -> None:
        self._directory = directory
        self._prefix = prefix
        self._header = header
        self._file: RecordFile | None = None
        self._queues: dict[int, collections.deque[bytes]] = {
            code: collections.deque() for code in fmt.KINDS
        }
        self._events: collections.deque[dict[str, Any]] = collections.deque()
        self._strings: dict[str, int] = {}
        self._new_strings: collections.deque[tuple[int, str]] = collections.deque()
        self._intern_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._reset_state()

    def _reset_state(self) -> None:
        self.records_written = 0
        self.bytes_written = 0  # all files of this buffer together
        self.level = FULL
        self.files: list[str] = []  # every file written, in order
        self._overflow = dict.fromkeys(fmt.KINDS, 0)  # added while the queue was full
        self._overflow_events = 0
        self._dropped: dict[str, int] = {}  # by kind name (and "events")
        self._episodes: list[dict[str, Any]] = []
        self._retry_at = 0
        self._reopens = 0
        self._resend_strings = False
        self._last_ok = _now()  # the last flush that wrote all it had
        self._note_dirty = False
        self._noted_at = 0
        self._closed = False
        self._has_stacks = False  # stack samples came this way (an agent's buffer)

    # -- filling (any thread) ---------------------------------------------------------------------

    @property
    def path(self) -> str | None:
        """The file written last (None before the first write)."""
        return self.files[-1] if self.files else None

    @property
    def keeps_stacks(self) -> bool:
        """Whether stack samples are still written (False once writing has failed)."""
        return self.level == FULL

    def intern(self, text: str) -> int:
        sid = self._strings.get(text)
        if sid is None:
            with self._intern_lock:
                sid = self._strings.get(text)
                if sid is None:
                    sid = len(self._strings) + 1
                    self._strings[text] = sid
                    self._new_strings.append((sid, text))
        return sid

    def add(self, kind: fmt.Kind, *values: Any) -> None:
        queue = self._queues[kind.code]
        if len(queue) < MAX_PENDING or kind.code in _UNBOUNDED:
            queue.append(kind.struct.pack(*values))
        else:
            self._overflow[kind.code] += 1

    def add_packed(self, kind: fmt.Kind, packed: bytes) -> None:
        queue = self._queues[kind.code]
        if len(queue) < MAX_PENDING or kind.code in _UNBOUNDED:
            queue.append(packed)
        else:
            self._overflow[kind.code] += 1

    def event(self, event: dict[str, Any]) -> None:
        if len(self._events) < MAX_PENDING_EVENTS:
            self._events.append(event)
        else:
            self._overflow_events += 1

    def pending(self) -> bool:
        return bool(self._new_strings or self._events or any(self._queues.values()))

    # -- writing (one thread at a time) -----------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Write what is buffered. Never raises for a failed write (see the module docstring).

        With ``timeout``, wait at most that long for a flush running on another thread (one
        blocked in a write) and return False if it is still running.
        """
        if not self._flush_lock.acquire(True, -1 if timeout is None else timeout):
            return False
        try:
            self._flush_locked()
        finally:
            self._flush_lock.release()
        return True

    def _flush_locked(self) -> None:
        if self._closed:
            return
        now = _now()
        self._count_overflow(now)
        if self.level == STOPPED or (self.level == PAUSED and now < self._retry_at):
            self._drop_pending(keep_text=self.level == PAUSED)
            return
        if not self.pending() and not self._note_dirty:
            return
        f = self._writable_file(now)
        if f is None:
            self._drop_pending(keep_text=self.level == PAUSED)
            return
        retry = self.level == PAUSED
        if retry:  # everything but stacks; the episode ends only if it all gets written
            self.level = LEAN
        failed = self._write_pending(f, now)
        if not failed:
            self._last_ok = now
            if retry:
                self._close_episode("all", now)
                self._note_dirty = True
        if self._note_dirty and (failed or now - self._noted_at >= NOTE_EVERY_NS):
            self._write_note(now)

    def _writable_file(self, now: int) -> RecordFile | None:
        """The file to write to, created or replaced as needed; None when writing cannot go on."""
        f = self._file
        if f is not None:
            try:
                f.check()
                return f
            except FileGone as gone:
                if gone.how == "removed":
                    f.close()
                    self._file = None
                    self._stop(now, "the record file was removed (the session directory deleted?)")
                    return None
                f.abandon()
                self._file = None
                if self._reopens >= MAX_REOPENS:
                    self._stop(now, f"the record file was {gone.how} under the writer again")
                    return None
                self._reopens += 1
                self._resend_strings = True
                self._degrade(now, LEAN, f"the record file's descriptor was {gone.how} under it")
                self._episode("file", now, f"descriptor {gone.how}; continued in a new file")
        header = dict(self._header)
        if self.files:
            header["continues"] = os.path.basename(self.files[-1])
        try:
            f = RecordFile(self._directory, self._prefix, header, first=len(self.files))
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                self._stop(now, "the session directory is gone")
            else:
                self._failed(now, exc)
            return None
        self._file = f
        self.files.append(f.path)
        self.bytes_written += f.bytes_written
        if self._episodes:
            self._note_dirty = True
        return f

    def _write_pending(self, f: RecordFile, now: int) -> bool:
        """Write every queue as one chunk, essentials first; whether a write failed."""
        if self._resend_strings:  # a new file: every id must be defined again
            self._resend_strings = False
            self._new_strings.clear()
            self._new_strings.extend((sid, text) for text, sid in list(self._strings.items()))
        strings = _drain(self._new_strings)
        if strings:
            payload = json.dumps({str(k): v for k, v in strings}, separators=(",", ":"))
            if not self._write(f, now, fmt.STRINGS, len(strings), payload.encode()):
                self._new_strings.extendleft(reversed(strings))  # needed by every later record
                self._drop_pending(keep_text=True)
                return True
        events = _drain(self._events)
        if events:
            payload = self._events_json(events)
            if not self._write(f, now, fmt.EVENTS, len(events), payload.encode()):
                self._events.extendleft(reversed(events[-MAX_PENDING_EVENTS:]))
                self._drop_pending(keep_text=True)
                return True
        for code in _WRITE_ORDER:
            items = _drain(self._queues[code])
            if not items:
                continue
            if code == fmt.STACK.code:
                self._has_stacks = True
            if self.level != FULL and code in STACK_CODES:
                self._drop(code, len(items))
                continue
            if not self._write(f, now, code, len(items), b"".join(items)):
                self._drop(code, len(items))
                self._drop_pending(keep_text=True)
                return True
            self.records_written += len(items)
        return False

    def _events_json(self, events: list[dict[str, Any]]) -> str:
        """The events as one JSON document; one that cannot be written as JSON is dropped."""
        try:
            return json.dumps(events, separators=(",", ":"), default=str)
        except (TypeError, ValueError):  # a key that is not a string, a cycle
            kept = []
            for event in events:
                try:
                    json.dumps(event, default=str)
                except (TypeError, ValueError):
                    self._dropped["events"] = self._dropped.get("events", 0) + 1
                    self._note_dirty = True
                    continue
                kept.append(event)
            events[:] = kept  # the caller counts (and may queue again) what is written
            return json.dumps(kept, separators=(",", ":"), default=str)

    def _write(self, f: RecordFile, now: int, code: int, count: int, payload: bytes) -> bool:
        before = f.bytes_written
        try:
            f.write_chunk(code, count, payload)
        except OSError as exc:
            self._failed(now, exc)
            return False
        self.bytes_written += f.bytes_written - before
        return True

    # -- losing records ---------------------------------------------------------------------------

    def _failed(self, now: int, exc: OSError) -> None:
        """A write failed: drop stacks first, then pause (and try again later)."""
        cause = describe_error(exc)
        if self.level == FULL:
            self._degrade(now, LEAN, cause)
        else:
            self._degrade(now, PAUSED, cause)
        if self.level == PAUSED:
            self._retry_at = now + RETRY_NS

    def _degrade(self, now: int, level: int, cause: str) -> None:
        if level <= self.level:
            return
        if self.level == FULL and (self._has_stacks or self._queues[fmt.STACK.code]):
            self._episode("stacks", now, cause)
        if level >= PAUSED and self.level < PAUSED:
            self._episode("all", now, cause)
        self.level = level

    def _stop(self, now: int, cause: str) -> None:
        self._degrade(now, STOPPED, cause)
        self._drop_pending(keep_text=False)

    def _episode(self, what: str, now: int, cause: str) -> None:
        open_ = [e for e in self._episodes if e["what"] == what and e.get("until") is None]
        if open_:
            return
        if len(self._episodes) < MAX_EPISODES:
            self._episodes.append({"what": what, "from": now, "until": None, "cause": cause})
        self._note_dirty = True

    def _close_episode(self, what: str, now: int) -> None:
        for e in self._episodes:
            if e["what"] == what and e.get("until") is None:
                e["until"] = now

    def _count_overflow(self, now: int) -> None:
        """Records dropped by ``add`` because the queue was full (the last flush blocked)."""
        full = [(code, n) for code, n in self._overflow.items() if n]
        events, self._overflow_events = self._overflow_events, 0
        if not full and not events:
            return
        for code, n in full:
            self._overflow[code] -= n
            self._drop(code, n)
        if events:
            self._dropped["events"] = self._dropped.get("events", 0) + events
        if len(self._episodes) < MAX_EPISODES:
            self._episodes.append(
                {
                    "what": "overflow",
                    "from": self._last_ok,
                    "until": now,
                    "cause": "writing did not keep up (a write blocked)",
                }
            )
        self._note_dirty = True

    def _drop(self, code: int, n: int) -> None:
        name = fmt.KINDS[code].name
        self._dropped[name] = self._dropped.get(name, 0) + n
        self._note_dirty = True

    def _drop_pending(self, *, keep_text: bool) -> None:
        """Drop (and count) what is queued; strings and events stay for a later retry when
        ``keep_text`` (they are few, and later records need them)."""
        for code, queue in self._queues.items():
            n = len(_drain(queue))
            if n:
                self._drop(code, n)
        if not keep_text:
            n = len(_drain(self._events))
            if n:
                self._dropped["events"] = self._dropped.get("events", 0) + n
            self._new_strings.clear()

    def lost(self) -> dict[str, Any] | None:
        """What this writer lost (the header's ``lost`` note), or None when nothing was."""
        if not self._episodes and not self._dropped:
            return None
        return {
            "level": LEVELS[self.level],
            "episodes": [dict(e) for e in self._episodes],
            "dropped": dict(self._dropped),
        }

    def _write_note(self, now: int) -> None:
        lost = self.lost()
        f = self._file
        if lost is None or f is None:
            return
        if f.note(lost):
            self._note_dirty = False
            self._noted_at = now

    # -- the end ----------------------------------------------------------------------------------

    def reset_after_fork(self, prefix: str, header: dict[str, Any]) -> None:
        """In a forked child: forget the parent's file and unflushed records (the parent owns them).

        Interned strings are forgotten too, since the child's file starts a new id space.
        """
        self._file = None
        self._prefix = prefix
        self._header = header
        for queue in self._queues.values():
            queue.clear()
        self._events.clear()
        self._strings = {}
        self._new_strings.clear()
        self._intern_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._reset_state()

    def close(self, timeout: float | None = None) -> bool:
        """Flush, note what was lost, close the file. With ``timeout``: False (and the file left
        to the flush that holds it) when a blocked write on another thread outlasts it."""
        if not self._flush_lock.acquire(True, -1 if timeout is None else timeout):
            return False
        try:
            self._flush_locked()
            if self._note_dirty and self._file is not None:
                self._write_note(_now())
            if self._file is not None:
                self._file.close()
            self._closed = True  # what is added from now on is never written
        finally:
            self._flush_lock.release()
        return True


def _drain(queue: collections.deque[Any]) -> list[Any]:
    out = []
    pop = queue.popleft
    for _ in range(len(queue)):
        out.append(pop())
    return out
