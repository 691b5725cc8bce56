"""What to do about each verdict: one Markdown template per verdict, the source of docs/verdicts/.

Each file has a title line (``# <id>: <plain title>``), a paragraph saying what the verdict
means, and sections: ``## How probe decides``, ``## Next steps`` (a numbered list; the first
item's bold lead is the terminal's "next:" line), ``## Deeper tools`` and ``## References``.

A threshold is never written in a text: ``{{ MODERATE }}`` cites the constant of the verdict's
detector (or ``MIN_STEPS``, ``MIN_WINDOW_S`` of every detector, or what the agent measures with:
``LAG_TIMER``, ``GRAPH_EVERY``, ``GRAPH_PERIOD``), and ``load`` fills it in with its unit
(``5 %``, ``40 µs``, ``32 MB``). The pages in docs/verdicts/ are these texts filled in, made by
``python -m probe.report.recommendations docs/verdicts`` and checked by a test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import ModuleType

from probe import units

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Z][A-Z0-9_]*)\s*\}\}")


@dataclass
class Recommendation:
    id: str
    title: str
    meaning: str  # the paragraph under the title: what the verdict means, "when present..."
    sections: dict[str, str] = field(default_factory=dict)  # heading -> markdown body
    markdown: str = ""

    @property
    def first_step(self) -> str:
        """The bold lead of the first next step, as plain text."""
        body = self.sections.get("Next steps", "")
        m = re.search(r"^\s*1\.\s+\*\*(.+?)\*\*", body, re.MULTILINE)
        if m:
            return m.group(1).rstrip(".:")
        m = re.search(r"^\s*1\.\s+(.+)$", body, re.MULTILINE)
        return m.group(1).strip() if m else ""


def available() -> list[str]:
    files = resources.files(__name__)
    return sorted(p.name[:-3] for p in files.iterdir() if p.name.endswith(".md"))


def template(verdict: str) -> str:
    """The verdict's text as written, its thresholds still ``{{ NAME }}``."""
    return resources.files(__name__).joinpath(f"{verdict}.md").read_text(encoding="utf-8")


@cache
def load(verdict: str) -> Recommendation:
    return parse(verdict, fill(verdict, template(verdict)))


def fill(verdict: str, text: str) -> str:
    """``text`` with every ``{{ NAME }}`` replaced by the constant's value in words."""
    facts = constants(verdict)

    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in facts:
            raise LookupError(
                f"the {verdict} text cites {{{{ {name} }}}}, which is no typed constant of its "
                f"detector (known: {', '.join(sorted(facts))})"
            )
        return units.markdown(facts[name])

    return _PLACEHOLDER.sub(value, text)


def constants(verdict: str) -> dict[str, object]:
    """The typed constants a verdict's text may cite: the agent's, every detector's shared ones,
    and its own detector's (the diagnosis's for healthy and insufficient-data)."""
    from probe.analysis import diagnosis
    from probe.analysis.detectors import ALL, base
    from probe.collectors import asyncio as loop_lag
    from probe.collectors.torch import rhythm as torch_rhythm

    facts: dict[str, object] = {
        "LAG_TIMER": units.Duration(loop_lag.DEFAULT_INTERVAL_S),
        "GRAPH_EVERY": units.Count(torch_rhythm.GRAPH_EVERY),
        "GRAPH_PERIOD": units.Duration(torch_rhythm.GRAPH_PERIOD_NS / 1e9),
    }
    own: ModuleType = next((d for d in ALL if verdict == d.ID), diagnosis)
    for module in (base, own):
        facts.update(
            (name, value)
            for name, value in vars(module).items()
            if name.isupper() and isinstance(value, (units.Quantity, units.Count))
        )
    return facts


def parse(verdict: str, text: str) -> Recommendation:
    lines = text.strip().splitlines()
    title = lines[0].lstrip("# ").split(":", 1)[-1].strip() if lines else verdict
    sections: dict[str, str] = {}
    current: str | None = None
    intro: list[str] = []
    body: list[str] = []
    for line in lines[1:]:
        if line.startswith("## "):
            if current is not None:
                sections[current] = "\n".join(body).strip()
            current = line[3:].strip()
            body = []
        elif current is None:
            intro.append(line)
        else:
            body.append(line)
    if current is not None:
        sections[current] = "\n".join(body).strip()
    return Recommendation(
        id=verdict,
        title=title,
        meaning="\n".join(intro).strip(),
        sections=sections,
        markdown=text,
    )


DOCS_NOTE = (
    "<!-- Made from probe/report/recommendations/{verdict}.md by "
    "`python -m probe.report.recommendations docs/verdicts`: edit that file, not this one. -->\n"
)


def docs_page(verdict: str) -> str:
    """The verdict's page in docs/verdicts/: the text with its thresholds filled in."""
    return DOCS_NOTE.format(verdict=verdict) + load(verdict).markdown
