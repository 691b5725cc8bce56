"""The NVML sampler against a fake driver library: the calls go through ctypes as on a GPU.

The fake fills the caller's ctypes buffers the way each driver generation does, in particular the
per-process records whose size changed under one function name (24 bytes, or 32 on the R535-R545
drivers), so a layout mistake shows here, not first on a GPU.
"""

from __future__ import annotations

import ctypes
import struct
from pathlib import Path
from typing import Any

import pytest

from probe.collectors import gpu
from probe.session import format as fmt
from probe.session.writer import RecordBuffer

SUCCESS = 0
NOT_SUPPORTED = 3
INSUFFICIENT_SIZE = 7


class FakeNvml:
    """One GPU, a list of (pid, bytes) compute processes, records of ``record_size`` bytes."""

    def __init__(self, processes: list[tuple[int, int]], record_size: int, symbols: set[str]):
        self.processes = processes
        self.record_size = record_size
        self.util_rc = SUCCESS
        self.calls = 0
        for name in symbols:
            setattr(self, name, self._processes)

    def nvmlDeviceGetUtilizationRates(self, handle: Any, ref: Any) -> int:
        if self.util_rc != SUCCESS:
            return self.util_rc
        ref._obj.gpu, ref._obj.memory = 87, 41
        return SUCCESS

    def nvmlDeviceGetMemoryInfo(self, handle: Any, ref: Any) -> int:
        ref._obj.total, ref._obj.free, ref._obj.used = 80 << 30, 60 << 30, 20 << 30
        return SUCCESS

    def _processes(self, handle: Any, count_ref: Any, array: Any) -> int:
        self.calls += 1
        count = count_ref._obj
        if count.value < len(self.processes):
            count.value = len(self.processes)
            return INSUFFICIENT_SIZE
        blob = b"".join(
            struct.pack("<IxxxxQII", pid, used, 0xFFFFFFFF, 0xFFFFFFFF).ljust(
                self.record_size, b"\0"
            )
            if self.record_size > 16
            else struct.pack("<IxxxxQ", pid, used)
            for pid, used in self.processes
        )
        assert len(blob) <= ctypes.sizeof(array), "the caller's buffer is too small"
        ctypes.memmove(ctypes.addressof(array), blob, len(blob))
        count.value = len(self.processes)
        return SUCCESS


V3 = "nvmlDeviceGetComputeRunningProcesses_v3"
V2 = "nvmlDeviceGetComputeRunningProcesses_v2"
CC = "nvmlDeviceGetConfComputeMemSizeInfo"
DETAIL = "nvmlDeviceGetRunningProcessDetailList"
PROCS = [(4242, 3 << 30), (4243, 512 << 20), (4244, (1 << 64) - 1)]  # the last: not available


@pytest.mark.parametrize(
    ("symbols", "record_size"),
    [
        ({V3, V2, CC}, 32),  # R535-R545: 32-byte records through _v3
        ({V3, V2, CC, DETAIL}, 24),  # R550 on: back to 24 bytes, the long form has its own call
        ({V3, V2}, 24),  # R510-R530
        ({V2}, 24),
        ({"nvmlDeviceGetComputeRunningProcesses"}, 16),
    ],
    ids=["r535", "r550", "r510", "v2-only", "v1-only"],
)
def test_every_process_is_read_whatever_the_drivers_record_size(
    symbols: set[str], record_size: int
) -> None:
    lib = FakeNvml(PROCS, record_size, {*symbols} - {CC, DETAIL})
    for extra in symbols & {CC, DETAIL}:
        setattr(lib, extra, lambda *a: SUCCESS)
    sampler = gpu.GpuSampler(lib, [ctypes.c_void_p(1)], ["NVIDIA H200"])
    assert sampler._processes(ctypes.c_void_p(1)) == [
        (4242, 3 << 30),
        (4243, 512 << 20),
        (4244, -1),
    ]
    assert sampler.failures == 0


def test_more_processes_than_room_grows_the_buffer() -> None:
    many = [(1000 + i, i << 20) for i in range(100)]
    lib = FakeNvml(many, 24, {V3})
    sampler = gpu.GpuSampler(lib, [ctypes.c_void_p(1)], ["GPU"])
    assert sampler._processes(ctypes.c_void_p(1)) == many
    assert lib.calls == 2
    assert sampler._processes(ctypes.c_void_p(1)) == many and lib.calls == 3  # room kept


def test_records_read_with_the_wrong_layout_are_dropped_and_counted() -> None:
    # a driver that writes 32-byte records where 24 were expected: the second record's pid
    # lands in the first one's padding; nothing impossible is kept
    lib = FakeNvml([(4242, 1 << 30), (4243, 5)], 32, {V3})
    sampler = gpu.GpuSampler(lib, [ctypes.c_void_p(1)], ["GPU"])
    assert sampler._processes(ctypes.c_void_p(1)) == [(4242, 1 << 30)]
    assert sampler.failures == 1


def test_a_sample_writes_the_gpu_and_each_process(tmp_path: Path) -> None:
    lib = FakeNvml(PROCS[:2], 24, {V3})
    sampler = gpu.GpuSampler(lib, [ctypes.c_void_p(1)], ["NVIDIA H200"])
    buffer = RecordBuffer(str(tmp_path), "sampler", {"writer": "sampler"})
    sampler.sample(buffer, 123)
    lib.util_rc = NOT_SUPPORTED  # a MIG slice: memory is read, utilisation is not
    sampler.sample(buffer, 456)
    rows = [fmt.GPU.struct.unpack(r) for r in buffer._queues[fmt.GPU.code]]
    assert rows == [
        (123, 0, 87.0, 41.0, 20 << 30, 80 << 30),
        (456, 0, -1.0, -1.0, 20 << 30, 80 << 30),
    ]
    procs = [fmt.GPU_PROC.struct.unpack(r) for r in buffer._queues[fmt.GPU_PROC.code]]
    assert procs[:2] == [(123, 0, 4242, 3 << 30), (123, 0, 4243, 512 << 20)]
    assert sampler.describe() == [{"index": 0, "name": "NVIDIA H200"}]


def test_no_driver_means_no_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "_load_library", lambda: None)
    assert gpu.GpuSampler.open() is None
