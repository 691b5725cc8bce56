"""recompilation: torch.compile keeps compiling inside the steady state.

Measures the compilations that start inside the analysed window in the training processes, as
torch.compile's own start and end callbacks reported them (the agent's ``compile`` events: when,
how long, the function dynamo traced, the guard that failed); for sessions without them (an older
torch, TorchScript) the main thread's stack samples that were compiling, grouped into episodes
(stacks.py tells compiling from running compiled code). Compiling before the loop is start-up
(phases.py), never this verdict.

Thresholds: the loop's wall time spent compiling, ``MODERATE`` moderate and ``HIGH`` high (the
shares of the loop lost that input-bound takes from the TensorBoard profiler's input-pipeline
analysis), and at least ``MIN_COMPILATIONS`` compilations in the window: one late compilation
(switching to eval mode, a last short batch) is an event, not recompilation that keeps
happening. dynamo's own limit (``torch._dynamo.config.recompile_limit``, 8 compilations of one
function by default) is reported: a function that reached it runs eagerly, without compilation,
from then on.

Impact is the compile time inside the window as a share of its wall time. What would fool it:
a program that compiles new functions on purpose inside its loop (a fresh model each epoch) reads
the same, and says so through the functions named; a compilation that dynamo started but whose
end callback never ran (the process died mid-compile) is not recorded.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from probe.analysis.detectors.base import (
    MIN_WINDOW_S,
    Context,
    Finding,
    insufficient,
    not_detected,
    severity,
)
from probe.analysis.stacks import STATE
from probe.analysis.timeline import Compilation
from probe.units import Count, Duration, Number, Rate, Share, duration, percent

ID = "recompilation"
MODERATE = Share(0.05)
HIGH = Share(0.20)
MIN_COMPILATIONS = Count(2)
# Compiling stack samples closer than this belong to one compilation (samples come every 10-100 ms).
EPISODE_GAP_S = Duration(0.3)
MAX_FUNCTIONS = 5


def detect(ctx: Context) -> Finding:
    tl = ctx.tl
    t0, t1 = ctx.window
    if ctx.wall < MIN_WINDOW_S:
        return insufficient(ID, f"needs at least {MIN_WINDOW_S:g} s of steady state")
    pids = ctx.training_pids
    events = [c for c in tl.compilations if c.pid in pids and t0 <= c.start < t1]
    source = "compile events"
    if events:
        spans = [(c.start, min(c.end, t1)) for c in events]
    else:
        spans = _episodes(ctx, pids)
        source = "stack samples"
        if not any(c.pid in pids for c in tl.compilations) and not spans:
            return not_detected(
                ID, "nothing was compiled in the steady state", compilations=Count(0)
            )
    seconds = float(sum(b - a for a, b in spans))
    share = seconds / ctx.wall
    # a backward graph compiled on first use shares its forward's compile id: one compilation
    count = len({(c.pid, c.compile_id) for c in events}) if events else len(spans)
    steps = len(ctx.all_steps)
    limit = next((c.recompile_limit for c in events if c.recompile_limit is not None), None)
    evidence: dict[str, Any] = {
        "compile_share": Share(round(share, 4)),
        "compile_s": Duration(round(seconds, 3)),
        "compilations": Count(count),
        "recompilations": Count(len({(c.pid, c.compile_id) for c in events if c.attempt > 0})),
        "per_minute": Rate(round(count * 60.0 / ctx.wall, 2), per="min"),
        "steps_per_compilation": (
            Number(round(steps / count, 1), "steps") if count and steps else None
        ),
        "median_compile_ms": (
            Duration(round(1000 * float(np.median([b - a for a, b in spans])), 1), "ms")
            if spans
            else None
        ),
        "longest_compile_ms": Duration(
            round(1000 * max((b - a for a, b in spans), default=0.0), 1), "ms"
        ),
        "functions": _functions(events, tl.compilations),
        "recompile_limit": Count(limit) if limit is not None else None,
        "source": source,
    }
    sev = severity(share, MODERATE, HIGH)
    if count < MIN_COMPILATIONS or sev is None:
        return not_detected(
            ID,
            f"{count} compilation{'s' if count != 1 else ''} in the steady state, "
            f"{percent(share)} of its time",
            **evidence,
        )
    how_often = (
        f"one every {evidence['steps_per_compilation']:g} steps"
        if evidence["steps_per_compilation"]
        else f"{evidence['per_minute']:g} a minute"
    )
    title = f"torch.compile keeps recompiling: {percent(share)} of the loop spent compiling"
    median = float(np.median([b - a for a, b in spans]))
    summary = (
        f"{count} compilations started inside the steady state ({how_often}) and took "
        f"{duration(seconds)}, {percent(share)} of it (median {duration(median)} each); "
        "compilation before "
        "the loop is start-up and is not counted."
    )
    functions = evidence["functions"]
    summary += _what_compiled(functions, evidence["recompile_limit"], source)
    stacks = ctx.tl.stacks.top(_compile_samples(ctx, pids), 3)
    return Finding(
        id=ID,
        status="issue",
        title=title,
        summary=summary,
        severity=sev,
        impact=min(share, 1.0),
        evidence=evidence,
        windows=spans,
        stacks=stacks,
        next_step=_next_step(functions),
    )


def _what_compiled(functions: list[dict[str, Any]], limit: Any, source: str) -> str:
    """The summary's sentences on the function compiled most, its failed guard and whether it
    reached dynamo's recompile limit ``limit``."""
    summary = ""
    if functions:
        top = functions[0]
        summary += f" Compiled most: {top['function']} ({top['compilations']} times)"
        if top["reasons"]:
            summary += f"; the guard that failed: {top['reasons'][0]}"
        summary += "."
        capped = [f["function"] for f in functions if f["limit_reached"]]
        if capped and limit:
            summary += (
                f" {capped[0]} reached dynamo's recompile limit ({limit}): "
                "from then on it runs eagerly, without compilation."
            )
    elif source == "stack samples":
        summary += " (Seen in stack samples: this torch did not report its compilations.)"
    return summary


def _functions(events: list[Compilation], every: list[Compilation]) -> list[dict[str, Any]]:
    """The functions compiled in the window, most compiled first: how often, how long, why."""
    by: dict[str, list[Compilation]] = {}
    for c in events:
        by.setdefault(c.where or f"frame {c.frame or '?'}", []).append(c)
    out = []
    for where, cs in sorted(by.items(), key=lambda kv: (-sum(c.dur for c in kv[1]), kv[0])):
        reasons = Counter(_reason(c.reason) for c in cs if c.reason)
        limit = next((c.recompile_limit for c in cs if c.recompile_limit is not None), None)
        # how often dynamo compiled this frame over the whole run, start-up included
        attempts = max(
            (c.attempt for c in every if c.pid == cs[0].pid and c.frame == cs[0].frame), default=0
        )
        out.append(
            {
                "function": where,
                "compilations": Count(len({c.compile_id for c in cs})),
                "seconds": Duration(round(sum(c.dur for c in cs), 3)),
                "reasons": [r for r, _ in reasons.most_common(3)],
                "limit_reached": bool(limit is not None and attempts + 1 >= limit),
            }
        )
    return out[:MAX_FUNCTIONS]


def _reason(text: str) -> str:
    """A guard failure without dynamo's "<frame>/<n>: " prefix."""
    head, sep, rest = text.partition(": ")
    return rest if sep and "/" in head and len(head) < 16 else text


def _next_step(functions: list[dict[str, Any]]) -> str:
    reasons = " ".join(r for f in functions for r in f["reasons"])
    if "size mismatch" in reasons or "stride mismatch" in reasons:
        return "Stop shapes from changing, or mark the changing dimension dynamic"
    return ""


def _compile_samples(ctx: Context, pids: list[int]) -> Any:
    st = ctx.tl.stacks
    mask = np.zeros(len(st), dtype=bool)
    for pid in pids:
        mask |= ctx.main_samples(pid)
    return mask & (st.state == STATE["compile"])


def _episodes(ctx: Context, pids: list[int]) -> list[tuple[float, float]]:
    """Compilations seen in the main thread's stack samples: runs of compiling samples."""
    st = ctx.tl.stacks
    mask = _compile_samples(ctx, pids)
    if not mask.any():
        return []
    t = st.t[mask]
    w = st.weight[mask]
    order = np.argsort(t)
    t, w = t[order], w[order]
    breaks = np.flatnonzero(np.diff(t) > EPISODE_GAP_S) + 1
    out = []
    for a, b in zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [len(t)]])):
        out.append((float(t[a]), float(t[a] + w[a:b].sum())))
    return out
