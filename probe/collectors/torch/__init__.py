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

The parts live in their own modules, each a mixin of one shared state (``state.HookState``):
``steps`` (optimizer), ``rhythm`` (backward passes, graph size, top-level module calls),
``loader`` (DataLoader, fetchers), ``dynamo`` (compilations) and ``cuda`` (memory, host syncs).
"""

from __future__ import annotations

import sys
import time
from types import ModuleType

from probe.collectors.torch.cuda import CudaHooks
from probe.collectors.torch.dynamo import DynamoHooks
from probe.collectors.torch.loader import LoaderHooks
from probe.collectors.torch.rhythm import RhythmHooks
from probe.collectors.torch.state import ready
from probe.collectors.torch.steps import OptimizerHooks

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

_now = time.monotonic_ns

__all__ = ["WATCHED", "TorchHooks"]


class TorchHooks(OptimizerHooks, RhythmHooks, LoaderHooks, DynamoHooks, CudaHooks):
    """Every torch hook of one process, on one state (see the module docstring)."""

    def on_module(self, name: str, module: ModuleType) -> None:
        """Called once each module of ``WATCHED`` has been imported by the target."""
        getattr(self, WATCHED[name])(module)

    def _on_torch(self, torch: ModuleType) -> None:
        self.record_facts(torch)
        self._start_forward_discovery()

    def poll(self, now: int) -> None:
        """Version and threads, distributed facts and CUDA memory; cheap, from the agent thread
        (and once at exit). The facts are also taken at the first optimizer or DataLoader, but a
        program with neither (inference) has them only from here: when the import hook runs, torch
        is not yet marked imported."""
        torch = sys.modules.get("torch")
        if torch is None or not ready(torch):
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
        if dist is None or not ready(dist):
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
