"""The record writer under faults: a full disk, a file closed or removed under it, a write that
blocks. It never raises, writes less (stacks first), and its file says what it lost."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from probe.session import format as fmt
from probe.session import recordfile, writer
from probe.session.meta import new_meta, write_meta
from probe.session.reader import Session
from probe.session.records import read_record_file
from probe.session.writer import RecordBuffer


@pytest.fixture
def session_dir(tmp_path: Path) -> Path:
    write_meta(
        tmp_path,
        new_meta(kind="doctor", name="x", argv=[], cwd=".", settings={}, machine={}),
    )
    return tmp_path


class Disk:
    """A filesystem of ``limit`` bytes for the record files: a write past it is cut short, and
    the next one fails with ``error`` (as a full disk or RLIMIT_FSIZE would)."""

    def __init__(self, limit: int, error: int = errno.ENOSPC) -> None:
        self.limit = limit
        self.error = error
        self.failures = 0

    def write(self, fd: int, data: Any) -> int:
        room = self.limit - os.fstat(fd).st_size
        if room <= 0:
            self.failures += 1
            raise OSError(self.error, os.strerror(self.error))
        return os.write(fd, bytes(data[:room]))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    now = [1_000_000_000]
    monkeypatch.setattr(writer, "_now", lambda: now[0])
    return now


def _agent(directory: Path) -> RecordBuffer:
    return RecordBuffer(str(directory), "agent-1", {"writer": "agent", "pid": 1})


def _round(buf: RecordBuffer, t: int, *, stacks: int = 50) -> None:
    """One flush interval's records: a step, and ``stacks`` stack samples with their trie."""
    buf.add(fmt.STEP, t, 1, 1, 1, 0, t)
    for i in range(stacks):
        node = t * 1000 + i + 1
        buf.add(fmt.NODE, node, 0, 1)
        buf.add(fmt.STACK, t, 1, node, 0)


def test_a_full_disk_drops_stacks_first_and_keeps_the_file_whole(
    session_dir: Path, monkeypatch: pytest.MonkeyPatch, clock: list[int]
) -> None:
    disk = Disk(limit=6000)
    monkeypatch.setattr(recordfile, "_os_write", disk.write)
    buf = _agent(session_dir)
    t = 0
    while buf.level == writer.FULL:
        t += 1
        _round(buf, t)
        clock[0] += 200_000_000
        buf.flush()  # never raises
    stacks_lost_at = t
    assert buf.level == writer.LEAN and not buf.keeps_stacks
    # The torn chunk was cut off again: the file ends at its last whole chunk.
    assert os.path.getsize(buf.path or "") == buf.bytes_written <= disk.limit
    # Without stacks, a round is a few dozen bytes: steps go on being written while they fit.
    for _ in range(5):
        t += 1
        _round(buf, t)
        clock[0] += 200_000_000
        buf.flush()
    buf.close()
    session = Session(session_dir)
    assert not [w for w in session.warnings if "damaged" in w or "torn" in w]
    steps = list(session.table("step")["t"])
    assert steps == list(range(1, t + 1))  # every step, before and after the disk filled
    assert session.table("stack")["t"].max() < stacks_lost_at
    (loss,) = session.losses
    assert loss.source == "agent" and loss.pid == 1
    assert [e.what for e in loss.episodes] == ["stacks"]
    assert loss.episodes[0].cause == "No space left on device (ENOSPC)"
    assert loss.dropped["stack"] >= 50
    assert any("stack samples were not recorded from" in w for w in session.warnings)


def test_writing_pauses_when_nothing_fits_and_resumes_when_space_returns(
    session_dir: Path, monkeypatch: pytest.MonkeyPatch, clock: list[int]
) -> None:
    disk = Disk(limit=3000, error=errno.EFBIG)
    monkeypatch.setattr(recordfile, "_os_write", disk.write)
    buf = _agent(session_dir)
    t = 0
    while buf.level < writer.PAUSED:
        t += 1
        _round(buf, t, stacks=0)
        buf.add(fmt.GC, t, 5, 1, 2, 0, 0)
        clock[0] += 200_000_000
        buf.flush()
    paused_at = t
    failures = disk.failures
    for _ in range(10):  # within RETRY_NS: dropped and counted, not even tried
        t += 1
        _round(buf, t, stacks=0)
        clock[0] += 200_000_000
        buf.flush()
    assert disk.failures == failures
    disk.limit = 1 << 20  # space came back
    clock[0] += writer.RETRY_NS
    t += 1
    _round(buf, t, stacks=0)
    buf.flush()
    assert buf.level == writer.LEAN
    buf.close()
    session = Session(session_dir)
    steps = set(session.table("step")["t"].tolist())
    assert t in steps and paused_at + 1 not in steps
    (loss,) = session.losses
    episode = next(e for e in loss.episodes if e.what == "all")
    assert episode.until_ns is not None  # it ended: writing resumed
    assert "File too large (EFBIG)" in episode.cause
    assert loss.dropped["step"] >= 10


def test_a_descriptor_closed_under_the_writer_is_never_written_again(
    session_dir: Path, tmp_path: Path
) -> None:
    buf = _agent(session_dir)
    name = buf.intern("worker-thread")
    buf.add(fmt.THREAD, 1, 1, 7, 0, 0, 0, name)
    _round(buf, 1)
    buf.flush()
    first = buf.path or ""
    # The program closes every descriptor it did not open, then opens a file of its own, which
    # gets the same number.
    fd = buf._file._fd if buf._file else -1
    os.close(fd)
    own = tmp_path / "program-output.txt"
    own_fd = os.open(own, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert own_fd == fd
        os.write(own_fd, b"the program's own data\n")
        buf.add(fmt.THREAD, 2, 1, 7, 0, 0, 0, name)
        _round(buf, 2)
        buf.flush()
        buf.close()
    finally:
        os.close(own_fd)
    assert own.read_bytes() == b"the program's own data\n"
    second = buf.path or ""
    assert second != first and second.endswith("agent-1-1.rec")
    head = read_record_file(Path(second)).header
    assert head["continues"] == "agent-1.rec"
    session = Session(session_dir)
    threads = session.table("thread")
    # The new file defines the strings again: names still resolve in it.
    assert [session.string(int(s)) for s in threads["name"]] == ["worker-thread"] * 2
    assert list(session.table("step")["t"]) == [1, 2]
    assert session.table("stack")["t"].tolist() == [1] * 50  # no stacks in the new file
    (loss,) = session.losses
    assert {e.what for e in loss.episodes} == {"file", "stacks"}
    assert any("record file was lost" in w for w in session.warnings)


def test_a_removed_session_stops_writing_without_an_error(session_dir: Path) -> None:
    buf = _agent(session_dir)
    _round(buf, 1)
    buf.flush()
    shutil.rmtree(session_dir)
    _round(buf, 2)
    assert buf.flush()
    assert buf.level == writer.STOPPED
    _round(buf, 3)
    buf.flush()
    assert buf.close()
    lost = buf.lost()
    assert lost is not None and lost["level"] == "stopped"
    assert lost["dropped"]["step"] == 2
    assert not session_dir.exists()  # nothing created again


def test_a_session_removed_before_the_first_write_stops_at_once(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    buf = RecordBuffer(str(gone), "agent-1", {"writer": "agent", "pid": 1})
    _round(buf, 1)
    buf.flush()
    assert buf.level == writer.STOPPED and buf.path is None
    assert not gone.exists()


def test_a_blocked_write_never_blocks_the_threads_that_add_records(
    session_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "MAX_PENDING", 200)
    release = threading.Event()
    entered = threading.Event()
    real_write: Callable[[int, Any], int] = os.write

    def hung(fd: int, data: Any) -> int:  # a network filesystem that stopped answering
        entered.set()
        release.wait(30)
        return real_write(fd, data)

    buf = _agent(session_dir)
    _round(buf, 1, stacks=0)
    buf.flush()
    _round(buf, 2, stacks=0)
    monkeypatch.setattr(recordfile, "_os_write", hung)
    flusher = threading.Thread(target=buf.flush)
    flusher.start()
    try:
        assert entered.wait(10)
        for t in range(2, 1002):  # the program goes on: its hooks add records meanwhile
            buf.add(fmt.STEP, t, 1, 1, 1, 0, t)
        assert len(buf._queues[fmt.STEP.code]) == 200  # bounded: the rest dropped and counted
        # Whoever else wants to write (the program's exit) waits a bounded time, not forever.
        assert buf.flush(timeout=0.05) is False
        assert buf.close(timeout=0.05) is False
    finally:
        release.set()
        flusher.join(10)
    monkeypatch.setattr(recordfile, "_os_write", real_write)
    buf.close()
    session = Session(session_dir)
    assert len(session.table("step")) == 202  # the first two, and the 200 held
    (loss,) = session.losses
    assert loss.dropped == {"step": 800}
    assert [e.what for e in loss.episodes] == ["overflow"]
    assert any("writing did not keep up" in w for w in session.warnings)


def test_a_torn_chunk_that_could_not_be_cut_off_costs_only_itself(session_dir: Path) -> None:
    buf = _agent(session_dir)
    buf.add(fmt.STEP, 1, 1, 1, 1, 0, 1)
    buf.flush()
    path = Path(buf.path or "")
    with open(path, "ab") as f:  # a torn chunk: its header promises more than follows
        f.write(fmt.CHUNK_HEADER.pack(fmt.CHUNK_MAGIC, fmt.STEP.code, 0, 9, 297, 0) + b"x" * 40)
    buf.add(fmt.STEP, 2, 1, 1, 1, 0, 2)
    buf.close()
    session = Session(session_dir)
    assert list(session.table("step")["t"]) == [1, 2]
    assert any("damaged records at offset" in w for w in session.warnings)


def test_the_note_of_what_was_lost_needs_no_new_space(
    session_dir: Path, monkeypatch: pytest.MonkeyPatch, clock: list[int]
) -> None:
    disk = Disk(limit=0)
    buf = _agent(session_dir)
    _round(buf, 1)
    buf.flush()
    disk.limit = os.path.getsize(buf.path or "")  # the disk is full from here on
    monkeypatch.setattr(recordfile, "_os_write", disk.write)
    for t in range(2, 30):
        _round(buf, t)
        clock[0] += 200_000_000
        buf.flush()
    buf.close()
    assert os.path.getsize(buf.path or "") == disk.limit
    data = read_record_file(Path(buf.path or ""))
    lost = data.lost
    assert lost is not None and lost["level"] == "paused"
    assert lost["dropped"]["step"] == 28
    assert [e["what"] for e in lost["episodes"]] == ["stacks", "all"]


def test_pending_records_are_bounded_but_the_stack_trie_is_not(
    session_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "MAX_PENDING", 10)
    buf = _agent(session_dir)
    for t in range(100):
        buf.add(fmt.STEP, t, 1, 1, 1, 0, t)
    for i in range(100):  # a later stack may need any node: they are never dropped
        buf.add(fmt.NODE, i + 1, 0, 1)
    assert len(buf._queues[fmt.STEP.code]) == 10
    assert len(buf._queues[fmt.NODE.code]) == 100
    buf.close()
    lost = buf.lost()
    assert lost is not None and lost["dropped"] == {"step": 90}
    assert [e["what"] for e in lost["episodes"]] == ["overflow"]


def test_an_event_that_is_not_json_is_dropped_not_the_others(session_dir: Path) -> None:
    buf = _agent(session_dir)
    buf.event({"type": "loader", "t": 1, "workers": 2})
    buf.event({"type": "odd", "t": 2, "by_pair": {(1, 2): 3}})  # a key JSON cannot hold
    buf.event({"type": "exit", "t": 3})
    buf.close()
    session = Session(session_dir)
    assert [e["type"] for e in session.events] == ["loader", "exit"]
    (loss,) = session.losses
    assert loss.dropped == {"events": 1}
