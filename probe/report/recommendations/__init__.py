"""What to do about each verdict: one Markdown file per verdict id, shared with docs/verdicts/.

Each file has a title line (``# <id>: <plain title>``), a paragraph saying what the verdict
means, and sections: ``## How probe decides``, ``## Next steps`` (a numbered list; the first
item's bold lead is the terminal's "next:" line), ``## Deeper tools`` and ``## References``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources


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


@cache
def load(verdict: str) -> Recommendation:
    text = resources.files(__name__).joinpath(f"{verdict}.md").read_text(encoding="utf-8")
    return parse(verdict, text)


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
