"""Append-only record writer, used by the sampler in probe and by the agent in profiled processes.

Standard library only (it runs inside the target). One ``RecordWriter`` owns one file; a file is
never written by two processes: each writer creates its own with ``O_EXCL``.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import zlib

from probe.session import format as fmt

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from typing import Any


class RecordFile:
    """One record file: created exclusively, appended chunk by chunk, one write per chunk."""

    def __init__(self, directory: str, prefix: str, header: dict[str, Any]) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        n = 0
        while True:
            path = os.path.join(directory, f"{prefix}-{n}.rec" if n else f"{prefix}.rec")
            try:
                self._fd = os.open(path, flags, 0o644)
                break
            except FileExistsError:
                n += 1
        self.path = path
        self.bytes_written = 0
        head = json.dumps(header, separators=(",", ":")).encode()
        self._write(
            fmt.FILE_HEADER.pack(fmt.FILE_MAGIC, fmt.FORMAT_MAJOR, fmt.FORMAT_MINOR, len(head))
            + head
        )

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.bytes_written += len(data)

    def write_chunk(self, kind: int, count: int, payload: bytes) -> None:
        crc = zlib.crc32(payload)
        self._write(
            fmt.CHUNK_HEADER.pack(fmt.CHUNK_MAGIC, kind, 0, count, len(payload), crc) + payload
        )

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class RecordBuffer:
    """Records buffered in memory until ``flush``; safe to fill from any thread.

    ``add`` packs a record at once (a deque append is atomic under the GIL, so hooks running on the
    target's threads never take a lock); ``flush`` drains what is there into a ``RecordFile``,
    strings first so every id a record uses is on disk no later than the record.
    The file is created at the first flush that has something to write.
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
        self.records_written = 0

    @property
    def path(self) -> str | None:
        return self._file.path if self._file else None

    @property
    def bytes_written(self) -> int:
        return self._file.bytes_written if self._file else 0

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
        self._queues[kind.code].append(kind.struct.pack(*values))

    def add_packed(self, kind: fmt.Kind, packed: bytes) -> None:
        self._queues[kind.code].append(packed)

    def event(self, event: dict[str, Any]) -> None:
        self._events.append(event)

    def pending(self) -> bool:
        return bool(self._new_strings or self._events or any(self._queues.values()))

    def flush(self) -> None:
        with self._flush_lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self.pending():
            return
        if self._file is None:
            self._file = RecordFile(self._directory, self._prefix, self._header)
        f = self._file
        strings = _drain(self._new_strings)
        if strings:
            payload = json.dumps({str(k): v for k, v in strings}, separators=(",", ":"))
            f.write_chunk(fmt.STRINGS, len(strings), payload.encode())
        events = _drain(self._events)
        if events:
            payload = json.dumps(events, separators=(",", ":"), default=str)
            f.write_chunk(fmt.EVENTS, len(events), payload.encode())
        for code, queue in self._queues.items():
            items = _drain(queue)
            if items:
                f.write_chunk(code, len(items), b"".join(items))
                self.records_written += len(items)

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
        self.records_written = 0

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()


def _drain(queue: collections.deque[Any]) -> list[Any]:
    out = []
    pop = queue.popleft
    for _ in range(len(queue)):
        out.append(pop())
    return out
