"""Reading a session while it is recorded (probe.session.preread, records.RecordFileReader) gives
exactly what one full read at the end gives: the same record file data, the same session table
for table, the same diagnosis; whatever the moments it read at, whatever the file's tail (a
chunk torn by a crash, damage, a header rewritten in place to note a loss, a file replaced)."""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from probe.analysis.diagnosis import diagnose
from probe.report.renderer import Outputs, renderer
from probe.session import format as fmt
from probe.session.preread import Preread
from probe.session.reader import Session
from probe.session.records import RecordFileData, RecordFileReader, read_record_file
from probe.session.writer import RecordBuffer, RecordFile
from tests.unit.synthetic_runs import Run
from tests.unit.test_session_fuzz import MUTATIONS, _base


def same_file_data(a: RecordFileData, b: RecordFileData) -> None:
    assert a.path == b.path
    assert a.header == b.header
    assert a.chunks == b.chunks and list(a.chunks) == list(b.chunks)
    assert a.strings == b.strings
    assert a.events == b.events
    assert a.warnings == b.warnings


def same_session(a: Session, b: Session) -> None:
    """Table for table, column for column (values and types), and all else the reader gives."""
    assert list(a._tables) == list(b._tables)
    for name, table in a._tables.items():
        other = b.table(name)
        assert list(table.columns) == list(other.columns), name
        for column, values in table.columns.items():
            assert values.dtype == other[column].dtype, (name, column)
            assert np.array_equal(values, other[column]), (name, column)
    assert a.strings == b.strings
    assert a.events == b.events
    assert a.warnings == b.warnings
    assert a.meta == b.meta and a.faults == b.faults
    assert [f.header for f in a.files] == [f.header for f in b.files]
    assert a.losses == b.losses
    for name in ("node_parent", "node_frame", "frame_file", "frame_func", "frame_line"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


class Growing:
    """A copy of a finished session that grows to it piece by piece, as if recorded again: the
    files appear one after another and gain a random number of bytes at a time (so chunks are
    often cut in the middle); ``step`` appends one piece."""

    def __init__(self, source: Path, target: Path, rng: random.Random, pieces: int = 40) -> None:
        self.target = target
        self.rng = rng
        target.mkdir()
        shutil.copy(source / "meta.json", target / "meta.json")
        self.left = {p.name: p.read_bytes() for p in sorted(source.glob("*.rec"))}
        self.piece = max(1, max(len(v) for v in self.left.values()) // pieces)
        self.order = list(self.left)
        rng.shuffle(self.order)

    def step(self) -> bool:
        """Write one piece to one file (a new one now and then); False once all is written."""
        names = [n for n in self.order if self.left[n]]
        if not names:
            return False
        started = [n for n in names if (self.target / n).exists()]
        name = self.rng.choice(started) if started and self.rng.random() < 0.8 else names[0]
        data = self.left[name]
        n = self.rng.randint(1, 2 * self.piece)
        with open(self.target / name, "ab") as f:
            f.write(data[:n])
        self.left[name] = data[n:]
        return True


def _mutated_file(tmp_path: Path, base: Path, seed: int) -> tuple[Path, bytes]:
    rng = random.Random(seed)
    source = rng.choice(sorted(base.glob("*.rec")))
    data = source.read_bytes()
    mutation = MUTATIONS[seed % (len(MUTATIONS) + 1) - 1] if seed % (len(MUTATIONS) + 1) else None
    if mutation is not None:
        data = mutation(rng, data)
    return tmp_path / source.name, data


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("preread") / "base"
    _base(directory)
    return directory


@pytest.mark.parametrize("seed", range(120))
def test_a_file_read_as_it_grows_reads_as_the_whole_file(
    base: Path, tmp_path: Path, seed: int
) -> None:
    """Advanced at random moments with random limits, then finished: what read_record_file says
    of the final file. Every mutation of the damage tests (a truncated, torn or corrupted tail,
    garbage or zeros in the middle, a damaged header, chunks reordered or duplicated) and the
    clean file; and finishing midway is a full read of the file as it is then."""
    rng = random.Random(seed)
    path, final = _mutated_file(tmp_path, base, seed)
    reader = RecordFileReader(path)
    written = 0
    while written < len(final):
        written = min(len(final), written + rng.randint(1, 400))
        path.write_bytes(final[:written])
        if rng.random() < 0.7:
            try:
                reader.advance(rng.choice([64, 1000, 1 << 20]))
            except OSError:
                pass
        if rng.random() < 0.1:  # finish() now is a full read now, and changes nothing
            try:
                expected = read_record_file(path)
            except Exception as exc:
                with pytest.raises(type(exc)):
                    reader.finish()
            else:
                same_file_data(reader.finish()[0], expected)
    try:
        expected = read_record_file(path)
    except Exception as exc:  # refused (not a record file, a newer format): refused alike
        with pytest.raises(type(exc)):
            reader.finish()
        return
    same_file_data(reader.finish()[0], expected)


def test_a_header_rewritten_in_place_to_note_a_loss_is_read_again(tmp_path: Path) -> None:
    f = RecordFile(str(tmp_path), "agent-1", {"writer": "agent", "pid": 1})
    payload = np.zeros(3, dtype=[("t", "<i8"), ("dur", "<i8"), ("tid", "<i4"), ("name", "<u4")])
    f.write_chunk(fmt.SPAN.code, 3, payload.tobytes())
    reader = RecordFileReader(Path(f.path))
    assert reader.advance() > 0
    assert f.note({"dropped": {"stack": 12}})
    f.write_chunk(fmt.SPAN.code, 3, payload.tobytes())
    f.close()
    data, continued = reader.finish()
    assert continued and data.lost == {"dropped": {"stack": 12}}
    same_file_data(data, read_record_file(Path(f.path)))


def test_a_file_replaced_under_the_reader_is_read_from_its_start(
    base: Path, tmp_path: Path
) -> None:
    source = base / "agent-100.rec"
    path = tmp_path / "agent-100.rec"
    path.write_bytes(source.read_bytes())
    reader = RecordFileReader(path)
    assert reader.advance() > 0
    path.unlink()
    sampler = (base / "sampler.rec").read_bytes()
    path.write_bytes(sampler[: len(sampler) // 2])  # another file, shorter, same name
    reader.advance()
    assert reader.restarts == 1
    same_file_data(reader.finish()[0], read_record_file(path))


def _pre_read(growing: Growing, preread: Preread, rng: random.Random) -> None:
    while growing.step():
        if rng.random() < 0.3:
            preread.advance(rng.choice([512, 20_000, 1 << 20]))


@pytest.mark.parametrize("seed", range(6))
def test_a_session_read_while_it_is_recorded_is_the_session_read_at_the_end(
    tmp_path: Path, seed: int
) -> None:
    """A session with every stage's data (two processes' agents, DataLoader workers, stacks,
    GC, spans), grown piece by piece under a pre-read: the same session as a full read, and the
    same diagnosis JSON byte for byte."""
    Run(duration=20.0, stall_every=40, stall=0.6, gc_every=2.0, gc_pause=0.05).build(tmp_path / "s")
    rng = random.Random(seed)
    growing = Growing(tmp_path / "s", tmp_path / "copy", rng)
    preread = Preread(tmp_path / "copy")
    _pre_read(growing, preread, rng)
    assert preread.parsed > 0 and preread.held > 0
    pre = preread.session()
    full = Session(tmp_path / "copy")
    same_session(pre, full)
    outputs = Outputs(session_dir=tmp_path / "copy")
    pre_json = renderer("json").render(diagnose(pre), outputs)
    assert json.loads(pre_json)["category"] == "periodic-stall"  # a verdict, not just any output
    assert pre_json == renderer("json").render(diagnose(full), outputs)


def test_a_crashed_run_whose_last_chunks_are_torn_reads_the_same(tmp_path: Path) -> None:
    """The training process killed in the middle of a write: its file ends in half a chunk,
    and the sampler's in a chunk header; the pre-read stopped before both."""
    Run(duration=12.0).build(tmp_path / "s")
    for name, cut in (("agent-100.rec", 1000), ("sampler.rec", 30)):
        path = tmp_path / "s" / name
        path.write_bytes(path.read_bytes()[:-cut])
    rng = random.Random(7)
    growing = Growing(tmp_path / "s", tmp_path / "copy", rng)
    preread = Preread(tmp_path / "copy")
    _pre_read(growing, preread, rng)
    pre = preread.session()
    full = Session(tmp_path / "copy")
    assert any("torn or damaged" in w or "truncated" in w for w in full.warnings)
    same_session(pre, full)


def test_at_its_cap_it_stops_and_keeps_what_it_holds(tmp_path: Path) -> None:
    Run(duration=12.0).build(tmp_path / "s")
    rng = random.Random(3)
    growing = Growing(tmp_path / "s", tmp_path / "copy", rng)
    preread = Preread(tmp_path / "copy", max_bytes=200_000)
    _pre_read(growing, preread, rng)
    assert preread.stopped and preread.held > 200_000
    parsed = preread.parsed
    assert preread.advance() == 0 and preread.parsed == parsed  # no further
    same_session(preread.session(), Session(tmp_path / "copy"))


def test_let_go_it_holds_nothing_and_the_end_reads_it_all(tmp_path: Path) -> None:
    Run(duration=12.0).build(tmp_path / "s")
    rng = random.Random(4)
    growing = Growing(tmp_path / "s", tmp_path / "copy", rng)
    preread = Preread(tmp_path / "copy")
    _pre_read(growing, preread, rng)
    preread.release("memory got short")
    assert preread.held == 0 and preread.summary()["stopped"] == "memory got short"
    same_session(preread.session(), Session(tmp_path / "copy"))


def test_the_files_it_gives_the_recorder_are_a_full_reads(tmp_path: Path) -> None:
    Run(duration=12.0).build(tmp_path / "s")
    rng = random.Random(5)
    growing = Growing(tmp_path / "s", tmp_path / "copy", rng)
    preread = Preread(tmp_path / "copy")
    _pre_read(growing, preread, rng)
    files = preread.files()
    expected = [read_record_file(p) for p in sorted((tmp_path / "copy").glob("*.rec"))]
    assert len(files) == len(expected)
    for got, want in zip(files, expected):
        want.chunks = {}
        same_file_data(got, want)
    same_session(preread.session(), Session(tmp_path / "copy"))  # files() changed nothing


def test_while_writers_write_with_their_own_flushes(tmp_path: Path) -> None:
    """Real writers (RecordBuffer) flushing from a thread while it reads: the same session."""
    directory = tmp_path / "s"
    directory.mkdir()
    _base_meta(directory)
    preread = Preread(directory)
    done = threading.Event()

    def write() -> None:
        agent = RecordBuffer(str(directory), "agent-100", {"writer": "agent", "pid": 100})
        sampler = RecordBuffer(str(directory), "sampler", {"writer": "sampler", "pid": 1})
        for i in range(3000):
            t = 1_000_000_000 + i * 1_000_000
            agent.add(fmt.STEP, t, 100, 1, 1, 1000, i + 1)
            agent.add(fmt.SPAN, t - 30, 30, 100, agent.intern(f"span{i % 13}"))
            sampler.add(fmt.THREAD, t, 100, 101, i * 900, 0, 0, sampler.intern(f"th{i % 5}"))
            if i % 50 == 0:
                agent.flush()
                sampler.flush()
                time.sleep(0.002)  # the reader's turn, now and then
        agent.close()
        sampler.close()
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():
        preread.advance()
    writer.join()
    assert preread.advances > 1
    same_session(preread.session(), Session(directory))


def _base_meta(directory: Path) -> None:
    from probe.session.meta import new_meta, write_meta

    meta = new_meta(kind="doctor", name="s", argv=["python"], cwd=".", settings={}, machine={})
    meta["start"]["monotonic_ns"] = 1_000_000_000
    write_meta(directory, meta)


def _recording_with_an_agent(tmp_path: Path) -> tuple[Any, Path]:
    from probe.recorder import Recording, Settings

    recording = Recording.create(
        dest=tmp_path, name="r", force=False, kind="doctor", argv=["python"], settings=Settings()
    )
    agent = RecordBuffer(str(recording.directory), "agent-7", {"writer": "agent", "pid": 7})
    agent.event({"type": "torch", "t": 1, "version": "9.9.9"})
    agent.add(fmt.STEP, 1, 7, 1, 1, 10, 1)
    agent.close()
    return recording, recording.directory


@pytest.mark.parametrize("reader", ["pre-read", "failing"])
def test_the_recorder_reads_the_end_of_the_run_from_it_or_itself(
    tmp_path: Path, reader: str
) -> None:
    """What the recorder takes from the record files at the end (the torch version, the
    losses) is the same from the pre-read's files as from its own read, and a pre-read that
    fails costs nothing: the recorder reads them itself."""
    recording, directory = _recording_with_an_agent(tmp_path)
    preread = Preread(directory)
    preread.advance()

    def failing() -> list[RecordFileData]:
        raise RuntimeError("broken")

    recording.finish(
        status="finished",
        exit_code=0,
        signal=None,
        files=preread.files if reader == "pre-read" else failing,
    )
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["torch"] == "9.9.9" and meta["status"] == "finished"


def test_a_failing_pre_read_costs_the_analysis_time_not_the_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from probe.cli.common import analyse

    Run(duration=12.0).build(tmp_path / "s")
    preread = Preread(tmp_path / "s")
    preread.advance()

    def broken(meta: Any = None) -> Session:
        raise RuntimeError("broken")

    monkeypatch.setattr(preread, "session", broken)
    got = analyse(tmp_path / "s", preread=preread)
    outputs = Outputs(session_dir=tmp_path / "s")
    expected = diagnose(Session(tmp_path / "s"))
    assert renderer("json").render(got, outputs) == renderer("json").render(expected, outputs)
    assert "reading the session ahead failed: RuntimeError: broken" in capsys.readouterr().err
