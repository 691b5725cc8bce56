"""One record file's framing: header, chunks, strings and events, with torn tails skipped.

numpy-free, so that the probe process can look into a session it has just recorded (the torch
version for meta.json) without importing the analysis stack; ``probe.session.reader`` builds the
numpy columns from what this returns.
"""

from __future__ import annotations

import json
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
    data = path.read_bytes()
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
    size = len(data)
    misfits = 0
    unreadable = 0
    while pos < size:
        chunk = _chunk_at(data, pos)
        if chunk is None:
            resume = _next_chunk(data, pos + 1)
            if resume < 0:
                if size - pos < fmt.CHUNK_HEADER.size:
                    out.warnings.append(f"{path.name}: skipped a truncated record at the end")
                else:
                    out.warnings.append(
                        f"{path.name}: skipped {size - pos} bytes of torn or damaged records "
                        "at the end"
                    )
                break
            out.warnings.append(
                f"{path.name}: skipped {resume - pos} bytes of damaged records at offset {pos}"
            )
            pos = resume
            continue
        kind, count, start, end = chunk
        pos = end
        payload = data[start:end]
        if kind in fmt.JSON_KINDS:
            if not _read_json_chunk(out, kind, payload):
                unreadable += 1
        elif kind in fmt.KINDS:
            if end - start != count * fmt.KINDS[kind].struct.size:
                misfits += 1
                continue
            out.chunks.setdefault(kind, []).append(payload)
        # A newer minor version may add kinds; older readers skip what they do not know.
    if misfits:
        out.warnings.append(
            f"{path.name}: skipped {misfits} chunk(s) whose records do not have the expected size"
        )
    if unreadable:
        out.warnings.append(f"{path.name}: skipped {unreadable} chunk(s) of unreadable JSON")
    return out


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
