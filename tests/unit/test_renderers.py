"""The renderers behind one interface: json, terminal, markdown and html, from one diagnosis."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from probe import units
from probe.analysis.diagnosis import Diagnosis, diagnose, to_json
from probe.cli import main
from probe.report import terminal
from probe.report.jsonout import dumps
from probe.report.renderer import RENDERERS, Outputs, Renderer, renderer
from tests.unit.report_sessions import EVIL, evil_session
from tests.unit.synthetic_runs import Run


@pytest.fixture(scope="module")
def input_bound(tmp_path_factory: pytest.TempPathFactory) -> tuple[Diagnosis, Path]:
    path = tmp_path_factory.mktemp("render") / "s"
    return diagnose(Run(wait=0.02).build(path)), path


def test_every_renderer_renders_and_writes_the_same_way(
    input_bound: tuple[Diagnosis, Path], tmp_path: Path
) -> None:
    d, session_dir = input_bound
    outputs = Outputs(session_dir=session_dir, report=tmp_path / "s.html")
    assert sorted(RENDERERS) == ["html", "json", "markdown", "terminal"]
    for name in RENDERERS:
        r = renderer(name)
        assert isinstance(r, Renderer) and r.name == name
        text = r.render(d, outputs)
        assert text.strip() and r.lines(d, outputs)
        path = tmp_path / f"out-{name}{r.suffix}"
        assert r.write(d, path, outputs) == path
        written = path.read_text(encoding="utf-8")
        if name == "html":  # Bokeh gives its elements fresh ids every time
            assert written.startswith("<!DOCTYPE html>") and written.endswith("</html>\n")
        else:
            assert written == text, name
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError, match="no renderer 'pdf'"):
        renderer("pdf")


def test_json_renderer_writes_the_diagnosis_document(input_bound: tuple[Diagnosis, Path]) -> None:
    d, session_dir = input_bound
    text = renderer("json").render(d, Outputs(session_dir=session_dir))
    assert text == dumps(d)
    assert json.loads(text) == json.loads(json.dumps(to_json(d)))


def test_terminal_renderer_gives_the_summary_lines(input_bound: tuple[Diagnosis, Path]) -> None:
    d, session_dir = input_bound
    outputs = Outputs(session_dir=session_dir, report=Path("r.html"))
    lines = renderer("terminal").lines(d, outputs)
    assert lines == terminal.summary_lines(d, session_dir=session_dir, report=Path("r.html"))
    assert lines[0].startswith("verdict: input-bound")
    assert renderer("terminal").render(d, outputs).splitlines()[0] == f"probe: {lines[0]}"


def test_markdown_says_the_verdict_its_evidence_and_the_run(
    input_bound: tuple[Diagnosis, Path],
) -> None:
    d, session_dir = input_bound
    text = renderer("markdown").render(d, Outputs(session_dir=session_dir))
    assert text.startswith("## probe: input-bound (high)\n")
    assert "**The training loop waits for its input pipeline: " in text
    assert re.search(r"^\| Data wait share \| \d+ % \|$", text, re.M)
    assert re.search(r"^\| Median step \| 50 ms \|$", text, re.M)
    assert f"**First thing to try:** {units.markdown(d.next_step)}." in text
    assert "### Next steps" in text and "### The run" in text
    assert f"JSON: `{session_dir}/diagnosis.json`" in text


def test_markdown_escapes_what_comes_from_the_session(tmp_path: Path) -> None:
    d = diagnose(evil_session(tmp_path / "s"))
    top = d.issues[0]  # names from the program end up in sentences and evidence
    top.summary = f"Most of it in {EVIL} (*train.py*)."
    top.evidence["process"] = f"{EVIL} | [x](javascript:alert(1))"
    text = renderer("markdown").render(d, Outputs(session_dir=tmp_path / "s"))
    assert r"Most of it in \</script\>\<img src=x onerror=alert(1)\> (\*train.py\*)." in text
    assert (
        r"| Process | \</script\>\<img src=x onerror=alert(1)\> \| \[x\](javascript:alert(1)) |"
        in text
    )
    # Outside code spans (which hold text literally) no "<" or ">" is left unescaped.
    prose = re.sub(r"(`+).*?\1", "", text)
    assert not re.search(r"(?<!\\)[<>]", prose)
    assert f"| command | `python '{EVIL}' --token '***'` |" in text  # secrets redacted
    assert "s3cr3t" not in text


def test_probe_report_writes_markdown_to_a_file_or_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Run(wait=0.02).build(tmp_path / "run1")
    out = tmp_path / "verdict.md"
    assert main(["report", str(tmp_path / "run1"), "--no-open", "--markdown", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("## probe: input-bound")
    assert f"Report: `{tmp_path / 'run1.html'}`" in text
    capsys.readouterr()
    assert main(["report", str(tmp_path / "run1"), "--no-open", "--markdown", "-"]) == 0
    captured = capsys.readouterr()
    assert captured.out == text
    assert "verdict: input-bound" in captured.err
