"""One record file's framing: header, chunks, strings and events, with torn tails skipped.

numpy-free, so that the probe process can look into a session it has just recorded (the torch
version for meta.json) without importing the analysis stack; ``probe.session.reader`` builds the
numpy columns from what this returns.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import NotASession, SessionVersionError
from probe.session import format as fmt


@dataclass
class RecordFileData:
    """Everything one record file holds, before ids are made global."""

    path: Path
    header: dict[str, Any]
    chunks: dict[int, list[bytes]] = field(default_factory=dict)
    strings: dict[int, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        pid = self.header.get("pid")
        return pid if isinstance(pid, int) and not isinstance(pid, bool) else -1

    @property
    def writer(self) -> str:
        return str(self.header.get("writer", "?"))

    @property
    def lost(self) -> dict[str, Any] | None:
        """What the writer noted it lost (``RecordBuffer.lost()``), or None."""
        lost = self.header.get("lost")
        return lost if isinstance(lost, dict) else None


def read_record_file(path: Path) -> RecordFileData:
    """Parse one record file. Damaged records are skipped with a warning: a torn tail, and a
    damaged chunk in the middle, after which reading resumes at the next whole chunk. A file that
    is not a probe record file raises ``NotASession``, one of a newer major format
    ``SessionVersionError``; one that was torn while it was being created reads as empty."""
    return _parse_file(path, path.read_bytes())


class RecordFileReader:
    """One record file read as it grows, so that a reader that keeps up with the writer has
    only its tail left to read when the writing ends (probe.session.preread).

    ``advance()`` parses the whole chunks written since the last call and stops before the
    first one that is not whole yet: one still being written, or a damaged one, left for
    ``finish`` to judge. ``finish()`` reads the rest exactly as ``read_record_file`` reads a
    whole file (torn tails and damage skipped with warnings, the header read again: a writer
    rewrites it in place to note what it lost) and returns what the whole file holds; it changes
    nothing that ``advance`` keeps, so it may be called again after more was written. The
    chunks ``advance`` parsed are in ``parsed.chunks`` until the caller takes them (a caller
    that decodes them as they come clears them; ``finish`` then returns only the chunks it
    parsed itself, and says so).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.parsed: RecordFileData | None = None  # what advance() parsed; None before a header
        self.position = 0  # where the next chunk starts: everything before it is parsed
        self._head_len = 0
        self._identity: tuple[int, int] | None = None
        self._misfits = 0
        self._unreadable = 0
        self.restarts = 0  # times the file was found replaced or cut, and read from its start

    def advance(self, limit: int = 1 << 62) -> int:
        """Parse at most about ``limit`` more bytes of whole chunks; the bytes parsed."""
        with open(self.path, "rb") as f:
            st = os.fstat(f.fileno())
            if self._identity != (st.st_dev, st.st_ino) or st.st_size < self.position:
                if self._identity is not None:  # replaced or cut under us
                    self._restart()
                self._identity = (st.st_dev, st.st_ino)
            if self.parsed is None and not self._read_header(f):
                return 0
            assert self.parsed is not None
            f.seek(self.position)
            data = f.read(max(0, min(limit, st.st_size - self.position)))
            if len(data) >= fmt.CHUNK_HEADER.size and _chunk_at(data, 0) is None:
                nbytes = fmt.CHUNK_HEADER.unpack_from(data, 0)[4]  # a chunk larger than limit
                data += f.read(max(0, fmt.CHUNK_HEADER.size + nbytes - len(data)))
        counts = [self._misfits, self._unreadable]
        used = _parse_chunks(self.parsed, data, 0, self.position, counts, final=False)
        self._misfits, self._unreadable = counts
        self.position += used
        return used

    def finish(self) -> tuple[RecordFileData, bool]:
        """The whole file's contents, as ``read_record_file`` gives them, and whether they
        continue what ``advance`` parsed: False when the file was read again from its start
        (its header changed shape, or nothing was parsed before), and then the chunks returned
        are all of the file's, not only those ``advance`` left."""
        with open(self.path, "rb") as f:
            st = os.fstat(f.fileno())
            same = self._identity == (st.st_dev, st.st_ino) and st.st_size >= self.position
            if self.parsed is None or not same:
                return _parse_file(self.path, f.read()), False
            head = f.read(fmt.FILE_HEADER.size + self._head_len)
            header = _header_of(head, self._head_len)
            if header is None:  # rewritten in another shape, or torn: read as a whole file
                f.seek(0)
                return _parse_file(self.path, f.read()), False
            f.seek(self.position)
            tail = f.read()
        state = self.parsed
        out = RecordFileData(
            path=self.path,
            header=header,
            chunks={code: list(payloads) for code, payloads in state.chunks.items()},
            strings=dict(state.strings),
            events=list(state.events),
        )
        counts = [self._misfits, self._unreadable]
        _parse_chunks(out, tail, 0, self.position, counts, final=True)
        _count_warnings(out, *counts)
        return out, True

    def _restart(self) -> None:
        self.restarts += 1
        self.parsed = None
        self.position = 0
        self._head_len = 0
        self._misfits = self._unreadable = 0

    def _read_header(self, f: Any) -> bool:
        """Parse the file's header once it is whole and sound; whether it is."""
        head = f.read(fmt.FILE_HEADER.size)
        if len(head) < fmt.FILE_HEADER.size:
            return False
        magic, major, _minor, head_len = fmt.FILE_HEADER.unpack(head)
        if magic != fmt.FILE_MAGIC or major > fmt.FORMAT_MAJOR:
            return False  # finish() says what it is
        header = _header_of(head + f.read(head_len), head_len)
        if header is None:
            return False
        self.parsed = RecordFileData(path=self.path, header=header)
        self._head_len = head_len
        self.position = fmt.FILE_HEADER.size + head_len
        return True


def _header_of(head: bytes, head_len: int) -> dict[str, Any] | None:
    """The header of a file whose header is ``head_len`` long, from its first bytes; None when
    they do not hold one of that length in this major format (or a header that is not whole)."""
    size = fmt.FILE_HEADER.size
    if len(head) < size + head_len:
        return None
    magic, major, _minor, length = fmt.FILE_HEADER.unpack_from(head, 0)
    if magic != fmt.FILE_MAGIC or major > fmt.FORMAT_MAJOR or length != head_len:
        return None
    try:
        header = json.loads(head[size : size + head_len])
    except (ValueError, UnicodeDecodeError):
        return None
    return header if isinstance(header, dict) else None


def _parse_file(path: Path, data: bytes) -> RecordFileData:
    """``read_record_file`` on the file's bytes."""
    head_size = fmt.FILE_HEADER.size
    if len(data) < head_size:
        if fmt.FILE_MAGIC.startswith(data[: len(fmt.FILE_MAGIC)]):  # nothing, or a torn start
            return RecordFileData(
                path=path,
                header={},
                warnings=[f"{path.name}: holds no records (torn while it was created)"],
            )
        raise NotASession(f"{path} is not a probe record file (too short)")
    magic, major, minor, head_len = fmt.FILE_HEADER.unpack_from(data, 0)
    if magic != fmt.FILE_MAGIC:
        raise NotASession(f"{path} is not a probe record file")
    if major > fmt.FORMAT_MAJOR:
        raise SessionVersionError(
            f"{path.name} was written in record format {major}.{minor}; this probe reads format "
            f"{fmt.FORMAT_MAJOR}.x.",
            hint="Upgrade probe (pip install -U probe-doctor) to read this session.",
        )
    try:
        header = json.loads(data[head_size : head_size + head_len])
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or head_size + head_len > len(data):
        return RecordFileData(
            path=path, header={}, warnings=[f"{path.name}: skipped: its header is damaged"]
        )
    out = RecordFileData(path=path, header=header)
    pos = head_size + head_len
    counts = [0, 0]
    _parse_chunks(out, data, pos, 0, counts, final=True)
    _count_warnings(out, *counts)
    return out


def _parse_chunks(
    out: RecordFileData, data: bytes, pos: int, base: int, counts: list[int], *, final: bool
) -> int:
    """Add the chunks in ``data`` (the file's bytes from offset ``base`` on) from ``pos`` on to
    ``out``; how many bytes were used. Not ``final``: stop before the first chunk that is not
    whole. Final: skip damage with a warning and resume at the next whole chunk, as far as the
    end. ``counts``: chunks skipped so far because their records do not have the size of their
    kind, and because their JSON is unreadable (updated)."""
    first = pos
    size = len(data)
    name = out.path.name
    while pos < size:
        chunk = _chunk_at(data, pos)
        if chunk is None:
            if not final:
                return pos - first
            resume = _next_chunk(data, pos + 1)
            if resume < 0:
                if size - pos < fmt.CHUNK_HEADER.size:
                    out.warnings.append(f"{name}: skipped a truncated record at the end")
                else:
                    out.warnings.append(
                        f"{name}: skipped {size - pos} bytes of torn or damaged records at the end"
                    )
                return size - first
            out.warnings.append(
                f"{name}: skipped {resume - pos} bytes of damaged records at offset {base + pos}"
            )
            pos = resume
            continue
        kind, count, start, end = chunk
        pos = end
        payload = data[start:end]
        if kind in fmt.JSON_KINDS:
            if not _read_json_chunk(out, kind, payload):
                counts[1] += 1
        elif kind in fmt.KINDS:
            if end - start != count * fmt.KINDS[kind].struct.size:
                counts[0] += 1
                continue
            out.chunks.setdefault(kind, []).append(payload)
        # A newer minor version may add kinds; older readers skip what they do not know.
    return pos - first


def _count_warnings(out: RecordFileData, misfits: int, unreadable: int) -> None:
    name = out.path.name
    if misfits:
        out.warnings.append(
            f"{name}: skipped {misfits} chunk(s) whose records do not have the expected size"
        )
    if unreadable:
        out.warnings.append(f"{name}: skipped {unreadable} chunk(s) of unreadable JSON")


_CHUNK_MAGIC_BYTES = fmt.CHUNK_HEADER.pack(fmt.CHUNK_MAGIC, 0, 0, 0, 0, 0)[:4]


def _chunk_at(data: bytes, pos: int) -> tuple[int, int, int, int] | None:
    """(kind, count, payload start, payload end) of the whole chunk at ``pos``, or None."""
    if len(data) - pos < fmt.CHUNK_HEADER.size:
        return None
    magic, kind, _flags, count, nbytes, crc = fmt.CHUNK_HEADER.unpack_from(data, pos)
    start = pos + fmt.CHUNK_HEADER.size
    end = start + nbytes
    if magic != fmt.CHUNK_MAGIC or end > len(data):
        return None
    if zlib.crc32(data[start:end]) != crc:
        return None
    return kind, count, start, end


def _next_chunk(data: bytes, pos: int) -> int:
    """Where the next whole chunk at or after ``pos`` starts, or -1."""
    while True:
        pos = data.find(_CHUNK_MAGIC_BYTES, pos)
        if pos < 0 or _chunk_at(data, pos) is not None:
            return pos
        pos += 1


def _read_json_chunk(out: RecordFileData, kind: int, payload: bytes) -> bool:
    """Add a strings or events chunk to ``out``; False when it does not hold what it should."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return False
    if kind == fmt.STRINGS:
        if not isinstance(doc, dict):
            return False
        strings: dict[int, str] = {}
        for key, text in doc.items():
            if not isinstance(text, str):
                return False
            try:
                sid = int(key)
            except ValueError:
                return False
            if sid < 0 or sid >= 1 << 32:
                return False
            strings[sid] = text
        out.strings.update(strings)
        return True
    if not isinstance(doc, list):
        return False
    out.events.extend(e for e in doc if isinstance(e, dict))
    return True
