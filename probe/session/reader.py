"""The one reader of session directories: meta.json and record files into numpy columns.

Analysis, the report, the CLI and the tests read sessions only through ``Session``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.errors import NotASession, SessionError, SessionNotFound, SessionVersionError
from probe.session import format as fmt
from probe.session.losses import Loss, losses_of
from probe.session.meta import read_meta
from probe.session.records import RecordFileData, read_record_file

_NUMPY_CODES = {
    "q": "<i8",
    "Q": "<u8",
    "i": "<i4",
    "I": "<u4",
    "h": "<i2",
    "H": "<u2",
    "b": "i1",
    "B": "u1",
    "f": "<f4",
    "d": "<f8",
}

# Fields holding per-file ids that become global ids by adding the file's offset.
_NODE_FIELDS = {"stack": ("stack",), "node": ("id", "parent")}
_FRAME_FIELDS = {"node": ("frame",), "frame": ("id",)}


def numpy_dtype(kind: fmt.Kind) -> np.dtype[Any]:
    """The packed structured dtype that matches ``kind.struct`` byte for byte."""
    return np.dtype([(name, _NUMPY_CODES[code]) for name, code in kind.fields])


_DTYPES = {code: numpy_dtype(kind) for code, kind in fmt.KINDS.items()}

Columns = dict[str, npt.NDArray[Any]]


def decode_chunks(chunks: dict[int, list[bytes]]) -> dict[int, Columns]:
    """The records of each kind's chunks as columns (ids still the file's own), kinds in the
    order they first appear."""
    out: dict[int, Columns] = {}
    for code, payloads in chunks.items():
        arr = np.frombuffer(b"".join(payloads), dtype=_DTYPES[code])
        out[code] = {name: np.ascontiguousarray(arr[name]) for name in arr.dtype.names or ()}
    return out


@dataclass
class DecodedFile:
    """One record file read: its framing (``data``, whose ``chunks`` may have been emptied) and
    its records decoded into columns by kind (``decode_chunks``)."""

    data: RecordFileData
    columns: dict[int, Columns]


def read_decoded(path: Path) -> DecodedFile:
    """One record file, read whole and decoded; its raw chunks are let go."""
    data = read_record_file(path)
    columns = decode_chunks(data.chunks)
    data.chunks = {}
    return DecodedFile(data, columns)


class Table:
    """Columns of one record kind across all files, sorted by time when the kind has one."""

    def __init__(self, name: str, columns: dict[str, npt.NDArray[Any]]) -> None:
        self.name = name
        self.columns = columns

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, column: str) -> npt.NDArray[Any]:
        return self.columns[column]

    def __contains__(self, column: str) -> bool:
        return column in self.columns

    def where(self, mask: npt.NDArray[np.bool_]) -> Table:
        return Table(self.name, {k: v[mask] for k, v in self.columns.items()})

    def __repr__(self) -> str:
        return f"Table({self.name!r}, {len(self)} rows, columns={list(self.columns)})"


@dataclass
class Frame:
    file: str
    func: str
    line: int

    def __str__(self) -> str:
        return f"{self.func} ({os.path.basename(self.file)}:{self.line})"


class Session:
    """A session directory, fully loaded: meta, tables, strings, events and stacks.

    Raises ``SessionNotFound``, ``NotASession`` or ``SessionVersionError`` with a message fit for
    the user; damaged records and missing pieces become ``warnings``, never exceptions, and what
    the recording itself lost (a full disk, a failing collector) is in ``losses``.

    ``meta``: the recorder's own copy of meta.json, for a run whose final meta.json could not be
    written (the one on disk then still says the run is going on). ``read``: how each record file
    is read (``read_decoded``, or the same from what was read while the run went on:
    probe.session.preread); it raises ``OSError`` for a file that cannot be read.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        meta: dict[str, Any] | None = None,
        read: Callable[[Path], DecodedFile] = read_decoded,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise SessionNotFound(f"no such session: {self.path}")
        if not self.path.is_dir():
            raise NotASession(f"{self.path} is a file, not a session directory")
        self.meta = meta if meta is not None else read_meta(self.path)
        self.warnings: list[str] = []
        decoded: list[DecodedFile] = []
        for rec in sorted(self.path.glob("*.rec")):
            try:
                decoded.append(read(rec))
            except (SessionVersionError, NotASession):
                raise
            except OSError as exc:
                self.warnings.append(f"{rec.name}: could not be read ({exc.strerror})")
        self.files: list[RecordFileData] = [d.data for d in decoded]
        for f in self.files:
            self.warnings.extend(f.warnings)
        self.faults = read_faults(self.path)
        self._build(decoded)
        self.losses: list[Loss] = losses_of(self.files)
        try:
            start = self.start_ns
        except SessionError:
            start = 0
        for loss in self.losses:
            self.warnings.extend(loss.lines(start))

    # -- loading -------------------------------------------------------------------------------

    def _build(self, decoded: list[DecodedFile]) -> None:
        self.strings: list[str] = [""]
        string_ids: dict[str, int] = {"": 0}
        self.events: list[dict[str, Any]] = []
        per_kind: dict[int, list[dict[str, npt.NDArray[Any]]]] = {}
        node_offset = 0
        frame_offset = 0
        for f, columns in ((d.data, d.columns) for d in decoded):
            top = max(f.strings, default=0)
            mapping = np.zeros(top + 1, dtype=np.uint32)
            for local, text in f.strings.items():
                gid = string_ids.get(text)
                if gid is None:
                    gid = len(self.strings)
                    string_ids[text] = gid
                    self.strings.append(text)
                mapping[local] = gid
            for ev in f.events:
                ev.setdefault("pid", f.pid)
                ev["writer"] = f.writer
                self.events.append(ev)
            n_nodes = 0
            n_frames = 0
            for code, decoded_cols in columns.items():
                kind = fmt.KINDS[code]
                cols = dict(decoded_cols)
                for name in kind.string_fields:
                    ids = cols[name]
                    cols[name] = mapping[np.where(ids < len(mapping), ids, 0)]
                if kind.name in ("node", "frame"):
                    cols = self._sane_ids(f, kind.name, cols)
                if kind.name == "node":
                    n_nodes = max(n_nodes, int(cols["id"].max(initial=0)))
                if kind.name == "frame":
                    n_frames = max(n_frames, int(cols["id"].max(initial=0)))
                for name in _NODE_FIELDS.get(kind.name, ()):
                    cols[name] = np.where(cols[name] > 0, cols[name] + node_offset, 0).astype(
                        np.uint32
                    )
                for name in _FRAME_FIELDS.get(kind.name, ()):
                    cols[name] = np.where(cols[name] > 0, cols[name] + frame_offset, 0).astype(
                        np.uint32
                    )
                if kind.name in _AGENT_KINDS:
                    cols["pid"] = np.full(len(cols[kind.fields[0][0]]), f.pid, dtype=np.int32)
                per_kind.setdefault(code, []).append(cols)
            node_offset += n_nodes
            frame_offset += n_frames
        self.events.sort(key=_event_time)
        self._tables: dict[str, Table] = {}
        for code, kind in fmt.KINDS.items():
            parts = per_kind.get(code, [])
            dtype = _DTYPES[code]
            names = list(dtype.names or ())
            if kind.name in _AGENT_KINDS:
                names.append("pid")
            if len(parts) == 1:
                cols = {n: parts[0][n] for n in names}
            elif parts:
                cols = {n: np.concatenate([p[n] for p in parts]) for n in names}
            else:
                cols = {
                    n: np.zeros(0, dtype=dtype[n] if n in (dtype.names or ()) else np.int32)
                    for n in names
                }
            time_col = "t" if "t" in cols else ("t0" if "t0" in cols else None)
            # In time order already (the stable sort would leave every row where it is): most
            # tables, and the largest, come from one writer that writes them in time order.
            if time_col is not None and not _ascending(cols[time_col]):
                order = np.argsort(cols[time_col], kind="stable")
                cols = {n: v[order] for n, v in cols.items()}
            self._tables[kind.name] = Table(kind.name, cols)
        self._build_stacks(node_offset, frame_offset)

    def _sane_ids(
        self, f: RecordFileData, kind: str, cols: dict[str, npt.NDArray[Any]]
    ) -> dict[str, npt.NDArray[Any]]:
        """Drop trie rows whose ids cannot be a writer's: ids count up from 1 in each file, so
        one far past the number of rows is damage (and would size the lookup tables)."""
        n = len(cols["id"])
        bound = 4 * n + 65536
        ok = cols["id"] <= bound
        if kind == "node":
            ok &= cols["parent"] <= bound
        if bool(ok.all()):
            return cols
        self.warnings.append(f"{f.path.name}: skipped {int((~ok).sum())} damaged {kind} records")
        return {name: v[ok] for name, v in cols.items()}

    def _build_stacks(self, n_nodes: int, n_frames: int) -> None:
        nodes = self._tables["node"]
        frames = self._tables["frame"]
        self.node_parent = np.zeros(n_nodes + 1, dtype=np.uint32)
        self.node_frame = np.zeros(n_nodes + 1, dtype=np.uint32)
        self.node_parent[nodes["id"]] = nodes["parent"]
        self.node_frame[nodes["id"]] = nodes["frame"]
        self.frame_file = np.zeros(n_frames + 1, dtype=np.uint32)
        self.frame_func = np.zeros(n_frames + 1, dtype=np.uint32)
        self.frame_line = np.zeros(n_frames + 1, dtype=np.int32)
        self.frame_file[frames["id"]] = frames["file"]
        self.frame_func[frames["id"]] = frames["func"]
        self.frame_line[frames["id"]] = frames["line"]

    # -- access --------------------------------------------------------------------------------

    def table(self, name: str) -> Table:
        """All records of one kind (see probe.session.format), as columns."""
        try:
            return self._tables[name]
        except KeyError:
            raise KeyError(f"no record kind {name!r}; known: {sorted(self._tables)}") from None

    def string(self, sid: int) -> str:
        return self.strings[sid] if 0 <= sid < len(self.strings) else ""

    def events_of(self, type_: str) -> Iterator[dict[str, Any]]:
        return (e for e in self.events if e.get("type") == type_)

    def stack_frames(self, stack_id: int) -> list[Frame]:
        """The frames of one sampled stack, outermost first."""
        frames: list[Frame] = []
        node = int(stack_id)
        seen = 0
        while node and seen < 4096:
            fid = int(self.node_frame[node]) if node < len(self.node_frame) else 0
            if fid >= len(self.frame_file):  # its frame record was lost
                fid = 0
            frames.append(
                Frame(
                    self.string(int(self.frame_file[fid])),
                    self.string(int(self.frame_func[fid])),
                    int(self.frame_line[fid]),
                )
            )
            node = int(self.node_parent[node]) if node < len(self.node_parent) else 0
            seen += 1
        frames.reverse()
        return frames

    @property
    def has_agent_data(self) -> bool:
        return any(f.writer == "agent" for f in self.files)

    @property
    def start_ns(self) -> int:
        """Monotonic time the run started (the session's time zero)."""
        start = _dict(self.meta.get("start")).get("monotonic_ns")
        if isinstance(start, int):
            return start
        times = [int(t["t"][0]) for t in self._tables.values() if "t" in t and len(t)]
        if not times:
            raise SessionError(f"{self.path} holds no records and no start time")
        return min(times)

    @property
    def end_ns(self) -> int:
        """Monotonic time the run ended, or the last record when probe itself was killed."""
        end = _dict(self.meta.get("end"))
        if isinstance(end.get("monotonic_ns"), int):
            return int(end["monotonic_ns"])
        times = [int(t["t"][-1]) for t in self._tables.values() if "t" in t and len(t)]
        return max(times) if times else self.start_ns


def _ascending(t: npt.NDArray[Any]) -> bool:
    return len(t) < 2 or bool(np.all(t[:-1] <= t[1:]))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _event_time(event: dict[str, Any]) -> int | float:
    t = event.get("t", 0)
    return t if isinstance(t, (int, float)) and not isinstance(t, bool) else 0


# Kinds whose records carry no pid: the file's writer (an agent, or `probe load`) is the process.
_AGENT_KINDS = {
    "gc",
    "gc_summary",
    "step",
    "wait",
    "fetch",
    "span",
    "lag",
    "stack",
    "node",
    "frame",
    "cuda",
    "cost",
    "tick",
    "sync",
    "pace",
    "request",
    "client",
}


MAX_FAULT_BYTES = 64 * 1024


def read_faults(path: Path) -> dict[int, str]:
    """The fault handler's reports (``fault-<pid>.txt``) that hold one: pid -> text."""
    faults: dict[int, str] = {}
    for file in sorted(path.glob("fault-*.txt")):
        try:
            pid = int(file.stem[6:])
            with open(file, "rb") as f:
                text = f.read(MAX_FAULT_BYTES).decode("utf-8", "replace").strip()
        except (ValueError, OSError):
            continue
        if text:
            faults[pid] = text
    return faults


def is_session(path: Path) -> bool:
    return (path / "meta.json").is_file()


__all__ = [
    "Columns",
    "DecodedFile",
    "Frame",
    "Loss",
    "RecordFileData",
    "Session",
    "Table",
    "decode_chunks",
    "is_session",
    "read_decoded",
    "read_record_file",
]
