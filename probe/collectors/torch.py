"""torch hooks, installed when the target imports torch (in-process; never imports torch itself).

- Steps: global optimizer step pre/post hooks; a step ends when ``optimizer.step()`` returns.
- The loop's rhythm when it has no (or few) optimizer steps: every backward pass
  (``torch.autograd.backward``: an L-BFGS closure, manual SGD, gradient accumulation) and, until
  the first backward pass, every top-level module call (an inference loop), each recorded as a
  step of its own source; the analysis picks the unit (see probe.analysis.timeline). Top-level
  calls are found through torch's global module hooks for the first DISCOVERY_CALLS of them
  only; then only the classes seen called at the top are watched, so a model's submodules pay
  nothing after that, and nothing is recorded while torch.compile traces.
- DataLoader waits: ``_BaseDataLoaderIter.__next__`` timed in the process that iterates; each
  iterator's loader is described once (workers, batch size, pin_memory, ...), with worker pids.
- Batch production: the dataset fetchers timed (wall and CPU) where they run: in each DataLoader
  worker, or in the main process when ``num_workers=0``.
- Graph size: the number of nodes in a backward pass's autograd graph, counted at the 3rd pass and
  then at most every 50th, no more often than its own cost allows (see GRAPH_EVERY).
- Compilations: torch.compile's own start and end callbacks (``torch._dynamo.callback``), one
  ``compile`` event each: how long, what triggered it (a frame traced by dynamo, a backward graph
  compiled on its first use), the compile id (``frame/recompile``), the function compiled and,
  for a recompilation, the guard that failed.
- Facts: version, intra/inter-op threads, distributed rank and world size, CUDA memory when the
  program itself initialised CUDA (probe never initialises CUDA: that would break fork).
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import Any

from probe.session import format as fmt
from probe.session.redact import redact_text
from probe.session.writer import RecordBuffer

# The torch modules whose import installs a hook, and the method that installs it.
WATCHED = {
    "torch": "_on_torch",
    "torch.optim.optimizer": "_hook_optimizer",
    "torch.utils.data.dataloader": "_hook_dataloader",
    "torch.utils.data._utils.fetch": "_hook_fetch",
    "torch.autograd": "_hook_autograd",
    "torch._dynamo": "_on_dynamo",
    "torch._dynamo.callback": "_hook_dynamo",
}
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
# How far up the stack a compile callback looks for dynamo's ``_compile`` frame (the function
# being compiled and the recompilation's reason are its locals), and how much of a reason it keeps.
COMPILE_FRAME_DEPTH = 40
COMPILE_REASON_CHARS = 300

_now = time.monotonic_ns
_cpu = time.thread_time_ns
_tid = threading.get_native_id


class TorchHooks:
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

    # -- installation ---------------------------------------------------------------------------

    def on_module(self, name: str, module: ModuleType) -> None:
        """Called once each module of ``WATCHED`` has been imported by the target."""
        getattr(self, WATCHED[name])(module)

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

    def _on_torch(self, torch: ModuleType) -> None:
        self.record_facts(torch)
        self._start_forward_discovery()

    def _hook_optimizer(self, module: ModuleType) -> None:
        pre = module.register_optimizer_step_pre_hook(self._pre_step)
        post = module.register_optimizer_step_post_hook(self._post_step)
        self._restore.append(pre.remove)
        self._restore.append(post.remove)

    def _hook_dataloader(self, module: ModuleType) -> None:
        cls = module._BaseDataLoaderIter
        original = cls.__dict__["__next__"]
        hooks = self

        def __next__(it: Any) -> Any:
            start = _now()
            exhausted = 0
            try:
                return original(it)
            except StopIteration:
                exhausted = fmt.WAIT_EXHAUSTED
                raise
            finally:
                hooks._after_next(it, start, exhausted)

        __next__.__wrapped__ = original  # type: ignore[attr-defined]
        __next__.__qualname__ = original.__qualname__
        cls.__next__ = __next__
        self._restore.append(lambda: setattr(cls, "__next__", original))
        # What the program asked of its loader: the iterator keeps only what is in effect
        # (pin_memory=True without an accelerator is off), and not the loader itself.
        init = cls.__dict__.get("__init__")
        if init is not None:

            def __init__(it: Any, loader: Any, *args: Any, **kwargs: Any) -> None:
                init(it, loader, *args, **kwargs)
                try:
                    hooks._pin_asked[it] = bool(getattr(loader, "pin_memory", False))
                except TypeError:
                    pass

            __init__.__wrapped__ = init  # type: ignore[attr-defined]
            __init__.__qualname__ = init.__qualname__
            cls.__init__ = __init__
            self._restore.append(lambda: setattr(cls, "__init__", init))

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

    def _hook_fetch(self, module: ModuleType) -> None:
        for name in ("_MapDatasetFetcher", "_IterableDatasetFetcher"):
            cls = getattr(module, name, None)
            if cls is None or "fetch" not in cls.__dict__:
                continue
            self._wrap_fetch(cls)

    def _wrap_fetch(self, cls: type) -> None:
        original = cls.__dict__["fetch"]
        hooks = self

        def fetch(fetcher: Any, index: Any) -> Any:
            start = _now()
            cpu = _cpu()
            try:
                return original(fetcher, index)
            finally:
                hooks._after_fetch(start, cpu, index)

        fetch.__wrapped__ = original  # type: ignore[attr-defined]
        fetch.__qualname__ = original.__qualname__
        setattr(cls, "fetch", fetch)  # noqa: B010
        self._restore.append(lambda: setattr(cls, "fetch", original))

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

    # -- hooks (run on the target's threads: keep them short) -----------------------------------

    # Every hook catches its own failures: an exception would reach the program through torch
    # (optimizer hooks) or replace the program's own result or exception (the wrappers' finally).

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

    def _pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        try:
            self._opt_start[_tid()] = _now()
        except Exception as exc:
            self._on_error("optimizer step hook", exc)

    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        try:
            self._record_step(optimizer)
        except Exception as exc:
            self._on_error("optimizer step hook", exc)

    def _record_step(self, optimizer: Any) -> None:
        now = _now()
        tid = _tid()
        start = self._opt_start.pop(tid, now)
        opt = self._opt_ids.get(optimizer)
        if opt is None:
            opt = self._new_optimizer(optimizer)
        self._step_index += 1
        self._buffer.add(
            fmt.STEP, now, tid, fmt.STEP_SOURCE_OPTIMIZER, opt, now - start, self._step_index
        )
        self.hook_ns += _now() - now

    def _new_optimizer(self, optimizer: Any) -> int:
        opt = len(self._opt_ids) + 1
        try:
            self._opt_ids[optimizer] = opt
        except TypeError:
            pass
        groups = getattr(optimizer, "param_groups", [])
        self._buffer.event(
            {
                "type": "optimizer",
                "t": _now(),
                "opt": opt,
                "class": type(optimizer).__name__,
                "param_groups": len(groups),
                "params": sum(len(g.get("params", ())) for g in groups),
            }
        )
        torch = sys.modules.get("torch")
        if torch is not None:
            self.record_facts(torch)
        return opt

    def _after_next(self, it: Any, start: int, exhausted: int) -> None:
        try:
            self._record_wait(it, start, exhausted)
        except Exception as exc:
            self._on_error("DataLoader hook", exc)

    def _record_wait(self, it: Any, start: int, exhausted: int) -> None:
        now = _now()
        loader = self._iter_loader.get(it)
        if loader is None:
            loader = self._new_iterator(it)
        self._buffer.add(fmt.WAIT, start, now - start, _tid(), loader, exhausted)
        self.hook_ns += _now() - now

    def _new_iterator(self, it: Any) -> int:
        sampler = getattr(it, "_index_sampler", None)
        batch_size = getattr(sampler, "batch_size", None)
        key = (id(getattr(it, "_dataset", None)), getattr(it, "_num_workers", 0), batch_size)
        loader = self._loader_ids.get(key)
        if loader is None:
            loader = len(self._loader_ids) + 1
            self._loader_ids[key] = loader
            self._buffer.event(self._describe_loader(it, loader, sampler, batch_size))
        try:
            self._iter_loader[it] = loader
        except TypeError:
            pass
        workers = getattr(it, "_workers", None) or []
        self._buffer.event(
            {
                "type": "loader_iter",
                "t": _now(),
                "loader": loader,
                "workers": [w.pid for w in workers if getattr(w, "pid", None)],
            }
        )
        torch = sys.modules.get("torch")
        if torch is not None:
            self.record_facts(torch)
        return loader

    def _describe_loader(
        self, it: Any, loader: int, sampler: Any, batch_size: Any
    ) -> dict[str, Any]:
        dataset = getattr(it, "_dataset", None)
        start_method = None
        workers = getattr(it, "_workers", None) or []
        if workers:
            start_method = getattr(workers[0], "_start_method", None)
            if start_method is None:
                import multiprocessing

                start_method = multiprocessing.get_start_method(allow_none=True) or "default"
        inner = getattr(sampler, "sampler", sampler)
        return {
            "type": "loader",
            "t": _now(),
            "loader": loader,
            "dataset": type(dataset).__qualname__ if dataset is not None else None,
            "dataset_module": type(dataset).__module__ if dataset is not None else None,
            "iterable": int(getattr(it, "_dataset_kind", 0)) == 1,
            "num_workers": getattr(it, "_num_workers", None),
            "batch_size": batch_size if isinstance(batch_size, int) else None,
            "pin_memory": bool(getattr(it, "_pin_memory", False)),  # in effect
            "pin_memory_asked": self._pin_asked.get(it),
            "prefetch_factor": getattr(it, "_prefetch_factor", None),
            "persistent_workers": bool(getattr(it, "_persistent_workers", False)),
            "timeout": getattr(it, "_timeout", None),
            "start_method": start_method,
            "sampler": type(inner).__name__ if inner is not None else None,
            "collate_fn": getattr(getattr(it, "_collate_fn", None), "__name__", None),
            "drop_last": getattr(it, "_drop_last", None),
        }

    def _after_fetch(self, start: int, cpu_start: int, index: Any) -> None:
        try:
            self._record_fetch(start, cpu_start, index)
        except Exception as exc:
            self._on_error("dataset fetch hook", exc)

    def _record_fetch(self, start: int, cpu_start: int, index: Any) -> None:
        now = _now()
        cpu_now = _cpu()
        cpu = cpu_now - cpu_start
        worker = self._worker_id
        if worker is None:
            worker = self._find_worker_id()
        try:
            items = len(index)
        except TypeError:
            items = 1
        self._buffer.add(fmt.FETCH, start, now - start, cpu, worker, items)
        # This hook's own cost as CPU time: it runs in DataLoader workers, whose other threads
        # (the result queue's feeder) take the GIL, and on busy cores the wall time around a
        # handoff was mostly someone else's work (1-2 ms per batch measured, against ~10 us).
        self.hook_ns += _cpu() - cpu_now

    def _find_worker_id(self) -> int:
        module = sys.modules.get("torch.utils.data._utils.worker")
        info = getattr(module, "_worker_info", None)
        worker = int(getattr(info, "id", -1)) if info is not None else -1
        self._worker_id = worker
        if worker >= 0:
            if self._on_worker is not None:
                self._on_worker()
            self._buffer.event(
                {
                    "type": "worker",
                    "t": _now(),
                    "worker": worker,
                    "num_workers": getattr(info, "num_workers", None),
                    "dataset": type(getattr(info, "dataset", None)).__qualname__,
                }
            )
        return worker

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

    # -- facts (polled from the agent thread, and at the first step) ----------------------------

    def record_facts(self, torch: ModuleType) -> None:
        if not _ready(torch):
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

    def poll(self, now: int) -> None:
        """Version and threads, distributed facts and CUDA memory; cheap, from the agent thread
        (and once at exit). The facts are also taken at the first optimizer or DataLoader, but a
        program with neither (inference) has them only from here: when the import hook runs, torch
        is not yet marked imported."""
        torch = sys.modules.get("torch")
        if torch is None or not _ready(torch):
            return
        self.record_facts(torch)
        if self._compile_handler is not None:
            try:
                self._register_compile_callbacks()
            except Exception as exc:
                self._on_error("compile callbacks", exc)
        self._poll_distributed()
        self._poll_cuda(torch, now)

    def _poll_distributed(self) -> None:
        dist = sys.modules.get("torch.distributed")
        if dist is None or not _ready(dist):
            return
        try:
            if not (dist.is_available() and dist.is_initialized()):
                return
            seen = (int(dist.get_rank()), int(dist.get_world_size()))
            if seen != self._dist_seen:
                self._dist_seen = seen
                self._buffer.event(
                    {
                        "type": "distributed",
                        "t": _now(),
                        "rank": seen[0],
                        "world_size": seen[1],
                        "backend": str(dist.get_backend()),
                    }
                )
        except Exception as exc:
            self._on_error("torch.distributed facts", exc)

    def _poll_cuda(self, torch: ModuleType, now: int) -> None:
        cuda = sys.modules.get("torch.cuda")
        if cuda is None or not _ready(cuda):
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


def _ready(module: ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    return not getattr(spec, "_initializing", False)


def host_waits_for_gpu(
    hooks: TorchHooks, original: Any, code: int, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """A call that makes the host wait for the GPU, timed. A stack sampled while the host waits
    has this function's frame in it: that is how the analysis tells a wait for the GPU from the
    program's own code (``probe.analysis.stacks``), so its name is part of the session's meaning."""
    start = _now()
    try:
        return original(*args, **kwargs)
    finally:
        hooks.after_sync(start, code)
