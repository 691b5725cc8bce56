"""The outside sampler keeps its /proc files open between passes, and lets go of them in time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from probe.collectors.priority import SCAN_EVERY
from probe.collectors.proctree import ProcessTreeSampler, _KeptFiles
from probe.collectors.system import Cgroup
from probe.session import format as fmt
from probe.session.records import read_record_file
from probe.session.writer import RecordBuffer
from tests.waiting import wait_until

# A child with a second thread that ends on the first line of stdin; the process ends on the next.
CHILD = """
import sys, threading
done = threading.Event()
t = threading.Thread(target=done.wait, name="helper")
t.start()
print(t.native_id, flush=True)
sys.stdin.readline()
done.set()
t.join()
print("joined", flush=True)
sys.stdin.readline()
"""


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_files_stay_open_while_their_task_lives_and_close_when_it_ends(tmp_path: Path) -> None:
    fds_before = _open_fds()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    buffer = RecordBuffer(str(tmp_path), "sampler", {"writer": "sampler"})
    sampler = ProcessTreeSampler(buffer, child.pid)
    try:
        helper = int(child.stdout.readline())
        helper_file = f"/proc/{child.pid}/task/{helper}/schedstat"
        sampler.sample()
        kept = set(sampler.files._fds)
        assert f"/proc/{child.pid}/stat" in kept and helper_file in kept
        assert "/proc/stat" in kept
        first = len(sampler.files)
        sampler.sample()  # the same files, re-read: none opened anew
        assert set(sampler.files._fds) == kept and len(sampler.files) == first

        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "joined"
        # join() returns as the thread finishes its Python part; the kernel task ends a moment
        # later, later still on a loaded machine.
        task = Path(f"/proc/{child.pid}/task/{helper}")
        wait_until(lambda: not task.exists(), f"{task} to go")
        sampler.sample()
        assert helper_file not in sampler.files._fds  # the thread ended: its file is closed
        assert f"/proc/{child.pid}/stat" in sampler.files._fds

        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(timeout=10)
        sampler.sample()
        assert not [p for p in sampler.files._fds if p.startswith(f"/proc/{child.pid}/")]
        sampler.finish()
        assert len(sampler.files) == 0
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()
        buffer.close()
    assert _open_fds() <= fds_before | {str(fd) for fd in range(3)}
    data = read_record_file(tmp_path / "sampler.rec")
    assert [e["pid"] for e in data.events if e["type"] == "proc_exit"] == [child.pid]
    size = fmt.THREAD.struct.size
    payload = b"".join(data.chunks[fmt.THREAD.code])
    tids = {fmt.THREAD.struct.unpack_from(payload, i)[2] for i in range(0, len(payload), size)}
    assert helper in tids


def test_past_the_limit_files_are_read_without_being_kept() -> None:
    files = _KeptFiles(limit=1)
    assert files.read("/proc/self/status") == files.read("/proc/self/status")
    first = files.read("/proc/self/stat")
    assert first is not None and first.split()[0] == str(os.getpid()).encode()
    assert len(files) == 1  # status kept, stat read through a fresh open
    assert files.read("/proc/self/does-not-exist") is None
    files.close_all()
    assert len(files) == 0


def test_the_limit_leaves_most_of_a_low_descriptor_limit_free() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
    try:
        assert _KeptFiles().limit == 32
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert _KeptFiles(limit=8).limit == 8


def test_a_file_of_a_process_that_is_gone_reads_as_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    path = f"/proc/{child.pid}/stat"
    files = _KeptFiles()
    assert files.read(path) is not None
    child.wait()  # reaped: the pid may be reused, but the open file stays bound to the old task
    assert files.read(path) is None
    assert len(files) == 0


def test_the_cgroup_memory_file_is_kept_open_and_followed(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory")
    usage = root / "memory.current"
    usage.write_text("1000\n")
    session = tmp_path / "session"
    session.mkdir()
    buffer = RecordBuffer(str(session), "sampler", {"writer": "sampler"})
    sampler = ProcessTreeSampler(buffer, os.getpid(), cgroup=Cgroup(root=root))
    sampler.sample()
    assert str(usage) in sampler.files._fds
    usage.write_text("2500\n")  # rewritten in place, as the kernel's file changes
    sampler.sample()
    sampler.finish()
    assert len(sampler.files) == 0
    buffer.close()
    data = read_record_file(session / "sampler.rec")
    size = fmt.SYSTEM.struct.size
    payload = b"".join(data.chunks[fmt.SYSTEM.code])
    names = [name for name, _ in fmt.SYSTEM.fields]
    col = names.index("cgroup_mem")
    got = [fmt.SYSTEM.struct.unpack_from(payload, i)[col] for i in range(0, len(payload), size)]
    assert got == [1000, 2500]


def _facts(pid: int) -> str:
    """A process's nice, cgroup and autogroup as /proc gives them (for a failure's message)."""
    out = []
    for name in ("stat", "cgroup", "autogroup"):
        try:
            text = Path(f"/proc/{pid}/{name}").read_text()
        except OSError as exc:
            text = f"<{exc}>"
        if name == "stat":
            text = "nice " + text.rsplit(")", 1)[1].split()[16]
        out.append(" ".join(text.split()))
    return "; ".join(out)


def test_a_lower_priority_process_beside_the_job_is_recorded_as_giving_way(
    tmp_path: Path,
) -> None:
    # The job: a sleeping child at this process's priority. Beside it, outside its tree but in
    # this session and cgroup, a busy loop niced to 19 (bounded: it ends itself after 60 s).
    if os.nice(0) >= 19:
        pytest.skip("this process runs at nice 19 already: nothing can be niced below it")
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    hog = subprocess.Popen(
        [
            "nice",
            "-n",
            "19",
            sys.executable,
            "-c",
            "import time\nend = time.time() + 60\nwhile time.time() < end: pass",
        ]
    )
    buffer = RecordBuffer(str(tmp_path), "sampler", {"writer": "sampler"})
    sampler = ProcessTreeSampler(buffer, job.pid)
    hog_cpu = Path(f"/proc/{hog.pid}/stat")

    def ticks() -> int:
        fields = hog_cpu.read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def scan() -> int:
        for _ in range(SCAN_EVERY):
            sampler.sample()  # every SCAN_EVERY-th pass scans the host's processes
        return sampler.yielding.total_ns

    try:
        # `nice` has set its priority and exec'd once the hog's command line is Python's.
        argv0 = os.fsencode(sys.executable)
        cmdline = Path(f"/proc/{hog.pid}/cmdline")
        wait_until(lambda: cmdline.read_bytes().split(b"\0")[0] == argv0, "nice to exec")
        scan()  # the first scan sees the hog: its CPU so far is not counted
        first = ticks()
        wait_until(lambda: ticks() >= first + 10, "the hog to use 100 ms of CPU")
        # Each later scan counts what the hog used since the one before; scanning until the
        # count shows (not a fixed number of scans) keeps a machine that is slow from failing.
        wait_until(
            lambda: scan() >= 0.1e9,
            lambda: (
                f"the hog's CPU to be counted (job: {_facts(job.pid)}; hog: {_facts(hog.pid)};"
                f" failures: {sampler._part_failures})"
            ),
            timeout=20,
        )
    finally:
        for child in (job, hog):
            child.kill()
            child.wait()
        buffer.close()
    data = read_record_file(tmp_path / "sampler.rec")
    payload = b"".join(data.chunks[fmt.YIELDING.code])
    size = fmt.YIELDING.struct.size
    rows = [fmt.YIELDING.struct.unpack_from(payload, i) for i in range(0, len(payload), size)]
    assert rows[0][1] == 0
    assert rows[-1][1] >= 0.1e9  # at least what the hog was seen to use between the scans
