"""The loop's rhythm without optimizer steps (part of probe.collectors.torch.TorchHooks).

Every backward pass (``torch.autograd.backward``) and, until the first one, every top-level module
call (an inference loop) is a step of its own source; the autograd graph's size is counted now
and then on a backward pass.
"""

from __future__ import annotations

import sys
import threading
import time
from types import ModuleType
from typing import Any

from probe.collectors.torch.state import HookState
from probe.session import format as fmt

# Every module call is watched (torch's global module hooks: ~2.5 us a call, measured on the 2-core
# VM) for the first DISCOVERY_CALLS top-level calls of a process; then only the classes seen
# called at the top are, through their __call__ (~1 us a forward pass).
DISCOVERY_CALLS = 20
# Count the autograd graph's nodes (how many differentiable operators one step ran: it tells
# tiny-operator, dispatch-bound loops from big-kernel ones) at the 3rd backward pass, then at every
# GRAPH_EVERY-th pass at the earliest, and no sooner than GRAPH_PERIOD_NS, nor than
# GRAPH_COST_FACTOR times the last walk's own time, after the last count. A walk costs 1-4 us per
# node (measured on the 2-core VM: 151 nodes, 120-600 us), about a third of what the step spent
# per node in a tiny-operator loop; counting every 50th pass cost such a loop ~0.2 % (up to 0.9 %),
# the gates keep it under 0.1 % at any graph size and step rate.
GRAPH_EVERY = 50
GRAPH_PERIOD_NS = 2_000_000_000
GRAPH_COST_FACTOR = 1000
GRAPH_CAP = 50_000

_now = time.monotonic_ns
_tid = threading.get_native_id


class RhythmHooks(HookState):
    def _hook_autograd(self, module: ModuleType) -> None:
        original = module.__dict__.get("backward")
        if original is None:
            return
        hooks = self

        def backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
            hooks._backwards += 1
            # the 3rd pass (past the first steps), then the 53rd, 103rd, ... once the time is up
            if hooks._backwards % GRAPH_EVERY == 3 and _now() >= hooks._next_graph:
                hooks._count_graph(tensors)  # catches its own failures
            result = original(tensors, *args, **kwargs)
            hooks._after_backward()  # and so does this
            return result

        backward.__wrapped__ = original  # type: ignore[attr-defined]
        backward.__doc__ = original.__doc__
        module.backward = backward  # type: ignore[attr-defined]
        self._restore.append(lambda: setattr(module, "backward", original))

    def _after_backward(self) -> None:
        try:
            now = _now()
            self._buffer.add(fmt.STEP, now, _tid(), fmt.STEP_SOURCE_BACKWARD, 0, 0, self._backwards)
            if self._forward_state in ("discovering", "classes"):
                self._stop_forward()  # a loop with backward passes has its rhythm
            self.hook_ns += _now() - now
        except Exception as exc:
            self._on_error("backward pass hook", exc)

    # -- top-level module calls: the rhythm of a loop with no backward pass (inference) --------

    def _start_forward_discovery(self) -> None:
        """Watch every module call through torch's global hooks until DISCOVERY_CALLS top-level
        calls have been seen (each module call pays ~2.5 us meanwhile), then only the classes
        seen called at the top, through a wrapper of their ``__call__`` (~1 us a forward pass).
        A backward pass ends all of it: a loop that has backward passes has its rhythm."""
        module = sys.modules.get("torch.nn.modules.module")
        register_pre = getattr(module, "register_module_forward_pre_hook", None)
        register_post = getattr(module, "register_module_forward_hook", None)
        if register_pre is None or register_post is None or self._forward_state != "off":
            return
        if self._backwards or "torch._dynamo" in sys.modules:
            return
        try:
            pre = register_pre(self._discover_pre)
            try:
                post = register_post(self._discover_post, always_call=True)
            except TypeError:  # before always_call (torch < 2.1)
                post = register_post(self._discover_post)
        except Exception as exc:
            self._on_error("module call hooks", exc)
            return
        self._forward_handles = [pre, post]
        self._forward_state = "discovering"
        self._restore.append(self._stop_forward)

    def _discover_pre(self, module: Any, args: Any) -> None:
        try:
            if self._is_compiling():
                return
            local = self._forward_local
            depth = getattr(local, "depth", 0)
            local.depth = depth + 1
            if depth == 0:
                local.start = _now()
        except Exception as exc:
            self._on_error("module call hook", exc)

    def _discover_post(self, module: Any, args: Any, output: Any) -> None:
        try:
            if self._is_compiling():
                return
            local = self._forward_local
            depth = getattr(local, "depth", 0) - 1
            local.depth = max(depth, 0)
            if depth == 0:
                self._after_forward(type(module), getattr(local, "start", _now()))
        except Exception as exc:
            self._on_error("module call hook", exc)

    def _is_compiling(self) -> bool:
        check = self._compiling
        if check is None:
            compiler = sys.modules.get("torch.compiler")
            check = getattr(compiler, "is_compiling", None)
            if check is None:
                return False
            self._compiling = check
        return bool(check())

    def _after_forward(self, cls: type, start: int) -> None:
        now = _now()
        forward = self._forward_classes.get(cls)
        if forward is None:
            forward = len(self._forward_classes) + 1
            self._forward_classes[cls] = forward
            self._buffer.event(
                {
                    "type": "module",
                    "t": now,
                    "forward": forward,
                    "class": f"{cls.__module__}.{cls.__qualname__}",
                }
            )
        self._forward_calls += 1
        self._buffer.add(
            fmt.STEP,
            now,
            _tid(),
            fmt.STEP_SOURCE_FORWARD,
            forward,
            now - start,
            self._forward_calls,
        )
        if self._forward_calls >= DISCOVERY_CALLS and self._forward_state == "discovering":
            self._narrow_forward()
        self.hook_ns += _now() - now

    def _narrow_forward(self) -> None:
        """Stop watching every module call; wrap the classes seen called at the top."""
        self._remove_discovery_hooks()
        self._forward_state = "classes"
        if "torch._dynamo" in sys.modules:
            self._forward_state = "done"  # torch.compile in use: leave its modules untouched
            return
        for cls in list(self._forward_classes):
            if cls.__module__.startswith("torch._dynamo"):
                continue
            own = cls.__dict__.get("__call__")
            target = own if own is not None else cls.__call__
            try:
                cls.__call__ = self._forward_wrapper(cls, target)  # type: ignore[method-assign]
            except (AttributeError, TypeError):
                continue
            self._forward_wrapped.append((cls, own))

    def _forward_wrapper(self, cls: type, original: Any) -> Any:
        hooks = self
        local = self._forward_local

        def __call__(module: Any, *args: Any, **kwargs: Any) -> Any:
            # Code torch.compile traces must see no side effects: nothing is recorded there.
            if hooks._is_compiling():
                return original(module, *args, **kwargs)
            depth = getattr(local, "depth", 0)
            local.depth = depth + 1
            start = _now() if depth == 0 else 0
            try:
                return original(module, *args, **kwargs)
            finally:
                local.depth = depth
                if depth == 0 and hooks._forward_state == "classes":
                    try:
                        hooks._after_forward(type(module), start)
                    except Exception as exc:
                        hooks._on_error("module call hook", exc)

        __call__.__wrapped__ = original  # type: ignore[attr-defined]
        __call__.__qualname__ = f"{cls.__qualname__}.__call__"
        return __call__

    def _remove_discovery_hooks(self) -> None:
        handles, self._forward_handles = self._forward_handles, []
        for handle in handles:
            try:
                handle.remove()
            except Exception as exc:
                self._on_error("module call hooks removal", exc)

    def _stop_forward(self) -> None:
        """No more top-level module calls recorded: hooks removed, classes given back."""
        self._remove_discovery_hooks()
        wrapped, self._forward_wrapped = self._forward_wrapped, []
        for cls, own in wrapped:
            try:
                if own is not None:
                    cls.__call__ = own  # type: ignore[method-assign]
                else:
                    del cls.__call__
            except (AttributeError, TypeError) as exc:
                self._on_error("module call wrapper removal", exc)
        if self._forward_state != "off":
            self._forward_state = "done"

    def _on_dynamo(self, module: ModuleType) -> None:
        """torch.compile is about to trace modules: give their classes back untouched."""
        self._stop_forward()

    def _count_graph(self, tensors: Any) -> None:
        start = _now()
        try:
            roots = list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]
            stack = [getattr(t, "grad_fn", None) for t in roots]
            seen: set[Any] = set()
            while stack and len(seen) < GRAPH_CAP:
                fn = stack.pop()
                if fn is None or fn in seen:
                    continue
                seen.add(fn)
                stack.extend(nxt for nxt, _ in getattr(fn, "next_functions", ()))
            now = _now()
            self._buffer.event(
                {"type": "autograd", "t": now, "nodes": len(seen), "walk_ns": now - start}
            )
        except Exception as exc:
            self._on_error("autograd graph size", exc)
        end = _now()
        self._next_graph = end + max(GRAPH_PERIOD_NS, (end - start) * GRAPH_COST_FACTOR)
        self.hook_ns += end - start
