"""The recommendation panel's content: one view per verdict, its evidence in words."""

from __future__ import annotations

import math
import re
import shlex
from typing import Any

import numpy as np

from probe.analysis.detectors.base import INSUFFICIENT, OK, Finding, mb, ms, pct
from probe.analysis.diagnosis import HEALTHY, INSUFFICIENT_DATA, VERDICTS, Diagnosis
from probe.analysis.timeline import Timeline
from probe.report import recommendations
from probe.report.downsample import merge_bars
from probe.report.page import VERDICT_GRAPHS, Bands, Frame, StackView, VerdictView, clean
from probe.report.recommendations import Recommendation

MAX_WINDOWS = 300  # issue windows shaded per verdict
MAX_STACK_FRAMES = 12


def verdict_views(d: Diagnosis, present: set[str]) -> list[VerdictView]:
    tl = d.timeline
    subs = _substitutions(tl)
    order: list[str] = [f.id for f in d.issues]
    if d.category not in order:
        order.insert(0, d.category)
    rest = [v for v in VERDICTS if v not in order]
    status_rank = {OK: 0, INSUFFICIENT: 1}
    rest.sort(key=lambda v: (status_rank.get(_status(d, v), 2), VERDICTS.index(v)))
    views = []
    available = set(recommendations.available())
    for vid in order + rest:
        if vid not in available:
            continue
        finding = d.findings.get(vid)
        status = _status(d, vid)
        rec = recommendations.load(vid)
        views.append(
            VerdictView(
                id=vid,
                status=status,
                is_verdict=vid == d.category,
                title=clean((finding.title if finding and finding.title else "") or rec.title, 300),
                severity=finding.severity if finding and status == "issue" else None,
                impact=float(finding.impact) if finding and status == "issue" else 0.0,
                bullets=_bullets(d, vid, finding, status, rec),
                evidence=_evidence(finding.evidence) if finding else [],
                reason=clean(_reason(d, vid, finding, status), 600),
                graphs=[g for g in VERDICT_GRAPHS.get(vid, ()) if g in present],
                windows=(
                    _windows(finding)
                    if finding and status == "issue" and vid not in (HEALTHY, INSUFFICIENT_DATA)
                    else None
                ),
                stacks=_stacks(finding.stacks) if finding else [],
                recommendation=rec,
                substitutions=subs,
            )
        )
    return views


def _status(d: Diagnosis, vid: str) -> str:
    finding = d.findings.get(vid)
    if vid == d.category or (finding is not None and finding.is_issue):
        return "issue"
    if vid in (HEALTHY, INSUFFICIENT_DATA):
        return OK
    return finding.status if finding is not None else INSUFFICIENT


def _reason(d: Diagnosis, vid: str, finding: Finding | None, status: str) -> str:
    if status == "issue":
        return ""
    if vid == HEALTHY:
        return (
            "Not enough data to call the run healthy."
            if d.category == INSUFFICIENT_DATA
            else "Issues were found (see above)."
        )
    if vid == INSUFFICIENT_DATA:
        return "There was enough data to judge the run."
    if finding is None:
        return "This check did not run."
    return finding.reason or ""


_SENTENCE = re.compile(r"(?<=[.;])\s+(?=[A-Z(])")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def _bullets(
    d: Diagnosis, vid: str, finding: Finding | None, status: str, rec: Recommendation
) -> list[str]:
    if status != "issue":
        return []
    out: list[str] = []
    summary = finding.summary if finding is not None else ""
    if vid == HEALTHY:
        summary = d.headline
    out.extend(sentences(summary)[:3])
    if finding is not None and finding.windows and vid not in (HEALTHY, INSUFFICIENT_DATA):
        total = sum(b - a for a, b in finding.windows)
        if len(finding.windows) > 1:
            out.append(
                f"Seen in {len(finding.windows)} stretches of the run, {total:.1f} s in all "
                "(shaded red on the graphs)."
            )
    first = finding.next_step if finding is not None and finding.next_step else rec.first_step
    if first:
        out.append(f"First thing to try: {first}.")
    return [clean(b, 500) for b in out[:4]]


def _pretty_key(key: str) -> str:
    """``median_step_ms`` -> ``Median step`` (the unit goes with the value)."""
    bare = re.sub(r"(^|_)(mb|kb|gb)(_per_[a-z]+)?(?=_ci95$|$)", "", key)
    key = re.sub(r"(?<!_per)_(ms|s)(?=_ci95$|$)", "", bare) or key
    words = key.replace("_ci95", " (95 % interval)").replace("_", " ")
    return words[:1].upper() + words[1:]


_SIZE_UNITS = {"mb": "MB", "kb": "kB", "gb": "GB"}


def _number(v: float) -> str:
    if v == int(v) and abs(v) < 1e6:
        return f"{int(v):,}".replace(",", " ")
    return f"{v:.3g}"


def format_value(key: str, value: Any) -> str:
    """An evidence value in plain words, the unit read from the key: ``*_share`` as %, ``*_ms``
    and ``*_s`` as durations, ``*_mb``/``*_mb_per_s``/``*_kb_per_step`` with their unit, bytes
    as MB."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, dict):
        items = [
            f"{k}: {format_value(str(k), v)}"
            for k, v in value.items()
            if not str(k).startswith("_")
        ]
        return clean(", ".join(items), 300)
    if isinstance(value, (list, tuple)):
        if key.endswith("_ci95") and len(value) == 2:
            return f"{format_value(key[:-5], value[0])} to {format_value(key[:-5], value[1])}"
        return clean(
            ", ".join(format_value(key, v) for v in list(value)[:8])
            + (" …" if len(value) > 8 else ""),
            300,
        )
    if not isinstance(value, (int, float, np.integer, np.floating)):
        return clean(value, 300)
    v = float(value)
    if not math.isfinite(v):
        return "n/a"
    tokens = key.lower().split("_")
    if key == "pid" or key.endswith(("_pid", "pids")):
        return str(int(v))
    if key.endswith(("bytes", "rss")):
        return mb(v)
    size = next((_SIZE_UNITS[t] for t in tokens if t in _SIZE_UNITS), None)
    if size is not None:
        per = " ".join(tokens[tokens.index("per") + 1 :]) if "per" in tokens else ""
        per = {"s": "/s", "": ""}.get(per, f" per {per}")
        return f"{_number(round(v, 1) if abs(v) >= 10 else v)} {size}{per}"
    if isinstance(value, (int, np.integer)):
        return _number(v)
    if key.endswith("share") or key == "impact":
        return pct(v)
    if key.endswith("_ms"):
        return f"{v:.1f} ms" if v < 10 else f"{v:.0f} ms"
    if key.endswith("_per_s"):
        return f"{v:.3g}/s"
    if key.endswith("_s") or key.startswith("seconds_"):
        return ms(v) if v < 60 else _duration(v)
    if key.endswith(("_cpu", "_cores")) or key == "cores":
        return f"{v:.2f} cores"
    return f"{v:.3g}"


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _evidence(evidence: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key, value in evidence.items():
        if str(key).startswith("_") or key == "stacks":
            continue
        out.append((clean(_pretty_key(str(key)), 80), format_value(str(key), value)))
    return out[:24]


def _windows(finding: Finding) -> Bands | None:
    if not finding.windows:
        return None
    w = np.array(sorted(finding.windows), dtype=np.float64)
    if len(w) > MAX_WINDOWS:
        s, e, _, _ = merge_bars(w[:, 0], w[:, 1], 0.0, MAX_WINDOWS)
    else:
        s, e = w[:, 0], w[:, 1]
    return Bands(label=f"where {finding.id} was seen", start=s, end=e, style="issue")


def _stacks(stacks: list[dict[str, Any]]) -> list[StackView]:
    out = []
    for s in stacks[:5]:
        frames = [
            Frame(
                func=clean(f.get("func", "?"), 120),
                file=clean(f.get("file", ""), 300),
                line=int(f.get("line") or 0),
            )
            for f in s.get("frames", [])
        ]
        hidden = max(len(frames) - MAX_STACK_FRAMES, 0)
        out.append(
            StackView(
                share=float(s.get("share", 0.0)),
                state=clean(s.get("state", ""), 30),
                frames=frames[hidden:],
                hidden=hidden,
            )
        )
    return out


def _substitutions(tl: Timeline) -> dict[str, str]:
    """The recommendation texts' example command, replaced by this run's own (its pids are
    not filled in: the run has ended, they would name nothing)."""
    argv = [str(a) for a in tl.session.meta.get("argv") or []]
    if not argv or any("`" in a for a in argv):
        return {}
    return {"python train.py": clean(" ".join(shlex.quote(a) for a in argv), 400)}
