"""CUDA memory and host-device synchronisation (part of probe.collectors.torch.TorchHooks).

Nothing but ``torch.cuda.is_initialized`` is asked until the program has initialised CUDA itself
(probe never initialises CUDA: that would break fork).
"""

from __future__ import annotations

import sys
import threading
import time
from types import ModuleType
from typing import Any

from probe.collectors.torch.state import HookState, ready
from probe.session import format as fmt

_now = time.monotonic_ns
_tid = threading.get_native_id


class CudaHooks(HookState):
    # -- host-device synchronisation (installed once the program has initialised CUDA) --------

    def install_sync_hooks(self, torch: ModuleType) -> None:
        """Time the calls that make the host wait for the GPU, on CUDA tensors only."""
        tensor = torch.Tensor
        for name in ("item", "cpu", "tolist"):
            self._wrap_sync(tensor, name, fmt.SYNC_CALLS.index(name), tensor_method=True)
        cuda = sys.modules.get("torch.cuda")
        if cuda is not None:
            self._wrap_sync(cuda, "synchronize", fmt.SYNC_CALLS.index("synchronize"))
            for cls_name, call in (
                ("Stream", "stream.synchronize"),
                ("Event", "event.synchronize"),
            ):
                cls = getattr(cuda, cls_name, None)
                if cls is not None:
                    self._wrap_sync(cls, "synchronize", fmt.SYNC_CALLS.index(call))

    def _wrap_sync(self, owner: Any, name: str, code: int, tensor_method: bool = False) -> None:
        original = getattr(owner, name, None)
        if original is None or getattr(original, "__probe_sync__", False):
            return
        own = name in getattr(owner, "__dict__", {})
        hooks = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # Tensor methods: only CUDA tensors make the host wait.
            if tensor_method and not args[0].is_cuda:
                return original(*args, **kwargs)
            return host_waits_for_gpu(hooks, original, code, args, kwargs)

        wrapper.__probe_sync__ = True  # type: ignore[attr-defined]
        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        wrapper.__name__ = name
        setattr(owner, name, wrapper)

        def undo() -> None:
            if own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)

        self._restore.append(undo)

    def after_sync(self, start: int, code: int) -> None:
        try:
            now = _now()
            self._buffer.add(fmt.SYNC, start, now - start, _tid(), code)
            self.hook_ns += _now() - now
        except Exception as exc:
            self._on_error("host-sync hook", exc)

    # -- CUDA memory (polled from the agent thread) -----------------------------------------------

    def _poll_cuda(self, torch: ModuleType, now: int) -> None:
        cuda = sys.modules.get("torch.cuda")
        if cuda is None or not ready(cuda):
            return
        try:
            if not cuda.is_initialized():
                return
            if not self._sync_hooked:
                self._sync_hooked = True
                self.install_sync_hooks(torch)
            for device in range(cuda.device_count()):
                self._buffer.add(
                    fmt.CUDA,
                    now,
                    device,
                    int(cuda.memory_allocated(device)),
                    int(cuda.memory_reserved(device)),
                    int(cuda.max_memory_allocated(device)),
                )
        except Exception as exc:
            self._on_error("torch.cuda memory", exc)


def host_waits_for_gpu(
    hooks: CudaHooks, original: Any, code: int, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """A call that makes the host wait for the GPU, timed. A stack sampled while the host waits
    has this function's frame in it: that is how the analysis tells a wait for the GPU from the
    program's own code (``probe.analysis.stacks``), so its name is part of the session's meaning."""
    start = _now()
    try:
        return original(*args, **kwargs)
    finally:
        hooks.after_sync(start, code)
