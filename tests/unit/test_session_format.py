"""The session format: writer and reader agree, damage is skipped, newer versions are refused."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from probe.errors import NotASession, SessionNotFound, SessionVersionError
from probe.session import format as fmt
from probe.session.meta import new_meta, write_meta
from probe.session.reader import Session, numpy_dtype, read_record_file
from probe.session.writer import RecordBuffer


def _session(tmp_path: Path) -> Path:
    meta = new_meta(
        kind="doctor",
        name="s",
        argv=["python", "train.py", "--api-key", "hunter2"],
        cwd=str(tmp_path),
        settings={},
        machine={"effective_cores": 2.0},
        environ={"OMP_NUM_THREADS": "4", "HF_TOKEN": "secret"},
    )
    write_meta(tmp_path, meta)
    return tmp_path


def _agent_buffer(directory: Path, pid: int) -> RecordBuffer:
    return RecordBuffer(str(directory), f"agent-{pid}", {"writer": "agent", "pid": pid})


def test_every_kind_matches_its_numpy_dtype() -> None:
    for kind in fmt.KINDS.values():
        assert numpy_dtype(kind).itemsize == kind.struct.size, kind.name


def test_round_trip_across_files_remaps_strings_and_stacks(tmp_path: Path) -> None:
    d = _session(tmp_path)
    a = _agent_buffer(d, 100)
    b = _agent_buffer(d, 200)
    # Each writer interns its own strings; the same text gets different local ids.
    b.intern("padding")
    for buf, pid in ((a, 100), (b, 200)):
        name = buf.intern("eval")
        buf.add(fmt.SPAN, 1_000 + pid, 50, pid, name)
        buf.add(fmt.FRAME, 1, buf.intern("train.py"), buf.intern("main"), 10)
        buf.add(fmt.FRAME, 2, buf.intern("train.py"), buf.intern(f"work{pid}"), 20)
        buf.add(fmt.NODE, 1, 0, 1)
        buf.add(fmt.NODE, 2, 1, 2)
        buf.add(fmt.STACK, 2_000 + pid, pid, 2, 0)
        buf.event({"type": "process", "t": 5, "pid": pid})
        buf.close()
    s = Session(d)
    assert s.warnings == []
    spans = s.table("span")
    assert list(spans["pid"]) == [100, 200]
    assert [s.string(int(x)) for x in spans["name"]] == ["eval", "eval"]
    stacks = s.table("stack")
    leaves = [s.stack_frames(int(x)) for x in stacks["stack"]]
    assert [[f.func for f in frames] for frames in leaves] == [
        ["main", "work100"],
        ["main", "work200"],
    ]
    assert leaves[1][1].line == 20
    assert {e["pid"] for e in s.events_of("process")} == {100, 200}


def test_tables_are_sorted_by_time(tmp_path: Path) -> None:
    d = _session(tmp_path)
    buf = _agent_buffer(d, 1)
    for t in (30, 10, 20):
        buf.add(fmt.GC, t, 5, 1, 2, 0, 0)
    buf.close()
    assert list(Session(d).table("gc")["t"]) == [10, 20, 30]


def test_empty_kinds_are_empty_tables_with_columns(tmp_path: Path) -> None:
    s = Session(_session(tmp_path))
    assert len(s.table("step")) == 0
    assert "pid" in s.table("step")
    assert s.table("proc")["rss"].dtype == np.int64
    assert not s.has_agent_data


@pytest.mark.parametrize("cut", [1, 7, 19, 25, 40])
def test_torn_tail_is_skipped_with_a_warning(tmp_path: Path, cut: int) -> None:
    d = _session(tmp_path)
    buf = _agent_buffer(d, 1)
    buf.add(fmt.STEP, 10, 1, 1, 1, 0, 1)
    buf.flush()
    buf.add(fmt.STEP, 20, 1, 1, 1, 0, 2)
    buf.close()
    path = next(d.glob("agent-*.rec"))
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - cut)
    s = Session(d)
    assert list(s.table("step")["t"]) == [10]
    assert any("skipped" in w for w in s.warnings)


def test_corrupt_chunk_is_detected_by_crc(tmp_path: Path) -> None:
    d = _session(tmp_path)
    buf = _agent_buffer(d, 1)
    buf.add(fmt.STEP, 10, 1, 1, 1, 0, 1)
    buf.flush()
    buf.add(fmt.STEP, 20, 1, 1, 1, 0, 2)
    buf.close()
    path = next(d.glob("agent-*.rec"))
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    s = Session(d)
    assert list(s.table("step")["t"]) == [10]
    assert s.warnings


def test_newer_major_version_is_refused(tmp_path: Path) -> None:
    d = _session(tmp_path)
    meta = json.loads((d / "meta.json").read_text())
    meta["format"] = [fmt.FORMAT_MAJOR + 1, 0]
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SessionVersionError, match=r"format 2\.0"):
        Session(d)


def test_newer_major_record_file_is_refused(tmp_path: Path) -> None:
    d = _session(tmp_path)
    head = b"{}"
    (d / "agent-1.rec").write_bytes(
        fmt.FILE_HEADER.pack(fmt.FILE_MAGIC, fmt.FORMAT_MAJOR + 1, 0, len(head)) + head
    )
    with pytest.raises(SessionVersionError):
        Session(d)


def test_newer_minor_version_with_unknown_kind_is_read(tmp_path: Path) -> None:
    d = _session(tmp_path)
    buf = _agent_buffer(d, 1)
    buf.add(fmt.STEP, 10, 1, 1, 1, 0, 1)
    buf.close()
    path = next(d.glob("agent-*.rec"))
    payload = b"\x00" * 12
    import zlib

    chunk = fmt.CHUNK_HEADER.pack(fmt.CHUNK_MAGIC, 999, 0, 1, len(payload), zlib.crc32(payload))
    with open(path, "ab") as f:
        f.write(chunk + payload)
    s = Session(d)
    assert len(s.table("step")) == 1
    assert s.warnings == []


def test_not_a_session(tmp_path: Path) -> None:
    with pytest.raises(SessionNotFound):
        Session(tmp_path / "missing")
    with pytest.raises(NotASession, match="not a probe session"):
        Session(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(NotASession):
        Session(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"schema": "something else"}))
    with pytest.raises(NotASession):
        Session(tmp_path)


def test_foreign_rec_file_is_refused(tmp_path: Path) -> None:
    d = _session(tmp_path)
    (d / "agent-9.rec").write_bytes(b"GIF89a" + os.urandom(64))
    with pytest.raises(NotASession):
        Session(d)


def test_meta_keeps_no_secrets(tmp_path: Path) -> None:
    meta = json.loads((_session(tmp_path) / "meta.json").read_text())
    assert meta["argv"] == ["python", "train.py", "--api-key", "***"]
    assert meta["env"] == {"OMP_NUM_THREADS": "4"}


def test_writer_creates_distinct_files_for_the_same_prefix(tmp_path: Path) -> None:
    d = _session(tmp_path)
    a = _agent_buffer(d, 7)
    b = _agent_buffer(d, 7)
    a.add(fmt.STEP, 1, 1, 1, 1, 0, 1)
    b.add(fmt.STEP, 2, 1, 1, 1, 0, 1)
    a.close()
    b.close()
    assert a.path != b.path
    assert len(Session(d).table("step")) == 2


def test_chunk_layout_is_documented_size(tmp_path: Path) -> None:
    d = _session(tmp_path)
    buf = _agent_buffer(d, 1)
    buf.add(fmt.STEP, 10, 1, 1, 1, 0, 1)
    buf.close()
    data = read_record_file(next(d.glob("agent-*.rec")))
    assert data.pid == 1
    assert data.writer == "agent"
    (payload,) = data.chunks[fmt.STEP.code]
    assert struct.unpack("<qiBIqq", payload) == (10, 1, 1, 1, 0, 1)
