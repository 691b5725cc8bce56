"""One check, used on hand-built runs and on every scenario: whatever shows the run's phases or
the analysed window (the diagnosis JSON, the terminal, the report's ribbon, shaded window,
warm-up band and header, the Markdown summary) says what the analysis used."""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.analysis.diagnosis import Diagnosis, to_json
from probe.analysis.phases import LOOP, PHASES, STARTUP, WARMUP
from probe.report.page import build_page


def check_phases_agree(
    d: Diagnosis, *, doc: dict[str, Any] | None = None, terminal: str | None = None
) -> None:
    """Fail unless every view of ``d``'s phases and window agrees with ``d.phases``.

    ``doc`` is a diagnosis JSON written by another process (``--json``), ``terminal`` the text
    probe printed; when given they are checked too, else the renderers are run here.
    """
    phases = d.phases
    seq = phases.phases
    assert seq, "a run has at least one phase"
    assert [p.name for p in seq] == sorted((p.name for p in seq), key=PHASES.index)
    assert seq[0].name == STARTUP and seq[0].start == 0.0
    assert abs(seq[-1].end - d.timeline.duration_s) < 1e-6, "phases cover the run to its end"
    for a, b in zip(seq, seq[1:]):
        assert abs(a.end - b.start) < 1e-9, f"{a.name} ends where {b.name} starts"
        assert a.end >= a.start
    loop = phases.get(LOOP)
    if phases.window is None:
        assert loop is None and d.category == "insufficient-data"
    else:
        assert loop is not None and (loop.start, loop.end) == phases.window
        assert d.segmentation.window == phases.window, "the detectors judge the loop phase"
    assert d.window == phases.window

    own = to_json(d)
    for document in [own] + ([doc] if doc is not None else []):
        rounded = None if d.window is None else [round(d.window[0], 3), round(d.window[1], 3)]
        assert document["window"] == rounded
        assert document["phases"] == phases.to_json()
        if d.window is not None:
            json_loop = next(p for p in document["phases"] if p["name"] == LOOP)
            assert [json_loop["start"], json_loop["end"]] == document["window"]

    page = build_page(d)
    assert page.window == d.window
    assert phases.window_text() in page.header.window
    assert phases.summary() in page.header.window
    cpu = page.graph("cpu")
    if cpu is not None:
        assert cpu.states is not None
        kinds = cpu.states.kinds or []
        named = [i for i, k in enumerate(kinds) if k in PHASES]
        assert [kinds[i] for i in named] == [p.name for p in seq]
        assert np.allclose(cpu.states.start[named], [p.start for p in seq])
        assert np.allclose(cpu.states.end[named], [p.end for p in seq])
        assert all(k in (*PHASES, "compiling") for k in kinds)
    steps = page.graph("steps")
    warmup = phases.get(WARMUP)
    if steps is not None:
        bands = [b for b in steps.bands if b.style == "warmup"]
        if warmup is None:
            assert not bands
        else:
            (band,) = bands
            assert (float(band.start[0]), float(band.end[0])) == (warmup.start, warmup.end)

    from pathlib import Path

    from probe.report.terminal import summary_lines

    lines = summary_lines(d, session_dir=Path("s"), report=None)
    texts = [terminal] if terminal is not None else []
    texts.append("\n".join(lines))
    for text in texts:
        assert f"phases: {phases.summary()}" in text, text
        assert "analysed the whole run" not in text

    from probe.report.mdout import markdown_lines
    from probe.report.renderer import Outputs

    markdown = "\n".join(markdown_lines(d, Outputs(session_dir=Path("s"))))
    window = "none: the run never reached its loop"
    if d.window is not None:
        window = f"{d.window[0]:.1f} s to {d.window[1]:.1f} s"
        if d.serving is not None:
            window += " (the load)"  # a server is judged over its load
    assert f"| analysed window | {window} |" in markdown, markdown
    assert "| phases | " in markdown
