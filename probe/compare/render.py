"""compare's outputs behind one small interface: a comparison in, a document (a file, or lines)
out, in the shape of ``probe.report.renderer`` (which takes a diagnosis).

    from probe.compare.render import CompareOutputs, renderer

    outputs = CompareOutputs(page=Path("compare.html"))
    renderer("html").write(comparison, outputs.page, outputs)
    renderer("json").write(comparison, "-", outputs)              # "-" is stdout
    for line in renderer("terminal").lines(comparison, outputs): ...

A renderer implements ``render(comparison, outputs) -> str``; ``write`` (atomically through
``probe.files.write_atomic``, or to stdout for ``-``) and ``lines`` come with the base class.
Renderers are imported only when asked for: the page's Bokeh only when a page is made.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from probe.report.renderer import instance, write_document

if TYPE_CHECKING:
    from probe.compare.compare import Comparison


@dataclass(frozen=True)
class CompareOutputs:
    """Where the comparison's files are, and how the terminal looks."""

    page: Path | None = None  # the HTML page, once written
    json_copy: Path | None = None  # --json FILE, when written to a file
    color: bool = False  # ANSI colours on the terminal


class ComparisonRenderer(ABC):
    """A comparison in, one document out."""

    name: ClassVar[str]
    suffix: ClassVar[str] = ""

    @abstractmethod
    def render(self, comparison: Comparison, outputs: CompareOutputs) -> str:
        """The whole document."""

    def lines(self, comparison: Comparison, outputs: CompareOutputs) -> list[str]:
        return self.render(comparison, outputs).splitlines()

    def write(
        self, comparison: Comparison, path: Path | str, outputs: CompareOutputs
    ) -> Path | None:
        """Write the document to ``path`` atomically, or to stdout when ``path`` is ``-``;
        returns the path written (None for stdout). Raises ``OSError``."""
        return write_document(self.render(comparison, outputs), path)


RENDERERS: dict[str, str] = {
    "html": "probe.compare.html:HtmlRenderer",
    "json": "probe.compare.jsonout:JsonRenderer",
    "terminal": "probe.compare.terminal:TerminalRenderer",
}


def renderer(name: str) -> ComparisonRenderer:
    """The renderer for ``name`` (one of ``RENDERERS``)."""
    made = instance(RENDERERS, name)
    assert isinstance(made, ComparisonRenderer)
    return made


__all__ = ["RENDERERS", "CompareOutputs", "ComparisonRenderer", "renderer"]
