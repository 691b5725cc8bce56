"""The comparison as the ``probe.compare/1`` JSON document (docs/compare-schema.md)."""

from __future__ import annotations

import json
import math
from typing import Any

from probe.compare import stats, words
from probe.compare.compare import Comparison, IssueChange, Row, SideRuns
from probe.compare.measures import SINGLE_RUN_FLOOR, describe_unit, summary_of
from probe.compare.render import CompareOutputs, ComparisonRenderer

SCHEMA = "probe.compare/1"


def _num(x: float | None, digits: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def _side(side: SideRuns) -> dict[str, Any]:
    return {
        "path": side.path,
        "program": side.program,
        "commands": side.commands,
        "category": side.category,
        "verdict": words.side_verdict(side),
        "runs": [summary_of(r) for r in side.runs],
    }


def _row(row: Row) -> dict[str, Any]:
    m = row.measure
    return {
        "id": m.id,
        "title": m.title,
        "kind": m.kind,
        "scale": m.scale,
        "better": m.better,
        "a": _num(row.a),
        "b": _num(row.b),
        "a_runs": [_num(v) for v in row.a_runs],
        "b_runs": [_num(v) for v in row.b_runs],
        "change": _num(row.change),
        "ci95": (
            [_num(row.low), _num(row.high)]
            if row.low is not None and row.high is not None
            else None
        ),
        "p_value": _num(row.p_value, 4),
        "level": row.level or None,
        "result": row.result,
        "verdict": row.verdict,
        "confidence": row.confidence,
        "smallest_detectable": _num(row.smallest),
        "note": row.note,
    }


def _issue(issue: IssueChange, c: Comparison) -> dict[str, Any]:
    return {
        "id": issue.id,
        "change": issue.change,
        "a": {
            "runs": issue.a_runs,
            "severity": issue.a_severity,
            "impact": _num(issue.a_impact, 4),
        },
        "b": {
            "runs": issue.b_runs,
            "severity": issue.b_severity,
            "impact": _num(issue.b_impact, 4),
        },
        "text": words.issue_change(issue, c),
    }


def to_json(c: Comparison) -> dict[str, Any]:
    """The probe.compare/1 document."""
    primary = c.primary
    return {
        "schema": SCHEMA,
        "a": _side(c.a),
        "b": _side(c.b),
        "design": {
            "runs": [len(c.a.runs), len(c.b.runs)],
            "level": c.level,
            "mirrored": c.mirrored,
            "order": c.order or None,
            "alpha": stats.ALPHA,
            "single_run_floor": SINGLE_RUN_FLOOR if c.level == "within-run" else None,
            "unit": c.unit or None,
            "unit_text": describe_unit(c.unit) if c.unit else None,
            "text": words.design(c),
        },
        "verdict": {
            "measure": primary.measure.id if primary is not None else None,
            "result": primary.result if primary is not None else None,
            "verdict": primary.verdict if primary is not None else None,
            "change": _num(primary.change) if primary is not None else None,
            "ci95": (
                [_num(primary.low), _num(primary.high)]
                if primary is not None and primary.low is not None and primary.high is not None
                else None
            ),
            "p_value": _num(primary.p_value, 4) if primary is not None else None,
            "text": words.headline(c),
        },
        "measures": [_row(r) for r in c.rows],
        "diagnosis": {
            "a": c.a.category,
            "b": c.b.category,
            "change": words.verdict_change(c),
            "issues": [_issue(i, c) for i in c.issues],
        },
        "warnings": list(c.warnings),
    }


def dumps(c: Comparison) -> str:
    return json.dumps(to_json(c), indent=2) + "\n"


class JsonRenderer(ComparisonRenderer):
    name = "json"
    suffix = ".json"

    def render(self, comparison: Comparison, outputs: CompareOutputs) -> str:
        return dumps(comparison)
