"""The order of a run's issues: by impact, except where one issue causes another.

A cause comes before the symptom it produces, whatever their impacts (the pairs are listed in
``causes_first``), and the program's own issues before other jobs taking the machine's cores.
"""

from __future__ import annotations

import numpy as np

from probe.analysis.detectors.base import Finding
from probe.analysis.timeline import Timeline


def program_first(issues: list[Finding]) -> list[Finding]:
    """The program's own issues before other jobs taking the machine's cores.

    What holds the program back is the verdict; a machine shared with other jobs is the context
    its timings were taken in (cpu-oversubscription with ``pressure`` "other jobs"): the verdict
    only when nothing else was found, where the run would otherwise be called healthy.
    """
    others = [f for f in issues if f.evidence.get("pressure") == "other jobs"]
    return [f for f in issues if f not in others] + others


def _collector_before_interpreter(issues: list[Finding]) -> list[Finding]:
    """A high gc-pauses before a python-bound that rests on the interpreter sign alone.

    Both are the interpreter's time: a loop whose Python allocates enough containers to spend a
    high share (``gc_pauses.HIGH``) in the collector has its GIL-holding time made by the same
    allocations. The collector's share is measured to the millisecond and its fix is one line
    (``gc.freeze()`` after start-up, thresholds); the interpreter sign is a sampled share whose fix
    rewrites the Python. So the specific, cheaper cause leads and python-bound follows it. With
    tiny operators or an idle pool, python-bound is dispatch overhead, another mechanism: impacts
    decide.
    """
    ids = [f.id for f in issues]
    if "gc-pauses" not in ids or "python-bound" not in ids:
        return issues
    gc, interp = ids.index("gc-pauses"), ids.index("python-bound")
    if gc < interp or issues[gc].severity != "high":
        return issues
    if list(issues[interp].evidence.get("signs", [])) != ["interpreter"]:
        return issues
    reordered = [f for i, f in enumerate(issues) if i != gc]
    reordered.insert(interp, issues[gc])
    return reordered


def causes_first(issues: list[Finding], tl: Timeline | None = None) -> list[Finding]:
    """Put a cause before the symptom it produces, whatever their impacts.

    Four pairs are known. A loop that waits for DataLoader workers that are busy computing
    (input-bound) while those same workers are what oversubscribes the cores (without them the
    job would not have more runnable threads than cores): the training thread's waits for a core
    are then the input pipeline's doing, and its fix (cheaper transforms, fewer or lighter
    workers) is input-bound's; cpu-oversubscription stays listed, after it. A server whose pool
    threads hold the GIL (thread-pool-saturated) while its event loop, late, seldom ran on a core
    and found the GIL held (event-loop-blocked, held off: ``serving.loop_while_late``): the
    loop's lag is the pool's doing. And
    torch.compile recompiling in the loop: the stalls it causes (most of periodic-stall's stalls
    overlap a compilation) and the memory each compiled variant adds (most of the process's RSS
    growth happened while compiling) are its doing, and so is their fix.
    """
    issues = _collector_before_interpreter(issues)
    ids = [f.id for f in issues]
    if "input-bound" in ids and "cpu-oversubscription" in ids:
        symptom = issues[ids.index("cpu-oversubscription")]
        evidence = symptom.evidence
        # Not when the cores are taken by other jobs rather than by the workers.
        if (
            not evidence.get("oversubscribed_without_workers", True)
            and evidence.get("pressure") != "other jobs"
        ):
            issues = _before(issues, "input-bound", "cpu-oversubscription")
    ids = [f.id for f in issues]
    if "thread-pool-saturated" in ids and "event-loop-blocked" in ids:
        cause = issues[ids.index("thread-pool-saturated")]
        if cause.evidence.get("loop_held_off") is True:
            issues = _before(issues, "thread-pool-saturated", "event-loop-blocked")
    ids = [f.id for f in issues]
    if "recompilation" in ids and "periodic-stall" in ids:
        cause_f, symptom_f = issues[ids.index("recompilation")], issues[ids.index("periodic-stall")]
        if _covered(symptom_f.windows, cause_f.windows):
            issues = _before(issues, "recompilation", "periodic-stall")
    ids = [f.id for f in issues]
    if tl is not None and "recompilation" in ids and "memory-growth" in ids:
        cause_f, growth = issues[ids.index("recompilation")], issues[ids.index("memory-growth")]
        if (
            growth.evidence.get("memory") == "rss"
            and _grew_while(tl, int(growth.evidence["pid"]), cause_f.windows) >= 0.5
        ):
            issues = _before(issues, "recompilation", "memory-growth")
    return issues


def _grew_while(tl: Timeline, pid: int, windows: list[tuple[float, float]]) -> float:
    """The share of a process's RSS growth over the windows' span that happened in grid bins
    touching one of them (the next bin too: RSS is read every 100 ms)."""
    rss = tl.rss.get(pid)
    if rss is None or not windows:
        return 0.0
    lo = tl.bin_of(min(a for a, _ in windows))
    hi = tl.bin_of(max(b for _, b in windows)) + 2
    step = np.diff(np.nan_to_num(rss[lo : hi + 1], nan=0.0))
    rising = np.clip(step, 0.0, None)
    total = float(rising.sum())
    if total <= 0:
        return 0.0
    during = np.zeros(len(step), dtype=bool)
    for a, b in windows:
        i0, i1 = tl.bin_of(a) - lo, tl.bin_of(b) - lo + 1
        during[max(i0, 0) : min(i1 + 1, len(during))] = True
    return float(rising[during].sum()) / total


def _before(issues: list[Finding], cause_id: str, symptom_id: str) -> list[Finding]:
    """``cause_id`` moved just before ``symptom_id`` if it came after; others keep their place."""
    ids = [f.id for f in issues]
    cause, symptom = ids.index(cause_id), ids.index(symptom_id)
    if cause < symptom:
        return issues
    reordered = [f for i, f in enumerate(issues) if i != cause]
    reordered.insert(symptom, issues[cause])
    return reordered


def _covered(
    symptom: list[tuple[float, float]], cause: list[tuple[float, float]], share: float = 0.5
) -> bool:
    """Whether most of the symptom's windows (at least ``share``) overlap one of the cause's."""
    if not symptom or not cause:
        return False
    hits = sum(1 for a, b in symptom if any(a < d and c < b for c, d in cause))
    return hits >= share * len(symptom)
