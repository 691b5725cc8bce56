"""probe compare on hand-built sessions: loading the sides, the measures, the comparison, its
words, JSON and page, and the command's exit statuses."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from probe.cli import main
from probe.compare import html, jsonout, stats, terminal, words
from probe.compare.compare import (
    Comparison,
    SideRuns,
    analyse,
    analyse_sides,
    compare,
    issue_changes,
    recording_order,
)
from probe.compare.measures import BY_ID, SINGLE_RUN_FLOOR, IssueSummary, has, present, value
from probe.compare.sides import check_sides, load_side, program
from probe.errors import CompareError
from probe.session.meta import read_meta, write_meta
from tests.unit.compare_runs import noisy_steps, write_run

RUNS = 3
SLOW, FAST = 0.05, 0.03


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A: 3 runs of an input-bound loop (50 ms steps, 40 % waiting); B: 3 runs of the fixed one
    (30 ms steps, no waits, with more arguments). Runs drift 2 % from one another."""
    root = tmp_path_factory.mktemp("compare")
    for k in range(RUNS):
        drift = float(np.exp(np.random.default_rng(k).normal(0, 0.02)))
        write_run(
            root / "before" / f"run-{k + 1}",
            noisy_steps(300, step=SLOW, seed=k) * drift,
            wait_share=0.4,
            gc_every=1.0,
            gc_pause=0.005,
        )
        write_run(
            root / "after" / f"run-{k + 1}",
            noisy_steps(300, step=FAST, seed=10 + k) * drift,
            argv=["python", "train.py", "--workers", "2"],
            gc_every=1.0,
            gc_pause=0.005,
        )
    return root


@pytest.fixture(scope="module")
def sides(sessions: Path) -> tuple[SideRuns, SideRuns]:
    return (
        analyse(load_side(sessions / "before", "A")),
        analyse(load_side(sessions / "after", "B")),
    )


@pytest.fixture(scope="module")
def comparison(sides: tuple[SideRuns, SideRuns]) -> Comparison:
    return compare(*sides)


# -- the sides -----------------------------------------------------------------------------------


def test_a_side_is_a_session_or_a_directory_of_sessions(sessions: Path, tmp_path: Path) -> None:
    one = load_side(sessions / "before" / "run-2", "A")
    assert [s.name for s in one.sessions] == ["run-2"]
    several = load_side(sessions / "before", "A")
    assert [s.name for s in several.sessions] == ["run-1", "run-2", "run-3"]
    # Sessions sort by their numbers, not as text: run-10 after run-9.
    for k in (1, 2, 10, 9):
        write_run(tmp_path / "many" / f"run-{k}", noisy_steps(20, seed=k))
    (tmp_path / "many" / "run-5.html").write_text("a report, not a session")
    names = [s.name for s in load_side(tmp_path / "many", "B").sessions]
    assert names == ["run-1", "run-2", "run-9", "run-10"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text("x"), "is a file"),
        (lambda p: p.mkdir(), "holds no probe session"),
    ],
)
def test_bad_sides_are_refused_with_a_sentence(tmp_path: Path, make: object, message: str) -> None:
    path = tmp_path / "side"
    make(path)  # type: ignore[operator]
    with pytest.raises(CompareError, match=message) as info:
        load_side(path, "A")
    assert info.value.exit_code == 2


def test_foreign_and_newer_sessions_are_refused(sessions: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "meta.json").write_text('{"hello": 1}')
    with pytest.raises(CompareError, match="not a probe session"):
        load_side(foreign, "A")
    newer = write_run(tmp_path / "newer", noisy_steps(20))
    meta = read_meta(newer)
    meta["format"] = [99, 0]
    write_meta(newer, meta)
    with pytest.raises(CompareError, match=r"format 99\.0"):
        load_side(newer, "B")


def test_program_ignores_arguments_and_which_python() -> None:
    assert program(["/venv/bin/python3.11", "./train.py", "--workers", "4"]) == "python train.py"
    assert program(["python", "-u", "train.py"]) == "python train.py"
    assert program(["python", "-m", "pkg.train", "--x"]) == "python -m pkg.train"
    assert program(["torchrun", "--nproc_per_node", "2", "train.py"]) == "torchrun train.py"
    assert program(["python", "-c", "print(1)"]) == "python -c"
    assert program(["./server"]) == "server"
    assert program(["python", "eval.py"]) != program(["python", "train.py"])


def test_different_programs_are_refused_and_different_arguments_warned(
    sessions: Path, tmp_path: Path
) -> None:
    a = load_side(sessions / "before", "A")
    b = load_side(sessions / "after", "B")
    (warning,) = check_sides(a, b)
    assert "different arguments" in warning
    assert "--workers 2" in warning
    other = load_side(
        write_run(tmp_path / "eval", noisy_steps(20), argv=["python", "eval.py"]), "B"
    )
    with pytest.raises(CompareError, match="different programs") as info:
        check_sides(a, other)
    assert info.value.hint is not None and "--any-program" in info.value.hint
    assert "different programs" in check_sides(a, other, any_program=True)[0]
    with pytest.raises(CompareError, match="share sessions"):
        check_sides(a, load_side(sessions / "before" / "run-1", "B"))


def test_a_side_of_mixed_programs_is_refused(tmp_path: Path) -> None:
    write_run(tmp_path / "mixed" / "run-1", noisy_steps(20))
    write_run(tmp_path / "mixed" / "run-2", noisy_steps(20), argv=["python", "eval.py"])
    with pytest.raises(CompareError, match="different programs"):
        load_side(tmp_path / "mixed", "A")


# -- the measures --------------------------------------------------------------------------------


def test_each_run_keeps_its_loop_in_the_steady_state(sides: tuple[SideRuns, SideRuns]) -> None:
    before, after = sides
    run = before.runs[0]
    assert run.unit == "optimizer"
    assert 250 <= run.steps <= 300  # warm-up and edges may drop a few
    assert run.step_end[0] >= 0  # times since the window began
    assert value(run, BY_ID["step_time"]) == pytest.approx(
        float(np.median(noisy_steps(300, step=SLOW, seed=0))), rel=0.05
    )
    assert value(run, BY_ID["data_wait"]) == pytest.approx(0.4, abs=0.01)
    assert value(after.runs[0], BY_ID["data_wait"]) == 0.0
    assert value(run, BY_ID["gc"]) == pytest.approx(0.005, rel=0.25)  # 5 ms a second
    assert value(run, BY_ID["throughput"]) == pytest.approx(1 / run.step_dur.mean())
    assert not has(run, BY_ID["lag"])  # no event loop
    assert not present(run, BY_ID["cpu_workers"])  # no DataLoader workers
    assert run.category == "input-bound"


def test_event_loop_lag_and_memory_growth_are_measured(tmp_path: Path) -> None:
    session = write_run(tmp_path / "s", noisy_steps(300), lag=0.004, rss_growth=2e6)
    (run,) = analyse(load_side(session, "A")).runs
    assert value(run, BY_ID["lag"]) == pytest.approx(0.004, rel=0.15)
    assert value(run, BY_ID["rss_slope"]) == pytest.approx(2e6, rel=0.05)
    assert value(run, BY_ID["peak_rss"]) >= 300e6


# -- the comparison ------------------------------------------------------------------------------


def test_a_faster_loop_is_found_with_its_interval(comparison: Comparison) -> None:
    row = comparison.primary
    assert row is not None
    assert comparison.level == "runs"
    assert row.result == stats.LOWER
    assert row.verdict == "faster"
    assert row.better is True
    assert row.change == pytest.approx(FAST / SLOW - 1, abs=0.03)
    assert row.low is not None and row.high is not None
    assert row.low < row.change < row.high
    assert row.p_value is not None and row.p_value < 0.05  # Student's t: 3 runs a side
    rows = {r.measure.id: r for r in comparison.rows}
    assert rows["throughput"].verdict == "faster"
    assert rows["data_wait"].result == stats.LOWER
    assert rows["data_wait"].change == pytest.approx(-0.4, abs=0.01)
    assert rows["gc"].result == stats.NONE  # the same pauses on both sides
    assert "cpu_workers" not in rows and "lag" not in rows


def test_the_verdict_change_and_the_issues_moves(comparison: Comparison) -> None:
    assert words.verdict_change(comparison) == "input-bound (high, 40 %) -> healthy"
    (issue,) = comparison.issues
    assert (issue.id, issue.change, issue.a_runs, issue.b_runs) == ("input-bound", "vanished", 3, 0)
    assert (
        words.issue_change(issue, comparison) == "vanished: input-bound (A: high, 40 %, 3/3 runs)"
    )


def test_one_run_a_side_is_compared_within_runs_beyond_the_floor(
    sides: tuple[SideRuns, SideRuns],
) -> None:
    before, after = sides
    a = SideRuns("A", "a", before.program, before.commands, before.runs[:1])
    aa = SideRuns("B", "b", before.program, before.commands, before.runs[1:2])
    b = SideRuns("B", "b", after.program, after.commands, after.runs[:1])
    same = compare(a, aa).primary
    assert same is not None
    assert same.level == "within-run"
    assert same.result == stats.NONE  # two runs of one program: within the floor
    assert same.smallest is not None and same.smallest > SINGLE_RUN_FLOOR
    faster = compare(a, b).primary
    assert faster is not None and faster.result == stats.LOWER
    assert "run-to-run variation cannot be measured" in words.design(compare(a, b))


def test_a_loop_on_one_side_only_cannot_be_compared(sessions: Path, tmp_path: Path) -> None:
    no_steps = write_run(tmp_path / "none", np.array([]))
    with pytest.raises(CompareError, match="no steps"):
        compare(
            analyse(load_side(sessions / "before" / "run-1", "A")),
            analyse(load_side(no_steps, "B")),
        )
    marked = write_run(tmp_path / "marked", noisy_steps(100), explicit=True)
    with pytest.raises(CompareError, match="step times cannot be compared") as info:
        compare(
            analyse(load_side(sessions / "before" / "run-1", "A")),
            analyse(load_side(marked, "B")),
        )
    assert "probe.step() calls" in info.value.message
    short = write_run(tmp_path / "short", noisy_steps(6))
    with pytest.raises(CompareError, match="too few steady-state steps"):
        compare(
            analyse(load_side(sessions / "before" / "run-1", "A")),
            analyse(load_side(short, "B")),
        )


# -- words, JSON, page ---------------------------------------------------------------------------


def test_changes_read_in_their_units(comparison: Comparison) -> None:
    rows = {r.measure.id: r for r in comparison.rows}
    assert words.change(BY_ID["step_time"], -0.4) == "-40 %"
    assert words.change(BY_ID["step_time"], 0.043) == "+4.3 %"
    assert words.change(BY_ID["step_time"], 25.0) == "26x"
    assert words.change(BY_ID["data_wait"], -0.392) == "-39 points"
    assert words.change(BY_ID["data_wait"], 0.0432) == "+4.3 points"
    assert words.change(BY_ID["gc"], -0.0001) == "0 points"  # no sign on what reads as zero
    assert words.change(BY_ID["cpu_loop"], 0.8) == "+0.8 cores"
    assert words.value(BY_ID["step_time"], 0.0291) == "29 ms"
    assert words.value(BY_ID["peak_rss"], 312 * 2**20) == "312 MB"
    assert words.headline(comparison).startswith("B is faster: step time -")
    assert re.search(r"95 % interval -\d+ % to -\d+ %", words.headline(comparison))
    assert words.interval(rows["step_time"]).count("%") == 2


def test_the_terminal_table_has_one_row_per_measure(comparison: Comparison) -> None:
    out = terminal.lines(comparison, files=[("html", "x.html")])
    header = next(i for i, line in enumerate(out) if line.startswith("measure"))
    rows = out[header + 1 : header + 1 + len(comparison.rows)]
    assert [r.split("  ")[0] for r in rows] == [r.measure.title for r in comparison.rows]
    assert re.search(r"faster \*+$", rows[0])
    assert "verdict: input-bound (high, 40 %) -> healthy" in out
    assert out[-1] == "html:  x.html"
    painted = terminal.lines(comparison, color=True)
    assert any("\033[1;32m" in line for line in painted)  # better in green


def test_the_json_document(comparison: Comparison) -> None:
    doc = json.loads(jsonout.dumps(comparison))
    assert doc["schema"] == "probe.compare/1"
    assert doc["verdict"]["measure"] == "step_time"
    assert doc["verdict"]["result"] == "lower"
    assert doc["verdict"]["verdict"] == "faster"
    low, high = doc["verdict"]["ci95"]
    assert low < doc["verdict"]["change"] < high < 0
    assert doc["design"]["runs"] == [3, 3]
    assert doc["design"]["level"] == "runs"
    assert len(doc["a"]["runs"]) == 3
    assert doc["a"]["runs"][0]["category"] == "input-bound"
    measures = {m["id"]: m for m in doc["measures"]}
    assert measures["data_wait"]["scale"] == "difference"
    assert len(measures["step_time"]["a_runs"]) == 3
    assert doc["diagnosis"]["change"] == "input-bound (high, 40 %) -> healthy"
    assert doc["diagnosis"]["issues"][0]["change"] == "vanished"
    # Everything documented in docs/compare-schema.md is there, and nothing undocumented.
    schema = (Path(__file__).parents[2] / "docs" / "compare-schema.md").read_text()
    for key in _keys(doc):
        assert re.search(r"`([\w.\[\]]*\.)?" + key + r"[`.\[]", schema), key


def _keys(doc: object, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.add(k)
            out |= _keys(v)
    elif isinstance(doc, list):
        for v in doc:
            out |= _keys(v)
    return out


def test_the_page_is_self_contained_and_escapes_what_it_shows(tmp_path: Path) -> None:
    argv = ["python", "train.py", "--tag", "<script>alert(1)</script>"]
    for k in range(2):
        write_run(tmp_path / "a" / f"run-{k}", noisy_steps(200, seed=k), argv=argv)
        write_run(tmp_path / "b" / f"run-{k}", noisy_steps(200, seed=5 + k, step=0.06), argv=argv)
    c = compare(analyse(load_side(tmp_path / "a", "A")), analyse(load_side(tmp_path / "b", "B")))
    page = html.render(c)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # Nothing is loaded: every script is inline, no style sheet or image is linked.
    assert all("src=" not in tag for tag in re.findall(r"<script[^>]*>", page))
    assert "<link" not in page and "<img" not in page
    assert "Bokeh" in page and len(page) < 2_000_000
    assert 'data-result="higher"' in page
    for section in ("forest", "distribution", "timelines", "measures", "runs"):
        assert f'id="{section}"' in page


def test_the_forest_puts_every_measure_on_one_axis(comparison: Comparison) -> None:
    drawn, left_out = html.forest_rows(comparison)
    forest = {r.title: r for r in drawn}
    assert "RSS slope (loop process)" in left_out
    step = forest["step time (median)"]
    assert step.change == pytest.approx(comparison.primary.change)  # type: ignore[union-attr]
    wait = forest["data-wait share"]
    assert wait.change == pytest.approx(-1.0, abs=0.01)  # 40 % -> 0 %: all of A's value
    assert step.color == html.VERDICT_COLORS["better"]


def test_histograms_and_timelines_summarise_long_runs() -> None:
    t = np.linspace(0, 3600, 100_000)
    y = np.where(t > 1800, 2.0, 1.0)
    tm, ym = html.bucket_medians(t, y, buckets=100)
    assert len(tm) == 100
    assert ym[:49].tolist() == [1.0] * 49 and ym[-49:].tolist() == [2.0] * 49


# -- the command ---------------------------------------------------------------------------------


def test_compare_command_writes_page_and_json(
    sessions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c.json"
    page = tmp_path / "c.html"
    code = main(
        [
            "compare",
            str(sessions / "before"),
            str(sessions / "after"),
            "--json",
            str(out),
            "--html",
            str(page),
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "B is faster: step time" in err
    assert "warning: A and B ran 'python train.py' with different arguments" in err
    assert json.loads(out.read_text())["schema"] == "probe.compare/1"
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_default_page_goes_next_to_b_and_json_to_stdout(
    sessions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["compare", str(sessions / "before"), str(sessions / "after"), "--json", "-"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"]["verdict"] == "faster"
    assert (sessions / "compare-before-after.html").is_file()


def test_fail_if_slower_fails_only_when_b_is_surely_slower(
    sessions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before, after = str(sessions / "before"), str(sessions / "after")
    assert main(["compare", before, after, "--no-html", "--fail-if-slower", "5"]) == 0
    assert main(["compare", after, before, "--no-html", "--fail-if-slower", "5"]) == 1
    assert "B is slower than A by more than 5 %" in capsys.readouterr().err
    # Slower by about 67 %: not "more than 100 %".
    assert main(["compare", after, before, "--no-html", "--fail-if-slower", "100"]) == 0


def test_bad_input_exits_2(
    sessions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", str(tmp_path / "nope"), str(sessions / "after")]) == 2
    assert "probe: error: A: " in capsys.readouterr().err
    eval_run = write_run(tmp_path / "eval", noisy_steps(60), argv=["python", "eval.py"])
    assert main(["compare", str(sessions / "before"), str(eval_run), "--no-html"]) == 2
    err = capsys.readouterr().err
    assert "different programs" in err and "--any-program" in err
    assert main(["compare", "a", "b", "--repeat", "3"]) == 2  # --repeat goes with --run
    assert main(["compare", "--run", "definitely-not-a-command-xyz", "true"]) == 127


def test_the_measures_are_all_named_in_words() -> None:
    for measure in BY_ID.values():
        assert measure.words[0] != measure.words[1]
        assert words.value(measure, 1.0) != "n/a"


def test_a_bad_session_found_while_analysing_in_parallel_is_bad_input(
    sessions: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "b" / "run-1"
    write_run(broken, noisy_steps(50))
    side = load_side(sessions / "before", "A")
    other = load_side(tmp_path / "b", "B")
    broken.joinpath("meta.json").write_text("{not json")  # after loading: while analysing
    with pytest.raises(CompareError, match="B: ") as info:
        analyse_sides([side, other], jobs=2)
    assert info.value.exit_code == 2


def test_issues_move_when_their_impact_severity_or_place_changes(
    sides: tuple[SideRuns, SideRuns],
) -> None:
    before, _ = sides
    base = before.runs[0]

    def side(label: str, *issue_lists: list[IssueSummary]) -> SideRuns:
        runs = [dataclasses.replace(base, issues=list(issues)) for issues in issue_lists]
        return SideRuns(label, label, before.program, before.commands, runs)

    def ib(impact: float, severity: str = "high") -> IssueSummary:
        return IssueSummary("input-bound", severity, impact, "")

    gc = IssueSummary("gc-pauses", "moderate", 0.06, "")
    a = side("A", [ib(0.40)], [ib(0.42)], [ib(0.41)])
    changes = {
        i.id: i.change for i in issue_changes(a, side("B", [ib(0.30)], [ib(0.3)], [ib(0.31)]))
    }
    assert changes == {"input-bound": "moved"}  # 41 % -> 30 %
    changes = {
        i.id: i.change for i in issue_changes(a, side("B", [ib(0.39)], [ib(0.4)], [ib(0.4)]))
    }
    assert changes == {"input-bound": "stayed"}
    moderate = side("B", [ib(0.39, "moderate")], [ib(0.4, "moderate")], [ib(0.4, "moderate")])
    assert issue_changes(a, moderate)[0].change == "moved"
    behind = side("B", [gc, ib(0.4)], [gc, ib(0.4)], [ib(0.4)])  # now second, in 2 runs of 3
    assert {i.id: i.change for i in issue_changes(a, behind)} == {
        "input-bound": "moved",
        "gc-pauses": "appeared",
    }
    once = side("B", [gc, ib(0.4)], [ib(0.4)], [ib(0.4)])  # gc-pauses in one run of three: noise
    assert {i.id: i.change for i in issue_changes(a, once)} == {"input-bound": "stayed"}


def test_the_order_the_runs_were_recorded_in_is_told(sides: tuple[SideRuns, SideRuns]) -> None:
    before, after = sides

    def at(side: SideRuns, starts: list[int | None]) -> SideRuns:
        runs = [dataclasses.replace(r, start_unix_ns=t) for r, t in zip(side.runs, starts)]
        return SideRuns(side.label, side.path, side.program, side.commands, runs)

    assert recording_order(at(before, [1, 4, 5]), at(after, [2, 3, 6])) == "interleaved"
    sequential = compare(at(before, [1, 2, 3]), at(after, [4, 5, 6]))
    assert sequential.order == "A then B"
    assert "A's runs were all recorded before B's" in words.design(sequential)
    assert recording_order(at(before, [7, 8, 9]), at(after, [4, 5, 6])) == "B then A"
    assert recording_order(at(before, [1, None, 3]), at(after, [4, 5, 6])) == ""
