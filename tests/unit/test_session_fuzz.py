"""The session reader on damaged sessions: truncated, corrupted, reordered, duplicated chunks,
garbage between them, a damaged header. Seeded, so every case can be replayed. Each one reads
partially (with warnings) or is refused with a clear message; none ends in a traceback."""

from __future__ import annotations

import json
import random
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from probe.cli import main
from probe.errors import SessionError
from probe.session import format as fmt
from probe.session.meta import new_meta, write_meta
from probe.session.reader import Session
from probe.session.writer import RecordBuffer
from tests.unit.synthetic_runs import Run

CASES = 400


def _base(directory: Path) -> None:
    """A small session with every kind of content, flushed often (many chunks)."""
    directory.mkdir()
    meta = new_meta(kind="doctor", name="s", argv=["python"], cwd=".", settings={}, machine={})
    write_meta(directory, meta)
    agent = RecordBuffer(str(directory), "agent-100", {"writer": "agent", "pid": 100})
    sampler = RecordBuffer(str(directory), "sampler", {"writer": "sampler", "pid": 1})
    t0 = meta["start"]["monotonic_ns"]
    agent.event({"type": "process", "t": t0, "pid": 100, "main_tid": 100, "argv": ["python"]})
    for i in range(40):
        t = t0 + i * 50_000_000
        agent.add(fmt.STEP, t, 100, 1, 1, 1000, i + 1)
        agent.add(fmt.WAIT, t - 10, 10, 100, 1, 0)
        agent.add(fmt.GC, t - 20, 5, 100, 2, 3, 0)
        fid = agent.intern(f"f{i % 7}.py")
        func = agent.intern(f"func{i % 5}")
        agent.add(fmt.FRAME, i + 1, fid, func, i)
        agent.add(fmt.NODE, i + 1, i, i + 1)
        agent.add(fmt.STACK, t, 100, i + 1, ord("R"))
        agent.add(fmt.SPAN, t - 30, 30, 100, agent.intern("eval"))
        agent.event({"type": "optimizer", "t": t, "opt": 1, "class": "SGD"})
        sampler.add(
            fmt.PROC, t, 100, 1, ord("R"), i * 1000, 0, 0, 0, 1 << 20, 1 << 19, 3, 0, 0, 0, 0, 0, 0
        )
        sampler.add(fmt.THREAD, t, 100, 101, i * 900, 0, 0, sampler.intern("pt_main_thread"))
        sampler.add(fmt.SYSTEM, t, i, i, i, 0, 0, 1, 0, 1 << 30, 1 << 29, -1, 0, 0)
        if i % 3 == 2:
            agent.flush()
            sampler.flush()
    agent.close()
    sampler.close()


def _chunks(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """Where the header ends, and each chunk's (start, end), as far as they can be followed
    (a mutation before this one may have damaged the rest)."""
    _m, _a, _b, head_len = fmt.FILE_HEADER.unpack_from(data, 0)
    head = min(fmt.FILE_HEADER.size + head_len, len(data))
    pos = head
    spans = []
    while len(data) - pos >= fmt.CHUNK_HEADER.size:
        *_x, nbytes, _crc = fmt.CHUNK_HEADER.unpack_from(data, pos)
        end = pos + fmt.CHUNK_HEADER.size + nbytes
        if end > len(data):
            break
        spans.append((pos, end))
        pos = end
    return head, spans


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def flip(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def reorder(rng: random.Random, data: bytes) -> bytes:
    head, spans = _chunks(data)
    if not spans:
        return data
    parts = [data[a:b] for a, b in spans]
    rng.shuffle(parts)
    return data[:head] + b"".join(parts) + data[spans[-1][1] :]


def duplicate(rng: random.Random, data: bytes) -> bytes:
    head, spans = _chunks(data)
    if not spans:
        return data
    parts = [data[a:b] for a, b in spans]
    i = rng.randrange(len(parts))
    parts.insert(rng.randrange(len(parts) + 1), parts[i])
    return data[:head] + b"".join(parts) + data[spans[-1][1] :]


def garbage(rng: random.Random, data: bytes) -> bytes:
    head, spans = _chunks(data)
    at = rng.choice([a for a, _ in spans] + [rng.randrange(head, len(data) + 1)])
    noise = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
    if rng.random() < 0.3:  # noise that looks like the start of a chunk
        noise = fmt.CHUNK_HEADER.pack(fmt.CHUNK_MAGIC, 22, 0, 5, 165, 0) + noise
    return data[:at] + noise + data[at:]


def zero(rng: random.Random, data: bytes) -> bytes:
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, 2000))
    return data[:a] + bytes(b - a) + data[b:]


def repayload(rng: random.Random, data: bytes) -> bytes:
    """A chunk whose payload is damaged in a way its CRC cannot see (rewritten with it)."""
    _head, spans = _chunks(data)
    if not spans:
        return data
    a, b = rng.choice(spans)
    magic, kind, flags, count, nbytes, _crc = fmt.CHUNK_HEADER.unpack_from(data, a)
    if kind in fmt.JSON_KINDS and rng.random() < 0.6:
        payload = rng.choice(
            [
                b"[1, 2",
                b"{}",
                b"[]",
                b'{"a": 1}',
                b"[1, null, {}]",
                b'{"7": 5}',
                b'"x"',
                b"\xff\xfe",
            ]
        )
    else:
        payload = bytes(rng.randrange(256) for _ in range(nbytes))
    header = fmt.CHUNK_HEADER.pack(magic, kind, flags, count, len(payload), zlib.crc32(payload))
    return data[:a] + header + payload + data[b:]


def header(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    at = rng.randrange(fmt.FILE_HEADER.size + 64)
    out[at] = rng.randrange(256)
    return bytes(out)


MUTATIONS: list[Callable[[random.Random, bytes], bytes]] = [
    truncate,
    flip,
    reorder,
    duplicate,
    garbage,
    zero,
    repayload,
    header,
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz") / "base"
    _base(directory)
    return directory


def _open(directory: Path) -> Session | SessionError:
    try:
        return Session(directory)
    except SessionError as exc:
        return exc


def _read_everything(session: Session) -> None:
    for kind in fmt.KINDS.values():
        table = session.table(kind.name)
        for column in table.columns.values():
            assert len(column) == len(table)
    for sid in session.table("stack")["stack"][:50]:
        for frame in session.stack_frames(int(sid)):
            str(frame)
    list(session.events_of("optimizer"))
    assert session.end_ns >= session.start_ns
    for loss in session.losses:
        loss.lines(session.start_ns)


def test_damaged_record_files_read_partially_or_are_refused_clearly(
    base: Path, tmp_path: Path
) -> None:
    clean = {p.name: p.read_bytes() for p in base.glob("*.rec")}
    outcomes = {"read": 0, "warned": 0, "refused": 0}
    for seed in range(CASES):
        rng = random.Random(seed)
        case = tmp_path / f"case-{seed}"
        shutil.copytree(base, case)
        for name in rng.sample(sorted(clean), rng.randint(1, len(clean))):
            data = clean[name]
            for mutate in rng.sample(MUTATIONS, rng.randint(1, 3)):
                if len(data) > fmt.FILE_HEADER.size + 64:
                    data = mutate(rng, data)
            (case / name).write_bytes(data)
        session = _open(case)
        if isinstance(session, SessionError):  # a clear sentence, never a traceback
            assert session.message and "\n" not in session.message, (seed, session.message)
            outcomes["refused"] += 1
        else:
            _read_everything(session)
            outcomes["warned" if session.warnings else "read"] += 1
        shutil.rmtree(case)
    # The cases did exercise damage: most read partially with a warning.
    assert outcomes["warned"] > CASES / 2, outcomes


def test_a_damaged_meta_json_is_refused_clearly(base: Path, tmp_path: Path) -> None:
    text = (base / "meta.json").read_text()
    for seed in range(100):
        rng = random.Random(seed)
        case = tmp_path / f"meta-{seed}"
        shutil.copytree(base, case)
        cut = text[: rng.randrange(len(text))] if rng.random() < 0.5 else text
        doc = cut
        if rng.random() < 0.5:
            try:
                meta = json.loads(cut)
                key = rng.choice(sorted(meta))
                meta[key] = rng.choice([None, 7, "x", [], {}])
                doc = json.dumps(meta)
            except ValueError:
                pass
        (case / "meta.json").write_text(doc)
        session = _open(case)
        if isinstance(session, SessionError):
            assert session.message
        else:
            _read_everything(session)
        shutil.rmtree(case)


@pytest.mark.parametrize("seed", range(4))
def test_probe_report_on_a_damaged_session_never_fails_inside(
    seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "s"
    Run(duration=6.0).build(directory)
    rng = random.Random(seed)
    for path in sorted(directory.glob("*.rec")):
        data = path.read_bytes()
        for mutate in (truncate, flip, reorder, garbage)[seed : seed + 2]:
            data = mutate(rng, data)
        path.write_bytes(data)
    status = main(["report", str(directory), "--no-open", "--json", str(tmp_path / "v.json")])
    err = capsys.readouterr().err
    assert "internal error" not in err and "Traceback" not in err
    assert status in (0, 1), err
    if status == 0:
        assert json.loads((tmp_path / "v.json").read_text())["schema"] == "probe.diagnosis/1"
    else:
        assert "probe: error:" in err
