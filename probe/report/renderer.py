"""The seam every output plugs into: a diagnosis in, a document (a file, or lines) out.

    from probe.report.renderer import Outputs, renderer

    outputs = Outputs(session_dir=Path(".probe/run"), report=Path(".probe/run.html"))
    renderer("json").write(diagnosis, outputs.session_dir / "diagnosis.json", outputs)
    renderer("markdown").write(diagnosis, "-", outputs)          # "-" is stdout
    for line in renderer("terminal").lines(diagnosis, outputs): ...

A renderer implements ``render(diagnosis, outputs) -> str``; ``write`` (atomically, or to stdout
for ``-``) and ``lines`` come with the base class. ``outputs`` says where this run's other files
are, for the renderers that cite them (the terminal's "report:" line, the page's footer), and
whether the terminal takes colour. A new output (compare, export, serving) is a subclass and one
line in ``RENDERERS``; renderers are imported only when asked for, so the HTML one's Bokeh is
loaded only when a page is made.
"""

from __future__ import annotations

import importlib
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from probe.files import write_atomic

if TYPE_CHECKING:
    from probe.analysis.diagnosis import Diagnosis


@dataclass(frozen=True)
class Outputs:
    """Where this run's files are, and how the terminal looks."""

    session_dir: Path
    report: Path | None = None  # the HTML page, once written
    json_copy: Path | None = None  # --json FILE, when asked for
    color: bool = False  # ANSI colours on the terminal
    json_written: bool = True  # whether SESSION/diagnosis.json could be written


class Renderer(ABC):
    """A diagnosis in, one document out."""

    name: ClassVar[str]
    suffix: ClassVar[str] = ""  # the file name's usual ending: ".html", ".json", ".md"

    @abstractmethod
    def render(self, diagnosis: Diagnosis, outputs: Outputs) -> str:
        """The whole document."""

    def lines(self, diagnosis: Diagnosis, outputs: Outputs) -> list[str]:
        return self.render(diagnosis, outputs).splitlines()

    def write(self, diagnosis: Diagnosis, path: Path | str, outputs: Outputs) -> Path | None:
        """Write the document to ``path`` atomically, or to stdout when ``path`` is ``-``;
        returns the path written (None for stdout). Raises ``OSError``."""
        return write_document(self.render(diagnosis, outputs), path)


def write_document(text: str, path: Path | str) -> Path | None:
    """``text`` written to ``path`` atomically, or to stdout when ``path`` is ``-``; returns the
    path written (None for stdout). Raises ``OSError``. Every renderer's ``write``."""
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return None
    write_atomic(path, text)
    return Path(path)


def instance(table: dict[str, str], name: str) -> object:
    """A new object of the class ``table[name]`` names (``"module:class"``), imported only
    now (a renderer's imports, Bokeh's for one, are paid only by those who use it)."""
    try:
        module_name, class_name = table[name].split(":")
    except KeyError:
        raise ValueError(f"no renderer {name!r} (known: {', '.join(sorted(table))})") from None
    made: object = getattr(importlib.import_module(module_name), class_name)()
    return made


# name -> "module:class"
RENDERERS: dict[str, str] = {
    "html": "probe.report.html:HtmlRenderer",
    "json": "probe.report.jsonout:JsonRenderer",
    "markdown": "probe.report.mdout:MarkdownRenderer",
    "terminal": "probe.report.terminal:TerminalRenderer",
}


def renderer(name: str) -> Renderer:
    """The renderer for ``name`` (one of ``RENDERERS``)."""
    made = instance(RENDERERS, name)
    assert isinstance(made, Renderer)
    return made


__all__ = ["RENDERERS", "Outputs", "Renderer", "renderer"]
