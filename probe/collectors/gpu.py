"""NVIDIA GPUs through NVML (outside, in the probe process): utilisation and memory.

Loaded with ctypes from the driver's ``libnvidia-ml.so.1`` so probe needs no extra package. On a
machine without an NVIDIA driver, ``GpuSampler.open()`` returns None and nothing else happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

from probe.errors import CollectorError
from probe.session import format as fmt
from probe.session.writer import RecordBuffer

NVML_SUCCESS = 0
NVML_ERROR_INSUFFICIENT_SIZE = 7
# usedGpuMemory is ~0 where the driver cannot tell; anything this large is no real size (and
# would not fit the record's signed 64-bit field)
NOT_A_SIZE = 1 << 62
PID_MAX = 1 << 22  # the kernel's highest pid_max
_LIBRARY_NAMES = ("libnvidia-ml.so.1", "libnvidia-ml.so")


class _Utilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class _Memory(ctypes.Structure):
    _fields_ = [
        ("total", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    ]


class _ProcessInfoV1(ctypes.Structure):  # nvmlProcessInfo_v1_t
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


class _ProcessInfoV2(ctypes.Structure):  # nvmlProcessInfo_v2_t
    _fields_ = [
        ("pid", ctypes.c_uint),
        ("usedGpuMemory", ctypes.c_ulonglong),
        ("gpuInstanceId", ctypes.c_uint),
        ("computeInstanceId", ctypes.c_uint),
    ]


class _ProcessInfoV3(ctypes.Structure):  # what the R535-R545 drivers fill through _v3
    _fields_ = [
        ("pid", ctypes.c_uint),
        ("usedGpuMemory", ctypes.c_ulonglong),
        ("gpuInstanceId", ctypes.c_uint),
        ("computeInstanceId", ctypes.c_uint),
        ("usedGpuCcProtectedMemory", ctypes.c_ulonglong),
    ]


def _process_api(lib: Any) -> tuple[Any, type[ctypes.Structure]] | None:
    """The per-process memory call and the struct the installed driver fills through it.

    The array's element size changed under the same function name: the R535-R545 drivers fill
    32-byte records through ``..._v3`` (a confidential-computing field added at the end), the
    drivers that added ``nvmlDeviceGetRunningProcessDetailList`` for that went back to 24 bytes.
    Reading 32-byte records as 24-byte ones garbles every process after the first.
    """
    v3 = getattr(lib, "nvmlDeviceGetComputeRunningProcesses_v3", None)
    if v3 is not None:
        cc_era = hasattr(lib, "nvmlDeviceGetConfComputeMemSizeInfo") and not hasattr(
            lib, "nvmlDeviceGetRunningProcessDetailList"
        )
        return v3, _ProcessInfoV3 if cc_era else _ProcessInfoV2
    v2 = getattr(lib, "nvmlDeviceGetComputeRunningProcesses_v2", None)
    if v2 is not None:
        return v2, _ProcessInfoV2
    v1 = getattr(lib, "nvmlDeviceGetComputeRunningProcesses", None)
    return (v1, _ProcessInfoV1) if v1 is not None else None


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
        self._proc_api = _process_api(lib)
        self._proc_capacity = 64
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
        """One sample of every GPU; raises ``CollectorError`` when NVML answered for none (the
        sampler counts that, and switches the GPUs off when it keeps happening)."""
        lib = self._lib
        failed: list[int] = []
        for index, handle in enumerate(self._handles):
            util = _Utilization()
            mem = _Memory()
            rc_util = lib.nvmlDeviceGetUtilizationRates(handle, ctypes.byref(util))
            rc_mem = lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(mem))
            ok_util, ok_mem = rc_util == NVML_SUCCESS, rc_mem == NVML_SUCCESS
            if not (ok_util or ok_mem):
                self.failures += 1
                failed.append(int(rc_util))
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
        if failed and len(failed) == len(self._handles):
            raise CollectorError(f"NVML returned error {failed[0]} for every GPU")

    def _processes(self, handle: Any) -> list[tuple[int, int]]:
        """(pid, bytes) of each process with a compute context on the GPU (-1: not available)."""
        if self._proc_api is None:
            return []
        fn, struct = self._proc_api
        for _attempt in range(2):
            count = ctypes.c_uint(self._proc_capacity)
            infos = (struct * self._proc_capacity)()
            rc = fn(handle, ctypes.byref(count), infos)
            if rc == NVML_ERROR_INSUFFICIENT_SIZE and count.value > self._proc_capacity:
                self._proc_capacity = count.value + 16  # more processes than room: grow, again
                continue
            if rc != NVML_SUCCESS:
                return []
            out = []
            for info in infos[: min(count.value, self._proc_capacity)]:
                pid = int(info.pid)
                if not 0 < pid <= PID_MAX:  # a record read with the wrong layout
                    self.failures += 1
                    continue
                used = int(info.usedGpuMemory)
                out.append((pid, used if used < NOT_A_SIZE else -1))
            return out
        return []

    def close(self) -> None:
        try:
            self._lib.nvmlShutdown()
        except (AttributeError, OSError):
            pass
