"""DataLoader waits and batch production (part of probe.collectors.torch.TorchHooks).

``_BaseDataLoaderIter.__next__`` is timed in the process that iterates, each iterator's loader
described once; the dataset fetchers are timed (wall and CPU) where they run: in each DataLoader
worker, or in the main process when ``num_workers=0``.
"""

from __future__ import annotations

import sys
import threading
import time
from types import ModuleType
from typing import Any

from probe.collectors.torch.state import HookState
from probe.session import format as fmt

_now = time.monotonic_ns
_cpu = time.thread_time_ns
_tid = threading.get_native_id


class LoaderHooks(HookState):
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
