"""Exports: one recorded session in the formats other tools open.

    probe export .probe/<name> --format chrome-trace     # Perfetto UI, chrome://tracing
    probe export .probe/<name> --format speedscope       # speedscope, one profile per thread
    probe export .probe/<name> --format collapsed        # folded stacks: flamegraph.pl, inferno
    probe export .probe/<name> --format csv              # steps, processes, samples: pandas
    probe export .probe/<name> --format parquet          # the same tables (needs pyarrow)

One small interface: an ``Exporter`` takes an ``ExportData`` (the session read through
``probe.session``, plus the facts the analysis derives from it: process roles and names, steps,
the analysed window, the verdict's windows) and writes a file, or a directory of tables. Each
format is one module. This package stays light to import: the exporters and everything they need
(numpy, the analysis) are imported only when one is asked for.
"""

from __future__ import annotations

import importlib
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from probe.errors import ExportError

if TYPE_CHECKING:
    from probe.export.source import ExportData

# format name -> module defining EXPORTER (importing it is deferred to when it is used)
_MODULES = {
    "chrome-trace": "probe.export.chrome_trace",
    "speedscope": "probe.export.speedscope",
    "collapsed": "probe.export.collapsed",
    "csv": "probe.export.tables",
    "parquet": "probe.export.tables",
}
FORMATS = tuple(_MODULES)


class Exporter(ABC):
    """One output format: ``ExportData`` in, files out."""

    name: str = ""
    suffix: str = ""  # the default output is <session dir><suffix>, next to the session
    directory: bool = False  # writes a directory of files rather than one file
    thread_filter: bool = False  # --thread means something for this format
    opens_with: str = ""  # one line for the user: where to open the result

    @abstractmethod
    def write(self, data: ExportData, dest: Path) -> list[Path]:
        """Write the export at ``dest``; return the files written."""

    def default_dest(self, session_dir: Path) -> Path:
        session_dir = session_dir if session_dir.name else session_dir.resolve()
        return session_dir.parent / f"{session_dir.name}{self.suffix}"


class StreamExporter(Exporter):
    """A format that is one text stream, written as it is produced (never held whole)."""

    @abstractmethod
    def write_stream(self, data: ExportData, out: TextIO) -> None:
        """Write the export to ``out``."""

    def write(self, data: ExportData, dest: Path) -> list[Path]:
        if str(dest) == "-":
            self.write_stream(data, sys.stdout)
            sys.stdout.flush()
            return []
        with atomic_text(dest) as out:
            self.write_stream(data, out)
        return [dest]


@contextmanager
def atomic_text(path: Path) -> Iterator[TextIO]:
    """A text file that appears at ``path`` complete, or not at all."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as out:
            yield out
        os.replace(tmp, path)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def exporter(name: str) -> Exporter:
    """The exporter of format ``name``; ExportError for an unknown one."""
    module = _MODULES.get(name)
    if module is None:
        raise ExportError(f"unknown export format {name!r}", hint=f"Formats: {', '.join(FORMATS)}.")
    found: Exporter = importlib.import_module(module).EXPORTERS[name]
    return found


__all__ = ["FORMATS", "Exporter", "StreamExporter", "atomic_text", "exporter"]
