"""One module per verdict. Each has ``ID`` (the verdict id) and ``detect(ctx) -> Finding``."""

from __future__ import annotations

from types import ModuleType

from probe.analysis.detectors import (
    cpu_oversubscription,
    event_loop_blocked,
    gc_pauses,
    gpu_underutilized,
    host_sync_stalls,
    input_bound,
    io_bound,
    memory_growth,
    periodic_stall,
    python_bound,
    recompilation,
    request_queueing,
    straggler_rank,
    thread_pool_saturated,
)

# In the order of the verdict ids in docs/diagnosis-schema.md.
ALL: tuple[ModuleType, ...] = (
    input_bound,
    gc_pauses,
    memory_growth,
    cpu_oversubscription,
    python_bound,
    io_bound,
    periodic_stall,
    event_loop_blocked,
    thread_pool_saturated,
    request_queueing,
    straggler_rank,
    host_sync_stalls,
    gpu_underutilized,
    recompilation,
)
