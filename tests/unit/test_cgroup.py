"""Container-aware cores and memory limit from cgroup v1 and v2 files."""

from __future__ import annotations

from pathlib import Path

from probe.collectors.system import Cgroup, machine_info


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_quota_and_memory(tmp_path: Path) -> None:
    _write(tmp_path / "cgroup.controllers", "cpu memory")
    _write(tmp_path / "cpu.max", "150000 100000")
    _write(tmp_path / "memory.max", str(4 << 30))
    _write(tmp_path / "memory.current", str(1 << 30))
    _write(tmp_path / "memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    cg = Cgroup(root=tmp_path)
    assert cg.version == 2
    assert cg.cpu_quota_cores() == 1.5
    assert cg.memory_limit() == 4 << 30
    assert cg.memory_usage() == 1 << 30
    assert cg.oom_kills() == 1


def test_v2_unlimited(tmp_path: Path) -> None:
    _write(tmp_path / "cgroup.controllers", "cpu memory")
    _write(tmp_path / "cpu.max", "max 100000")
    _write(tmp_path / "memory.max", "max")
    cg = Cgroup(root=tmp_path)
    assert cg.cpu_quota_cores() is None
    assert cg.memory_limit() is None


def test_v1_quota_and_memory(tmp_path: Path) -> None:
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "50000")
    _write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000")
    _write(tmp_path / "memory" / "memory.limit_in_bytes", str(2 << 30))
    _write(tmp_path / "memory" / "memory.usage_in_bytes", "1234")
    cg = Cgroup(root=tmp_path)
    assert cg.version == 1
    assert cg.cpu_quota_cores() == 0.5
    assert cg.memory_limit() == 2 << 30
    assert cg.memory_usage() == 1234


def test_v1_no_quota(tmp_path: Path) -> None:
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "-1")
    _write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000")
    _write(tmp_path / "memory" / "memory.limit_in_bytes", str(1 << 62))
    cg = Cgroup(root=tmp_path)
    assert cg.cpu_quota_cores() is None
    assert cg.memory_limit() is None


def test_effective_cores_take_the_quota(tmp_path: Path) -> None:
    _write(tmp_path / "cgroup.controllers", "cpu")
    _write(tmp_path / "cpu.max", "50000 100000")
    info = machine_info(Cgroup(root=tmp_path))
    assert info.cpu_quota_cores == 0.5
    assert info.effective_cores == 0.5
    assert info.logical_cores >= 1


def test_no_cgroup_at_all(tmp_path: Path) -> None:
    cg = Cgroup(root=tmp_path)
    assert cg.version is None
    assert cg.cpu_quota_cores() is None
    assert cg.memory_usage() == -1
