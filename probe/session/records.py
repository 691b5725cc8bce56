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
        return int(self.header.get("pid", -1))

    @property
    def writer(self) -> str:
        return str(self.header.get("writer", "?"))


def read_record_file(path: Path) -> RecordFileData:
    """Parse one record file. A torn or corrupt tail is skipped with a warning."""
    data = path.read_bytes()
    head_size = fmt.FILE_HEADER.size
    if len(data) < head_size:
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
    except ValueError as exc:
        raise NotASession(f"{path} has an unreadable header") from exc
    out = RecordFileData(path=path, header=header)
    pos = head_size + head_len
    size = len(data)
    misfits = 0
    chunk_size = fmt.CHUNK_HEADER.size
    unpack = fmt.CHUNK_HEADER.unpack_from
    while pos < size:
        if size - pos < chunk_size:
            out.warnings.append(f"{path.name}: skipped a truncated record at the end")
            break
        magic, kind, _flags, count, nbytes, crc = unpack(data, pos)
        start = pos + chunk_size
        end = start + nbytes
        if magic != fmt.CHUNK_MAGIC or end > size:
            out.warnings.append(
                f"{path.name}: skipped {size - pos} bytes of torn or damaged records at the end"
            )
            break
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            out.warnings.append(
                f"{path.name}: skipped {size - pos} bytes of damaged records at the end"
            )
            break
        pos = end
        if kind == fmt.STRINGS:
            out.strings.update({int(k): v for k, v in json.loads(payload).items()})
        elif kind == fmt.EVENTS:
            out.events.extend(json.loads(payload))
        elif kind in fmt.KINDS:
            if nbytes != count * fmt.KINDS[kind].struct.size:
                misfits += 1
                continue
            out.chunks.setdefault(kind, []).append(payload)
        else:
            # A newer minor version may add kinds; older readers skip what they do not know.
            continue
    if misfits:
        out.warnings.append(
            f"{path.name}: skipped {misfits} chunk(s) whose records do not have the expected size"
        )
    return out
