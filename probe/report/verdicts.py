"""The recommendation panel's content: one view per verdict, its evidence in words."""

from __future__ import annotations

import re
import shlex
from typing import Any

import numpy as np

from probe import units
from probe.analysis.detectors import ALL as DETECTORS
from probe.analysis.detectors.base import INSUFFICIENT, OK, Finding
from probe.analysis.diagnosis import HEALTHY, INSUFFICIENT_DATA, VERDICTS, Diagnosis
from probe.analysis.timeline import Timeline
from probe.report import recommendations
from probe.report.downsample import merge_bars
from probe.report.model import VERDICT_GRAPHS, Bands, Frame, StackView, VerdictView, clean
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
                cost=_cost(d, vid, finding.impact if finding and status == "issue" else 0.0),
            )
        )
    return views


def _cost(d: Diagnosis, vid: str, impact: float) -> str:
    """The impact in words: a share of the steady state, of the time under load (a server), or
    of what the verdict's detector says its impact is a share of (``IMPACT_OF``)."""
    if not impact > 0:
        return ""
    detector = next((m for m in DETECTORS if vid == m.ID), None)
    of = getattr(detector, "IMPACT_OF", None) or (
        "the time under load" if d.segmentation.method == "load" else "the steady state"
    )
    return f"costs about {units.percent(impact)} of {of}"


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


def _evidence(evidence: dict[str, Any]) -> list[tuple[str, str]]:
    """The evidence as (words for the key, the value in words), in the detector's order."""
    out = []
    for key, value in evidence.items():
        if str(key).startswith("_") or key == "stacks":
            continue
        out.append((clean(units.label(str(key), value), 80), clean(units.text(value), 300)))
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
