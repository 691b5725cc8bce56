"""The torch hooks' shared state: one object that every part of ``TorchHooks`` reads and writes.

``TorchHooks`` (probe.collectors.torch) is this class with one mixin per part (optimizer steps,
the loop's rhythm, DataLoader, torch.compile, CUDA); they are all the same instance, so a hook on
the target's thread reads its state with one attribute lookup, as before the split.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

from probe.session.writer import RecordBuffer

_now = time.monotonic_ns


class HookState:
    """What the parts of ``TorchHooks`` share: the buffer, the error callback, what undoes each
    hook, and every part's own state, all on one object.

    Every hook catches its own failures: an exception would reach the program through torch
    (optimizer hooks) or replace the program's own result or exception (the wrappers' finally).
    """

    def __init__(
        self,
        buffer: RecordBuffer,
        on_error: Callable[[str, BaseException], None],
        on_worker: Callable[[], None] | None = None,
    ) -> None:
        self._buffer = buffer
        self._on_error = on_error
        self._on_worker = on_worker
        self._restore: list[Callable[[], None]] = []
        self._opt_ids: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._opt_start: dict[int, int] = {}
        self._loader_ids: dict[tuple[int, int, Any], int] = {}
        self._iter_loader: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._pin_asked: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
        self._worker_id: int | None = None
        self._dist_seen: tuple[int, int] | None = None
        self._facts_seen: tuple[Any, ...] | None = None
        self._step_index = 0
        self._backwards = 0
        self._next_graph = 0  # monotonic ns before which the graph is not counted again
        self._sync_hooked = False
        self._forward_local = threading.local()  # depth of module calls, start of the top one
        self._forward_classes: dict[type, int] = {}  # class -> id in the step records
        self._forward_calls = 0
        self._forward_state = "off"  # off | discovering | classes | done
        self._forward_handles: list[Any] = []
        self._forward_wrapped: list[tuple[type, Any]] = []  # class, its own __call__ or None
        self._compiling: Callable[[], bool] | None = None
        self._compile_handler: Any = None
        self._compiles: dict[int, dict[str, Any]] = {}  # thread id -> the compile under way
        self.hook_ns = 0

    def uninstall(self) -> None:
        for undo in reversed(self._restore):
            try:
                undo()
            except Exception as exc:
                self._on_error("torch hook removal", exc)
        self._restore.clear()

    def reset_after_fork(self, buffer: RecordBuffer) -> None:
        self._buffer = buffer
        self._opt_ids = weakref.WeakKeyDictionary()
        self._opt_start.clear()
        self._loader_ids.clear()
        self._iter_loader = weakref.WeakKeyDictionary()
        self._pin_asked = weakref.WeakKeyDictionary()
        self._worker_id = None
        self._dist_seen = None
        self._facts_seen = None
        self._step_index = 0
        self._backwards = 0
        self._next_graph = 0
        self._forward_local = threading.local()
        self._compiles.clear()

    # -- facts (polled from the agent thread, and at the first step) ----------------------------

    def record_facts(self, torch: ModuleType) -> None:
        if not ready(torch):
            return
        try:
            facts = (
                getattr(torch, "__version__", None),
                torch.get_num_threads(),
                torch.get_num_interop_threads(),
            )
        except Exception as exc:
            self._on_error("torch facts", exc)
            return
        if facts != self._facts_seen:
            self._facts_seen = facts
            version = facts[0]
            self._buffer.event(
                {
                    "type": "torch",
                    "t": _now(),
                    "version": str(version) if version is not None else None,
                    "threads": facts[1],
                    "interop_threads": facts[2],
                    "cuda_build": getattr(getattr(torch, "version", None), "cuda", None),
                }
            )


def ready(module: ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    return not getattr(spec, "_initializing", False)
