"""A session read while it is being recorded, so that at the run's end only the tails are left.

``Preread(directory)``: each ``advance()`` parses the whole chunks written to the session's
record files since the last one (``records.RecordFileReader``) and decodes their records into
columns (``reader.decode_chunks``), kept in memory. ``session()``, once the writing is over,
reads what is left of each file (its tail; torn ends and damage are judged there exactly as a
full read judges them) and builds the ``Session`` from it all: the same session, table for table
and warning for warning, as ``Session(directory)`` (tests/unit/test_preread.py), without reading
and decoding again what was already read. ``probe doctor``'s warm-up (probe/cli/warmup.py)
advances one while the command runs.

Memory: what is held is the decoded records, about the size of the record files on disk (a
1-hour training run writes 50-100 MB), in buffers that grow by doubling. ``held`` counts the
buffers' whole size (the part not filled yet is address space that numpy leaves untouched, so
less is resident); once it would pass ``max_bytes`` pre-reading stops where it is: what is held
is kept and the rest is read at the end. ``release()`` lets it all go (the analysis then reads
the session as if there had been no pre-read). At the end the session's tables are the held
buffers themselves, not copies: a pre-read analysis holds no more than one that reads at the end
(less: it never holds a file's raw bytes and its columns at once).

Threads: ``advance`` (the warm-up's thread), ``session``, ``files`` and ``release`` (the main
thread, once the command has ended) take one lock; ``session`` is the last use.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.session.reader import Columns, DecodedFile, Session, decode_chunks
from probe.session.records import RecordFileData, RecordFileReader, read_record_file

MAX_BYTES = 512 << 20
STEP_BYTES = 8 << 20  # parsed in one advance at most: a step of the warm-up stays short
_FIRST_ROWS = 1024


class _Growing:
    """One kind's columns of one file, appended to; ``columns()`` views what was filled."""

    def __init__(self) -> None:
        self.buffers: dict[str, npt.NDArray[Any]] = {}
        self.rows = 0

    @property
    def capacity_bytes(self) -> int:
        return sum(b.nbytes for b in self.buffers.values())

    def append(self, cols: Columns) -> int:
        """Add ``cols``'s rows; the bytes by which the buffers grew."""
        n = len(next(iter(cols.values()))) if cols else 0
        before = self.capacity_bytes
        capacity = len(next(iter(self.buffers.values()))) if self.buffers else 0
        if self.rows + n > capacity:
            capacity = max(2 * capacity, self.rows + n, _FIRST_ROWS)
            for name, col in cols.items():
                grown = np.empty(capacity, dtype=col.dtype)
                old = self.buffers.get(name)
                if old is not None:
                    grown[: self.rows] = old[: self.rows]
                self.buffers[name] = grown
        for name, col in cols.items():
            self.buffers[name][self.rows : self.rows + n] = col
        self.rows += n
        return self.capacity_bytes - before

    def columns(self) -> Columns:
        return {name: b[: self.rows] for name, b in self.buffers.items()}


class Preread:
    """The record files of the session in ``directory``, read while they are written."""

    def __init__(self, directory: Path, max_bytes: int = MAX_BYTES) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.held = 0  # bytes of buffers held
        self.parsed = 0  # bytes of record files parsed so far
        self.advances = 0
        self.stopped = ""  # why pre-reading stopped; "" while it goes on
        self._readers: dict[Path, RecordFileReader] = {}
        self._columns: dict[Path, dict[int, _Growing]] = {}
        self._lock = threading.Lock()

    def advance(self, limit: int = STEP_BYTES) -> int:
        """Read and decode at most about ``limit`` bytes more of whole chunks, over all the
        files; the bytes read. Nothing once stopped."""
        with self._lock:
            if self.stopped:
                return 0
            self.advances += 1
            done = 0
            for path in sorted(self.directory.glob("*.rec")):
                if done >= limit:
                    break
                reader = self._readers.get(path)
                if reader is None:
                    reader = self._readers[path] = RecordFileReader(path)
                restarts = reader.restarts
                try:
                    done += reader.advance(limit - done)
                except OSError:
                    continue  # gone, or unreadable now: the end will say
                if reader.restarts != restarts:  # what was decoded is not that file's any more
                    dropped = self._columns.pop(path, {})
                    self.held -= sum(g.capacity_bytes for g in dropped.values())
                if not self._take(path, reader):
                    break
            self.parsed += done
            return done

    def _take(self, path: Path, reader: RecordFileReader) -> bool:
        """Decode the chunks ``reader`` parsed into this file's columns; False (and stopped)
        once what is held has passed ``max_bytes``."""
        parsed = reader.parsed
        if parsed is None or not parsed.chunks:
            return True
        new = decode_chunks(parsed.chunks)
        parsed.chunks = {}
        kinds = self._columns.setdefault(path, {})
        for code, cols in new.items():
            self.held += kinds.setdefault(code, _Growing()).append(cols)
        if self.held > self.max_bytes:  # what is held is kept; the rest is read at the end
            self.stopped = f"held {self.held >> 20} MiB, past the cap of {self.max_bytes >> 20}"
            return False
        return True

    def release(self, why: str = "released") -> None:
        """Let everything go; the end reads the session as if nothing had been read before."""
        with self._lock:
            self._readers.clear()
            self._columns.clear()
            self.held = 0
            self.stopped = why

    def files(self) -> list[RecordFileData]:
        """Every record file's framing (header, strings, events, warnings) as a full read gives
        it now, without its chunks: what ``Recording.finish`` looks at (numpy-free callers may
        use ``read_record_file`` instead, to the same effect)."""
        with self._lock:
            out = []
            for path in sorted(self.directory.glob("*.rec")):
                reader = self._readers.get(path)
                try:
                    data = reader.finish()[0] if reader is not None else read_record_file(path)
                except Exception:  # a damaged file is the reader's to describe, later
                    continue
                data.chunks = {}
                out.append(data)
            return out

    def session(self, meta: dict[str, Any] | None = None) -> Session:
        """The session, read to its end: what ``Session(directory, meta)`` gives. The last use:
        what was held becomes the session's tables."""
        with self._lock:
            try:
                return Session(self.directory, meta=meta, read=self._read)
            finally:
                self._readers.clear()
                self._columns.clear()
                self.held = 0
                self.stopped = "used"

    def _read(self, path: Path) -> DecodedFile:
        reader = self._readers.pop(path, None)
        held = self._columns.pop(path, {})
        if reader is None:
            reader = RecordFileReader(path)
        data, continued = reader.finish()
        tail = decode_chunks(data.chunks)
        data.chunks = {}
        if not continued or not held:
            return DecodedFile(data, tail)
        for code, cols in tail.items():
            held.setdefault(code, _Growing()).append(cols)
        return DecodedFile(data, {code: grown.columns() for code, grown in held.items()})

    def summary(self) -> dict[str, Any]:
        """What the pre-read did, for meta.json's ``warmup``."""
        return {
            "advances": self.advances,
            "parsed_mb": round(self.parsed / 1e6, 1),
            "held_mb": round(self.held / 1e6, 1),
            "stopped": self.stopped or None,
        }


__all__ = ["MAX_BYTES", "Preread"]
