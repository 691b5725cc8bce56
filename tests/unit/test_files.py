"""Shared writes: a reader sees the old file or the new one, and no temporary file is left."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from probe.files import write_atomic


def test_writes_text_and_bytes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    write_atomic(target, "first ✓")
    assert target.read_text(encoding="utf-8") == "first ✓"
    write_atomic(str(target), b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_a_failed_rename_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # a directory cannot be replaced by a file
    (target / "inside").write_text("x")
    with pytest.raises(IsADirectoryError):
        write_atomic(target, "text")
    assert target.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_an_unwritable_directory_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "file.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_the_file_gets_the_usual_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "meta.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "meta.json").stat().st_mode) == 0o644


def test_threads_writing_one_file_never_leave_half_a_file(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    texts = [str(k) * 20_000 for k in range(8)]
    threads = [threading.Thread(target=write_atomic, args=(target, t)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in texts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_a_link_at_the_temporary_name_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    target = tmp_path / "status.json"
    link = tmp_path / f".status.json.{os.getpid()}.{threading.get_ident()}.tmp"
    link.symlink_to(victim)
    with pytest.raises(OSError, match=r"symbolic link|Too many levels"):
        write_atomic(target, "{}")
    assert victim.read_text() == "keep" and not target.exists()


def test_a_device_or_a_pipe_is_written_to_not_replaced(tmp_path: Path) -> None:
    """`--json /dev/null` once replaced /dev/null with a regular file."""
    write_atomic(os.devnull, "{}")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write_atomic(fifo, "through the pipe")
    reader.join(timeout=10)
    assert got == [b"through the pipe"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
