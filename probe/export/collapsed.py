"""Folded stacks (``frame;frame;frame weight``, one line per distinct stack), the input of
flamegraph.pl, inferno and speedscope's "collapsed stack" importer.

Each line starts with the process and the thread (``rank 0 (pid 4242);MainThread (tid 4242);``),
so one file holds the whole process tree and a flame graph splits by process and thread first;
``--pid`` and ``--thread`` select. The weight is the time the samples of that stack stand for, in
microseconds: the agent adapts its sampling rate to what sampling costs, so counting samples would
overweight the moments it sampled fastest (see speedscope.py); flame graph tools only compare
weights, so time works wherever a sample count does.
"""

from __future__ import annotations

from typing import TextIO

import numpy as np

from probe.export import StreamExporter
from probe.export.source import NO_FRAME, ExportData
from probe.export.speedscope import no_samples, weights_us


def clean(name: str) -> str:
    """A frame name safe inside a folded line: no separator, no line break."""
    return name.replace(";", ",").replace("\n", " ").replace("\r", " ")


class Collapsed(StreamExporter):
    name = "collapsed"
    suffix = ".collapsed.txt"
    thread_filter = True
    opens_with = "make a flame graph: flamegraph.pl FILE > flame.svg (or open it in speedscope)"

    def write_stream(self, data: ExportData, out: TextIO) -> None:
        threads = data.thread_samples()
        if not threads:
            raise no_samples(data)
        data.progress("folding the stacks")
        stack_text: dict[int, str] = {}
        lines: list[str] = []
        for thread in threads:
            prefix = (
                clean(data.process_title(thread.pid))
                + ";"
                + clean(data.thread_title(thread.pid, thread.tid))
            )
            unique, inverse = np.unique(thread.stack, return_inverse=True)
            totals = np.bincount(inverse, weights=weights_us(thread), minlength=len(unique))
            for stack_id, total in zip(unique.tolist(), totals.tolist()):
                text = stack_text.get(stack_id)
                if text is None:
                    names = [clean(str(f)) for f in data.frames(stack_id)] or [NO_FRAME]
                    text = ";".join(names)
                    stack_text[stack_id] = text
                lines.append(f"{prefix};{text} {round(total)}")
        lines.sort()
        for start in range(0, len(lines), 4096):
            out.write("\n".join(lines[start : start + 4096]) + "\n")


EXPORTERS = {Collapsed.name: Collapsed()}
