"""One record file's content as the session builder accumulates it, written through the real
record format (``probe.session.recordfile.RecordFile``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.session import format as fmt
from probe.session.reader import numpy_dtype
from probe.session.recordfile import RecordFile

Series = float | Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]] | npt.NDArray[Any]
FrameSpec = tuple[str, str, int]  # file, function, line


def values_at(series: Series, t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A series given as a constant, a function of time or an array, at the times ``t``."""
    if callable(series):
        return np.asarray(series(t), dtype=np.float64)
    if np.isscalar(series):
        return np.full(len(t), float(series))  # type: ignore[arg-type]
    return np.asarray(series, dtype=np.float64)


class Records:
    """One record file's content: strings, events, records per kind, frames and stack nodes."""

    def __init__(self, header: dict[str, Any]) -> None:
        self.header = header
        self.strings: dict[str, int] = {}
        self.events: list[dict[str, Any]] = []
        self.records: dict[int, list[npt.NDArray[Any]]] = {}
        self.frames: dict[FrameSpec, int] = {}
        self.nodes: dict[tuple[int, int], int] = {}

    def intern(self, text: str) -> int:
        if text not in self.strings:
            self.strings[text] = len(self.strings) + 1
        return self.strings[text]

    def add(self, kind: fmt.Kind, **columns: Any) -> None:
        n = max(len(np.atleast_1d(v)) for v in columns.values())
        arr = np.zeros(n, dtype=numpy_dtype(kind))
        for name, value in columns.items():
            arr[name] = value
        self.records.setdefault(kind.code, []).append(arr)

    def stack(self, frames: Sequence[FrameSpec]) -> int:
        node = 0
        for spec in frames:
            fid = self.frames.get(spec)
            if fid is None:
                fid = len(self.frames) + 1
                self.frames[spec] = fid
                self.add(
                    fmt.FRAME,
                    id=fid,
                    file=self.intern(spec[0]),
                    func=self.intern(spec[1]),
                    line=spec[2],
                )
            key = (node, fid)
            nid = self.nodes.get(key)
            if nid is None:
                nid = len(self.nodes) + 1
                self.nodes[key] = nid
                self.add(fmt.NODE, id=nid, parent=node, frame=fid)
            node = nid
        return node

    def write(self, directory: Path, prefix: str, chunk: int = 1 << 16) -> None:
        import json

        f = RecordFile(str(directory), prefix, self.header)
        if self.strings:
            payload = json.dumps({str(v): k for k, v in self.strings.items()}).encode()
            f.write_chunk(fmt.STRINGS, len(self.strings), payload)
        if self.events:
            f.write_chunk(fmt.EVENTS, len(self.events), json.dumps(self.events).encode())
        for code, parts in self.records.items():
            arr = np.concatenate(parts)
            for a in range(0, len(arr), chunk):
                part = arr[a : a + chunk]
                f.write_chunk(code, len(part), part.tobytes())
        f.close()
