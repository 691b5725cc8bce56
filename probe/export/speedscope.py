"""speedscope's file format (https://www.speedscope.app/file-format-schema.json): one sampled
profile per thread, its samples in time order, each weighted by the time it stands for.

The agent samples each thread's Python stack at a rate it adapts to what sampling costs (see
docs/session-format.md, "The stack rate"), so a sample stands for the interval in force when it
was taken, not for a fixed tick: the weights are those intervals, in microseconds, as the analysis
weighs them, and a thread's total is its sampled time. Consecutive samples with the same stack are
merged (their weights added), which changes nothing speedscope shows. Frames are shared by all
profiles and named ``func (file.py:line)`` with the full path and line in their fields.
"""

from __future__ import annotations

import json
from typing import TextIO

import numpy as np
import numpy.typing as npt

from probe import __version__
from probe.errors import ExportError
from probe.export import StreamExporter
from probe.export.source import NO_FRAME, ExportData, ThreadSamples

SCHEMA = "https://www.speedscope.app/file-format-schema.json"


def no_samples(data: ExportData) -> ExportError:
    where = " in the selection" if data.selection != type(data.selection)() else ""
    return ExportError(
        f"this session has no Python stack samples{where}",
        hint="Stacks are sampled in Python processes the agent ran in (not with --stack-rate 0).",
    )


def weights_us(samples: ThreadSamples) -> npt.NDArray[np.int64]:
    return np.maximum(np.rint(samples.weight * 1e6), 1).astype(np.int64)


class Speedscope(StreamExporter):
    name = "speedscope"
    suffix = ".speedscope.json"
    thread_filter = True
    opens_with = "open it in speedscope (www.speedscope.app, or: npx speedscope FILE)"

    def write_stream(self, data: ExportData, out: TextIO) -> None:
        threads = data.thread_samples()
        if not threads:
            raise no_samples(data)
        data.progress("writing the profiles")
        frame_index: dict[tuple[str, str, int], int] = {}
        frames_json: list[str] = []
        stack_index: dict[int, str] = {}  # stack id -> "[i,j,k]", outermost first
        for stack_id in np.unique(np.concatenate([s.stack for s in threads])).tolist():
            indices: list[int] = []
            frames = data.frames(int(stack_id))
            keys = [(f.func, f.file, f.line) for f in frames] or [(NO_FRAME, "", 0)]
            for key in keys:
                k = frame_index.get(key)
                if k is None:
                    k = len(frames_json)
                    frame_index[key] = k
                    func, file, line = key
                    entry: dict[str, object] = {"name": func}
                    if file:
                        entry = {"name": f"{func} ({file.rsplit('/', 1)[-1]}:{line})"}
                        entry.update(file=file, line=line)
                    frames_json.append(json.dumps(entry, ensure_ascii=False))
                indices.append(k)
            stack_index[int(stack_id)] = "[" + ",".join(map(str, indices)) + "]"
        active = next(
            (
                k
                for k, s in enumerate(threads)
                if (info := data.process(s.pid)) is not None
                and info.role in ("main", "rank")
                and s.tid == data.main_tid(s.pid)
            ),
            0,
        )
        out.write(f'{{"$schema":"{SCHEMA}","exporter":{json.dumps(f"probe {__version__}")},')
        out.write(f'"name":{json.dumps(data.name, ensure_ascii=False)},')
        out.write(f'"activeProfileIndex":{active},"shared":{{"frames":[\n')
        out.write(",\n".join(frames_json))
        out.write('\n]},"profiles":[')
        for k, thread in enumerate(threads):
            stacks = thread.stack
            weights = weights_us(thread)
            starts = np.concatenate([[0], np.flatnonzero(np.diff(stacks) != 0) + 1])
            merged = np.add.reduceat(weights, starts)
            title = (
                f"{data.process_title(thread.pid)} · {data.thread_title(thread.pid, thread.tid)}"
            )
            out.write(("\n" if k == 0 else ",\n") + '{"type":"sampled",')
            out.write(f'"name":{json.dumps(title, ensure_ascii=False)},"unit":"microseconds",')
            out.write(f'"startValue":0,"endValue":{int(merged.sum())},"samples":[')
            out.write(",".join(stack_index[int(s)] for s in stacks[starts].tolist()))
            out.write('],"weights":[')
            out.write(",".join(map(str, merged.tolist())))
            out.write("]}")
        out.write("\n]}\n")


EXPORTERS = {Speedscope.name: Speedscope()}
