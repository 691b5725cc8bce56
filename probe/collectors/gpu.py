"""NVIDIA GPUs through NVML (outside, in the probe process): utilisation and memory.

Loaded with ctypes from the driver's ``libnvidia-ml.so.1`` so probe needs no extra package. On a
machine without an NVIDIA driver, ``GpuSampler.open()`` returns None and nothing else happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

from probe.session import format as fmt
from probe.session.writer import RecordBuffer

NVML_SUCCESS = 0
NVML_ERROR_INSUFFICIENT_SIZE = 7
_LIBRARY_NAMES = ("libnvidia-ml.so.1", "libnvidia-ml.so")


class _Utilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class _Memory(ctypes.Structure):
    _fields_ = [
        ("total", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    ]


class _ProcessInfo(ctypes.Structure):  # nvmlProcessInfo_v2/_v3 layout
    _fields_ = [
        ("pid", ctypes.c_uint),
        ("usedGpuMemory", ctypes.c_ulonglong),
        ("gpuInstanceId", ctypes.c_uint),
        ("computeInstanceId", ctypes.c_uint),
    ]


def _load_library() -> Any:
    for name in _LIBRARY_NAMES:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    found = ctypes.util.find_library("nvidia-ml")
    if found:
        try:
            return ctypes.CDLL(found)
        except OSError:
            return None
    return None


class GpuSampler:
    """Samples every visible NVIDIA GPU. Create with ``open()``; None means no GPU to sample."""

    def __init__(self, lib: Any, handles: list[Any], names: list[str]) -> None:
        self._lib = lib
        self._handles = handles
        self.names = names
        self._proc_fn = getattr(lib, "nvmlDeviceGetComputeRunningProcesses_v3", None) or getattr(
            lib, "nvmlDeviceGetComputeRunningProcesses_v2", None
        )
        self.failures = 0

    @classmethod
    def open(cls) -> GpuSampler | None:
        lib = _load_library()
        if lib is None:
            return None
        try:
            if lib.nvmlInit_v2() != NVML_SUCCESS:
                return None
            count = ctypes.c_uint(0)
            if lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) != NVML_SUCCESS:
                return None
            handles: list[Any] = []
            names: list[str] = []
            for i in range(count.value):
                handle = ctypes.c_void_p()
                if lib.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(handle)) != NVML_SUCCESS:
                    continue
                buf = ctypes.create_string_buffer(96)
                lib.nvmlDeviceGetName(handle, buf, 96)
                handles.append(handle)
                names.append(buf.value.decode(errors="replace"))
        except (AttributeError, OSError):
            return None
        if not handles:
            return None
        return cls(lib, handles, names)

    def describe(self) -> list[dict[str, Any]]:
        return [{"index": i, "name": n} for i, n in enumerate(self.names)]

    def sample(self, buffer: RecordBuffer, now: int) -> None:
        lib = self._lib
        for index, handle in enumerate(self._handles):
            util = _Utilization()
            mem = _Memory()
            ok_util = lib.nvmlDeviceGetUtilizationRates(handle, ctypes.byref(util)) == NVML_SUCCESS
            ok_mem = lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(mem)) == NVML_SUCCESS
            if not (ok_util or ok_mem):
                self.failures += 1
                continue
            buffer.add(
                fmt.GPU,
                now,
                index,
                float(util.gpu) if ok_util else -1.0,
                float(util.memory) if ok_util else -1.0,
                int(mem.used) if ok_mem else -1,
                int(mem.total) if ok_mem else -1,
            )
            for pid, used in self._processes(handle):
                buffer.add(fmt.GPU_PROC, now, index, pid, used)

    def _processes(self, handle: Any) -> list[tuple[int, int]]:
        if self._proc_fn is None:
            return []
        count = ctypes.c_uint(64)
        infos = (_ProcessInfo * 64)()
        rc = self._proc_fn(handle, ctypes.byref(count), infos)
        if rc != NVML_SUCCESS:
            return []
        out = []
        for info in infos[: count.value]:
            used = int(info.usedGpuMemory)
            out.append((int(info.pid), used if used < (1 << 62) else -1))
        return out

    def close(self) -> None:
        try:
            self._lib.nvmlShutdown()
        except (AttributeError, OSError):
            pass
