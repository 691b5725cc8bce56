"""Optimizer steps: global optimizer step pre/post hooks; a step ends when ``optimizer.step()``
returns (part of probe.collectors.torch.TorchHooks)."""

from __future__ import annotations

import sys
import threading
import time
from types import ModuleType
from typing import Any

from probe.collectors.torch.state import HookState
from probe.session import format as fmt

_now = time.monotonic_ns
_tid = threading.get_native_id


class OptimizerHooks(HookState):
    def _hook_optimizer(self, module: ModuleType) -> None:
        pre = module.register_optimizer_step_pre_hook(self._pre_step)
        post = module.register_optimizer_step_post_hook(self._post_step)
        self._restore.append(pre.remove)
        self._restore.append(post.remove)

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
