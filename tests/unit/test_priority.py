"""The CPU of lower-priority processes that give way to the job, read from a /proc laid out by
hand: niced more than the job, in its cgroup and autogroup, outside its tree."""

from __future__ import annotations

from pathlib import Path

from probe.collectors.priority import TICK_NS, YieldingCpu, cpu_cgroup


def _proc(
    root: Path, pid: int, *, nice: int, ticks: int, start: int = 50, session: int = 7
) -> None:
    d = root / str(pid)
    d.mkdir(exist_ok=True)
    # pid (comm) state ppid ... utime(14) stime(15) ... nice(19) ... starttime(22)
    fields = ["S", "1"] + ["0"] * 9 + [str(ticks), "0", "0", "0", "20", str(nice), "1", "0"]
    fields += [str(start)] + ["0"] * 30
    (d / "stat").write_text(f"{pid} (python (x)) " + " ".join(fields))
    (d / "cgroup").write_text("0::/user.slice\n")
    (d / "autogroup").write_text(f"/autogroup-{session} nice 0\n")


def _host(root: Path, ticks: int) -> None:
    (root / "sys" / "kernel").mkdir(parents=True, exist_ok=True)
    (root / "sys" / "kernel" / "sched_autogroup_enabled").write_text("1\n")
    _proc(root, 100, nice=5, ticks=ticks)  # the job's root
    _proc(root, 101, nice=19, ticks=ticks)  # in the job's tree: not another process
    _proc(root, 200, nice=19, ticks=ticks)  # a nice-19 hog beside it: gives way
    _proc(root, 300, nice=19, ticks=ticks, session=8)  # niced, another session: competes
    _proc(root, 400, nice=5, ticks=ticks)  # the job's own priority: competes
    _proc(root, 500, nice=0, ticks=ticks)  # higher priority: competes


def test_only_lower_priority_processes_of_the_job_s_group_count(tmp_path: Path) -> None:
    _host(tmp_path, ticks=1000)
    yielding = YieldingCpu(100, proc=str(tmp_path))
    tree = {100, 101}
    assert yielding.scan(tree) == 0  # CPU before a process was first seen is not counted
    _host(tmp_path, ticks=1090)
    assert yielding.scan(tree) == 90 * TICK_NS  # pid 200's 90 ticks alone
    _proc(tmp_path, 200, nice=19, ticks=50, start=60)  # the pid reused by a new process
    assert yielding.scan(tree) == 90 * TICK_NS


def test_with_autogroup_off_the_cgroup_alone_groups(tmp_path: Path) -> None:
    _host(tmp_path, ticks=1000)
    (tmp_path / "sys" / "kernel" / "sched_autogroup_enabled").write_text("0\n")
    (tmp_path / "200" / "cgroup").write_text("0::/system.slice/batch.service\n")
    yielding = YieldingCpu(100, proc=str(tmp_path))
    yielding.scan({100, 101})
    _host(tmp_path, ticks=1010)
    (tmp_path / "sys" / "kernel" / "sched_autogroup_enabled").write_text("0\n")
    (tmp_path / "200" / "cgroup").write_text("0::/system.slice/batch.service\n")
    # 300 is in another session, which counts for nothing without autogroup; 200 in another
    # cgroup competes
    assert yielding.scan({100, 101}) == 10 * TICK_NS


def test_without_the_job_s_root_nothing_is_said(tmp_path: Path) -> None:
    assert YieldingCpu(100, proc=str(tmp_path)).scan(set()) is None


def test_with_cgroup_v1_only_the_cpu_controller_s_group_counts(tmp_path: Path) -> None:
    def v1(pid: int, memory: str, cpu: str) -> None:
        text = f"9:pids:/\n4:memory:{memory}\n2:cpu,cpuacct:{cpu}\n0::/\n"
        (tmp_path / str(pid) / "cgroup").write_text(text)

    def lay_out(ticks: int) -> None:
        _host(tmp_path, ticks)
        v1(100, "/api/job", "/")
        v1(200, "/api/other", "/")  # another memory group, the job's CPU group: gives way
        v1(300, "/api/job", "/batch")  # another CPU group (and session): competes
        v1(400, "/api/job", "/")

    lay_out(1000)
    yielding = YieldingCpu(100, proc=str(tmp_path))
    yielding.scan({100, 101})
    lay_out(1040)
    assert yielding.scan({100, 101}) == 40 * TICK_NS


def test_the_cpu_cgroup_of_each_layout() -> None:
    assert cpu_cgroup(b"12:memory:/m\n3:cpu,cpuacct:/c\n0::/u\n") == b"cpu:/c"
    assert cpu_cgroup(b"0::/user.slice/session-1.scope\n") == b"0::/user.slice/session-1.scope"
    assert cpu_cgroup(b"4:memory:/m\n") == b"0::"  # no cpu hierarchy: all in one group


def test_an_empty_autogroup_file_is_no_autogroup(tmp_path: Path) -> None:
    # Inside a container the job's tasks sit in a CPU cgroup (shown as "/" from within), where
    # autogroup does not apply and the kernel leaves /proc/<pid>/autogroup empty, even with
    # autogroup enabled: a nice-19 process there gives way by weight like any other.
    def lay_out(ticks: int, *, readable: bool = True) -> None:
        _host(tmp_path, ticks)
        for pid in (100, 200, 400, 500):
            (tmp_path / str(pid) / "autogroup").write_text("")
        # 300 stays in a session's autogroup: another group, it competes
        if not readable:  # 200's file unreadable: another group, whatever it is
            (tmp_path / "200" / "autogroup").unlink()

    lay_out(1000)
    yielding = YieldingCpu(100, proc=str(tmp_path))
    yielding.scan({100, 101})
    lay_out(1025)
    assert yielding.scan({100, 101}) == 25 * TICK_NS
    lay_out(1025, readable=False)
    fresh = YieldingCpu(100, proc=str(tmp_path))
    fresh.scan({100, 101})
    lay_out(1050, readable=False)
    assert fresh.scan({100, 101}) == 0
