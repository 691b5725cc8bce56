"""The torch collector's CUDA side, against a stand-in torch: nothing but ``is_initialized`` is
asked of ``torch.cuda`` until the program has initialised CUDA itself (anything else could create
a CUDA context: hundreds of MB of GPU memory, and a broken fork), and then CUDA memory is polled
and the host-sync hooks time waits on CUDA tensors only."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from probe.collectors.torch import TorchHooks
from probe.session import format as fmt
from probe.session.writer import RecordBuffer


class FakeCuda(ModuleType):
    """``torch.cuda``: every attribute read is recorded; only is_initialized works before
    ``initialized`` is set."""

    def __init__(self) -> None:
        super().__init__("torch.cuda")
        self.initialized = False
        self.asked: list[str] = []
        self.synced = 0

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("_") or name in ("initialized", "asked", "synced", "__dict__"):
            return super().__getattribute__(name)
        self.asked.append(name)
        if name == "is_initialized":
            return lambda: self.initialized
        if not self.initialized:
            raise AssertionError(f"torch.cuda.{name} used before the program initialised CUDA")
        return super().__getattribute__(name)

    def device_count(self) -> int:
        return 2

    def memory_allocated(self, device: int) -> int:
        return (device + 1) << 30

    def memory_reserved(self, device: int) -> int:
        return (device + 2) << 30

    def max_memory_allocated(self, device: int) -> int:
        return (device + 3) << 30

    def synchronize(self) -> None:
        self.synced += 1


class TensorBase:
    # the functions on the stack at each .item(), innermost first
    callers: ClassVar[list[list[str]]] = []

    def item(self) -> float:
        frame, names = sys._getframe(1), []
        while frame is not None:
            names.append(frame.f_code.co_name)
            frame = frame.f_back  # type: ignore[assignment]
        TensorBase.callers.append(names)
        return 1.5

    def cpu(self) -> TensorBase:
        return self

    def tolist(self) -> list[float]:
        return [1.5]


class Tensor(TensorBase):
    def __init__(self, is_cuda: bool) -> None:
        self.is_cuda = is_cuda


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, FakeCuda]:
    torch = ModuleType("torch")
    cuda = FakeCuda()
    torch.__version__ = "2.13.0"  # type: ignore[attr-defined]
    torch.get_num_threads = lambda: 4  # type: ignore[attr-defined]
    torch.get_num_interop_threads = lambda: 4  # type: ignore[attr-defined]
    torch.version = ModuleType("torch.version")  # type: ignore[attr-defined]
    torch.version.cuda = "13.0"  # type: ignore[attr-defined]
    torch.Tensor = Tensor  # type: ignore[attr-defined]
    torch.cuda = cuda  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch.cuda", cuda)
    monkeypatch.delitem(sys.modules, "torch.distributed", raising=False)
    return torch, cuda


def _hooks(tmp_path: Path) -> tuple[TorchHooks, RecordBuffer, list[str]]:
    buffer = RecordBuffer(str(tmp_path), "agent-1", {"writer": "agent", "pid": 1})
    errors: list[str] = []
    return TorchHooks(buffer, lambda where, exc: errors.append(f"{where}: {exc}")), buffer, errors


def _rows(buffer: RecordBuffer, kind: fmt.Kind) -> list[tuple[Any, ...]]:
    return [kind.struct.unpack(r) for r in buffer._queues[kind.code]]


def test_nothing_but_is_initialized_is_asked_of_cuda_before_the_program_uses_it(
    tmp_path: Path, fake_torch: tuple[ModuleType, FakeCuda]
) -> None:
    _torch, cuda = fake_torch
    hooks, buffer, errors = _hooks(tmp_path)
    for now in (1, 2, 3):
        hooks.poll(now)
    assert set(cuda.asked) == {"is_initialized"}
    assert errors == []
    assert _rows(buffer, fmt.CUDA) == []
    assert "item" not in Tensor.__dict__  # no sync hooks either


def test_once_cuda_is_initialised_memory_is_polled_and_syncs_are_timed(
    tmp_path: Path, fake_torch: tuple[ModuleType, FakeCuda]
) -> None:
    torch, cuda = fake_torch
    hooks, buffer, errors = _hooks(tmp_path)
    hooks.poll(1)
    cuda.initialized = True
    hooks.poll(2)
    try:
        assert errors == []
        assert _rows(buffer, fmt.CUDA) == [
            (2, 0, 1 << 30, 2 << 30, 3 << 30),
            (2, 1, 2 << 30, 3 << 30, 4 << 30),
        ]
        gpu_tensor, cpu_tensor = Tensor(is_cuda=True), Tensor(is_cuda=False)
        assert gpu_tensor.item() == 1.5 and gpu_tensor.tolist() == [1.5]
        assert cpu_tensor.item() == 1.5 and cpu_tensor.cpu() is cpu_tensor  # not timed
        # a stack sampled while the host waits for the GPU shows it by one function's frame
        # (probe.analysis.stacks reads it); a CPU tensor's call never passes through it
        gpu_call, cpu_call = TensorBase.callers[-2:]
        assert gpu_call[:2] == ["host_waits_for_gpu", "wrapper"]
        assert cpu_call[0] == "wrapper" and "host_waits_for_gpu" not in cpu_call
        torch.cuda.synchronize()
        assert cuda.synced == 1
        calls = [fmt.SYNC_CALLS[row[3]] for row in _rows(buffer, fmt.SYNC)]
        assert calls == ["item", "tolist", "synchronize"]
    finally:
        hooks.uninstall()
    # the methods were the base class's: removing the hooks leaves them inherited again
    assert "item" not in Tensor.__dict__ and Tensor.item is TensorBase.item
    assert "synchronize" not in cuda.__dict__
