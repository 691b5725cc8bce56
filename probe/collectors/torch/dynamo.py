"""torch.compile's compilations, from its own start and end callbacks (part of
probe.collectors.torch.TorchHooks)."""

from __future__ import annotations

import sys
import threading
import time
from types import FrameType, ModuleType
from typing import Any

from probe.collectors.torch.state import HookState
from probe.session.redact import redact_text

# How far up the stack a compile callback looks for dynamo's ``_compile`` frame (the function
# being compiled and the recompilation's reason are its locals), and how much of a reason it keeps.
COMPILE_FRAME_DEPTH = 40
COMPILE_REASON_CHARS = 300

_now = time.monotonic_ns
_tid = threading.get_native_id


class DynamoHooks(HookState):
    def _hook_dynamo(self, module: ModuleType) -> None:
        handler = getattr(module, "callback_handler", None)
        if handler is None or not hasattr(handler, "register_start_callback"):
            return
        self._compile_handler = handler
        self._register_compile_callbacks()

        def undo() -> None:
            for name, callback in (
                ("remove_start_callback", self._compile_start),
                ("remove_end_callback", self._compile_end),
            ):
                try:
                    getattr(handler, name)(callback)
                except ValueError:
                    pass
            self._compile_handler = None

        self._restore.append(undo)

    def _register_compile_callbacks(self) -> None:
        """(Again) register the compile callbacks: ``torch._dynamo.reset()`` clears them."""
        handler = self._compile_handler
        if handler is None:
            return
        if self._compile_start not in getattr(handler, "start_callbacks", ()):
            handler.register_start_callback(self._compile_start)
        if self._compile_end not in getattr(handler, "end_callbacks", ()):
            handler.register_end_callback(self._compile_end)

    def _compile_start(self, args: Any = None) -> None:
        # Older torch calls the callbacks without arguments; newer ones pass the trigger and the
        # compile id. Compilations take seconds: looking for the compiled function costs nothing.
        start = _now()
        try:
            info: dict[str, Any] = {"t": start, "tid": _tid()}
            trigger = getattr(getattr(args, "callback_trigger", None), "name", None)
            if trigger is not None:
                info["trigger"] = str(trigger).lower().replace("_", "-")
            compile_id = getattr(args, "compile_id", None)
            if compile_id is not None:
                info["compile_id"] = str(compile_id)
            info.update(_compiled_frame())
            config = sys.modules.get("torch._dynamo.config")
            limit = getattr(config, "recompile_limit", None)
            if isinstance(limit, int):
                info["recompile_limit"] = limit
            self._compiles[info["tid"]] = info
        except Exception as exc:
            self._on_error("compile start", exc)
        self.hook_ns += _now() - start

    def _compile_end(self, args: Any = None) -> None:
        now = _now()
        try:
            info = self._compiles.pop(_tid(), None)
            if info is not None:
                info["dur"] = now - info["t"]
                self._buffer.event({"type": "compile", **info})
        except Exception as exc:
            self._on_error("compile end", exc)
        self.hook_ns += _now() - now


def _compiled_frame() -> dict[str, Any]:
    """What dynamo is compiling, from its ``_compile`` frame up the stack: the function
    (``func``, ``file``, ``line``) and, for a recompilation, the first guard that failed
    (``reason``). Empty when the frame is not found (another torch version, a backward graph)."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(COMPILE_FRAME_DEPTH):
        if frame is None:
            return {}
        code = frame.f_code
        if code.co_name == "_compile" and code.co_filename.endswith("convert_frame.py"):
            break
        frame = frame.f_back
    if frame is None or frame.f_code.co_name != "_compile":
        return {}
    local = frame.f_locals
    out: dict[str, Any] = {}
    compiled = local.get("code")
    if compiled is not None and hasattr(compiled, "co_filename"):
        out["func"] = str(getattr(compiled, "co_qualname", compiled.co_name))
        out["file"] = str(compiled.co_filename)
        out["line"] = int(compiled.co_firstlineno)
    reason = local.get("recompile_reason")
    if isinstance(reason, str) and reason:
        out["reason"] = redact_text(reason)[:COMPILE_REASON_CHARS]
    return out
