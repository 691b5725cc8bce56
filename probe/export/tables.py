"""The session as tables for pandas and friends: CSV, or Parquet when pyarrow is installed.

A directory of three tables:

- ``processes``: one row per process of the tree: what it was (role, name, rank, DataLoader
  worker), when it ran, how it ended, its command.
- ``steps``: one row per step of a training process (the analysis's step table): when it began
  and ended, its time blocked in the DataLoader, in GC pauses and in ``optimizer.step()``, and
  the process's RSS at its end.
- ``samples``: the outside sampler's readings of every process (every 100 ms by default): CPU
  (cores: user, system, waiting for a CPU), RSS, threads, involuntary context switches and
  storage I/O. Rates are over the interval that ends at the sample; the first sample of a process
  has none, and a reading the sampler could not take (a process exiting) is missing too (empty in
  CSV, NaN in Parquet).

Times are seconds since the start of the run (``t_s``, ``start_s``, ``end_s``), as in the report.
With ``--window``, the steps that end and the samples taken inside it; with ``--pid``, those
processes' rows.
"""

from __future__ import annotations

import csv
import math
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.errors import ExportError
from probe.export import Exporter, atomic_text
from probe.export.source import ExportData


@dataclass
class Column:
    name: str
    values: list[Any] | npt.NDArray[Any]
    decimals: int | None = None  # floats: how many decimals in CSV


Table = list[Column]


def processes_table(data: ExportData) -> Table:
    infos = [
        info
        for pid, info in sorted(data.timeline.processes.items())
        if data.wants_pid(pid)
        and (info.end_s is None or info.end_s >= data.window[0])
        and (info.start_s is None or info.start_s <= data.window[1])
    ]

    def opt(values: list[float | None]) -> npt.NDArray[np.float64]:
        return np.array([math.nan if v is None else v for v in values], dtype=np.float64)

    return [
        Column("pid", [i.pid for i in infos]),
        Column("ppid", [i.ppid for i in infos]),
        Column("role", [i.role for i in infos]),
        Column("name", [data.process_name(i.pid) for i in infos]),
        Column("rank", [i.rank for i in infos]),
        Column("worker", [i.worker_id for i in infos]),
        Column("python", [i.python for i in infos]),
        Column("start_s", opt([i.start_s for i in infos]), 6),
        Column("end_s", opt([i.end_s for i in infos]), 6),
        Column("exit_code", [i.exit_code for i in infos]),
        Column("signal", [i.signal for i in infos]),
        Column("exception", [i.exception for i in infos]),
        Column("command", [shlex.join(i.argv) for i in infos]),
    ]


def steps_table(data: ExportData) -> Table:
    steps = data.timeline.steps
    a, b = data.window
    keep = (steps.end >= a) & (steps.end <= b)
    if data.selection.pids:
        keep &= np.isin(steps.pid, np.fromiter(data.selection.pids, dtype=np.int64))
    # each process's own step numbers, counted over the whole run
    number = np.zeros(len(steps), dtype=np.int64)
    for pid in np.unique(steps.pid):
        mine = np.flatnonzero(steps.pid == pid)
        number[mine] = np.arange(1, len(mine) + 1)
    s = steps.select(keep)
    ranks = {pid: info.rank for pid, info in data.timeline.processes.items()}
    return [
        Column("pid", s.pid),
        Column("process", [data.process_name(int(p)) for p in s.pid]),
        Column("rank", [ranks.get(int(p)) for p in s.pid]),
        Column("step", number[keep]),
        Column("start_s", s.start, 6),
        Column("end_s", s.end, 6),
        Column("duration_s", s.duration, 6),
        Column("data_wait_s", s.data_wait, 6),
        Column("gc_s", s.gc, 6),
        Column("gc_full", s.gc_full),
        Column("optimizer_s", s.opt, 6),
        Column("rss_end_bytes", s.rss_end, 0),
    ]


# what the sampler read, the counters differentiated: (column, proc field, scale to the unit)
_RATES = (
    ("cpu_cores", "cpu_ns", 1e-9),
    ("user_cores", "utime_ns", 1e-9),
    ("system_cores", "stime_ns", 1e-9),
    ("run_wait_cores", "wait_ns", 1e-9),
)
_LEVELS = (("rss_bytes", "rss"), ("rss_anon_bytes", "rss_anon"), ("threads", "threads"))
_IO_RATES = (
    ("ctx_invol_per_s", "ctx_invol", 1.0),
    ("read_bytes_per_s", "read_bytes", 1.0),
    ("write_bytes_per_s", "write_bytes", 1.0),
)


def samples_table(data: ExportData) -> Table:
    proc = data.session.table("proc")
    a, b = data.window
    names = ["t_s", "pid", "state"] + [c for c, _, _ in _RATES] + [c for c, _ in _LEVELS]
    names += [c for c, _, _ in _IO_RATES]
    parts: list[dict[str, npt.NDArray[Any]]] = []
    for pid in (int(p) for p in np.unique(proc["pid"])):
        if not data.wants_pid(pid):
            continue
        rows = proc.where(proc["pid"] == pid)
        t = data.to_s(rows["t"])
        part: dict[str, npt.NDArray[Any]] = {
            "t_s": t,
            "pid": rows["pid"].astype(np.int64),
            "state": rows["state"].astype(np.int64),
        }
        for column, field, scale in _RATES + _IO_RATES:
            part[column] = _rate(t, rows[field], scale)
        for column, field in _LEVELS:  # -1: not readable (the process was exiting)
            level = rows[field].astype(np.float64)
            part[column] = np.where(level >= 0, level, math.nan)
        keep = (t >= a) & (t <= b)
        parts.append({k: v[keep] for k, v in part.items()})
    if parts:
        cols = {k: np.concatenate([p[k] for p in parts]) for k in names}
        order = np.lexsort((cols["pid"], cols["t_s"]))
        cols = {k: v[order] for k, v in cols.items()}
    else:
        cols = {
            k: np.zeros(0, dtype=np.int64 if k in ("pid", "state") else np.float64) for k in names
        }
    titles = {p: data.process_name(p) for p in np.unique(cols["pid"]).astype(int).tolist()}
    decimals = {"t_s": 6, "ctx_invol_per_s": 2, "read_bytes_per_s": 1, "write_bytes_per_s": 1}
    decimals.update({column: 0 for column, _ in _LEVELS})
    table = [
        Column("t_s", cols["t_s"], 6),
        Column("pid", cols["pid"].astype(np.int64)),
        Column("process", [titles[int(p)] for p in cols["pid"]]),
        Column("state", [chr(int(s)) if s else "" for s in cols["state"]]),
    ]
    for column in names[3:]:
        table.append(Column(column, cols[column], decimals.get(column, 4)))
    return table


def _rate(
    t: npt.NDArray[np.float64], counter: npt.NDArray[Any], scale: float
) -> npt.NDArray[np.float64]:
    """Per-second rate of a cumulative counter over the interval ending at each sample (NaN for
    the first sample and where the counter was unreadable, -1)."""
    values = counter.astype(np.float64)
    out = np.full(len(t), math.nan)
    if len(t) > 1:
        dt = np.diff(t)
        ok = (dt > 0) & (values[1:] >= 0) & (values[:-1] >= 0)
        out[1:] = np.where(ok, np.diff(values) / np.where(dt > 0, dt, 1) * scale, math.nan)
    return out


TABLES: dict[str, Callable[[ExportData], Table]] = {
    "processes": processes_table,
    "steps": steps_table,
    "samples": samples_table,
}


CSV_ROWS = 20_000  # rows formatted at a time


def _cells(column: Column, start: int, stop: int) -> list[str]:
    values = column.values[start:stop]
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        digits = column.decimals if column.decimals is not None else 6
        return ["" if math.isnan(v) else f"{v:.{digits}f}" for v in values.tolist()]
    items = values.tolist() if isinstance(values, np.ndarray) else values
    return ["" if v is None else str(v) for v in items]


def write_csv(table: Table, path: Path) -> None:
    rows = len(table[0].values) if table else 0
    with atomic_text(path) as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([c.name for c in table])
        for start in range(0, rows, CSV_ROWS):
            writer.writerows(zip(*(_cells(c, start, start + CSV_ROWS) for c in table)))


def write_parquet(table: Table, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for c in table:
        values = c.values
        if isinstance(values, np.ndarray):
            arrays[c.name] = pa.array(values, from_pandas=False)
        else:
            arrays[c.name] = pa.array(list(values))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(pa.table(arrays), tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


class Tables(Exporter):
    directory = True

    def __init__(self, name: str, extension: str, writer: Callable[[Table, Path], None]) -> None:
        self.name = name
        self.suffix = f"-{name}"
        self.extension = extension
        self.writer = writer
        self.opens_with = f"read it with pandas: pandas.read_{name}('DIR/steps.{extension}')"

    def write(self, data: ExportData, dest: Path) -> list[Path]:
        if str(dest) == "-":
            raise ExportError(f"--format {self.name} writes a directory of tables, not a stream")
        if self.name == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ExportError(
                    "--format parquet needs pyarrow, which is not installed",
                    hint="pip install pyarrow (or use --format csv)",
                ) from None
        if dest.exists() and not dest.is_dir():
            raise ExportError(f"{dest} is a file; --format {self.name} writes a directory")
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"cannot create {dest}: {exc.strerror or exc}") from exc
        written = []
        for name, build in TABLES.items():
            data.progress(f"writing {name}")
            path = dest / f"{name}.{self.extension}"
            self.writer(build(data), path)
            written.append(path)
        return written


EXPORTERS = {
    "csv": Tables("csv", "csv", write_csv),
    "parquet": Tables("parquet", "parquet", write_parquet),
}
