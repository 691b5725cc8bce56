"""Values that carry their unit: the words they make, their keys' labels, their JSON."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from probe import units
from probe.units import Bytes, Count, Duration, Interval, Number, Rate, Share


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (Share(0.0757), "7.6 %"),
        (Share(0.19), "19 %"),
        (Share(0.05), "5 %"),
        (Share(0.0004), "0 %"),
        (Share(0.0996), "10 %"),
        (Share(48.0, "%"), "48 %"),
        (Duration(6.04, "ms"), "6.0 ms"),
        (Duration(0.00043), "430 µs"),
        (Duration(0.4, "ms"), "400 µs"),
        (Duration(43, "us"), "43 µs"),
        (Duration(0.0000012), "1.2 µs"),
        (Duration(0.016), "16 ms"),
        (Duration(2.5), "2.5 s"),
        (Duration(12.5), "12.5 s"),
        (Duration(250.0), "4 min"),
        (Duration(3 * 3600.0), "3.0 h"),
        (Duration(0.0), "0 ms"),
        (Bytes(500 * 1024), "500 kB"),
        (Bytes(1.5 * 2**20), "1.5 MB"),
        (Bytes(89.73, "MB"), "90 MB"),
        (Bytes(12 * 2**30), "12.0 GB"),
        (Bytes(2048, "MB"), "2048 MB"),
        (Rate(467.2, per="s"), "467/s"),
        (Rate(89.73, "MB", per="s"), "90 MB/s"),
        (Rate(708.0, "kB", per="step"), "708 kB per step"),
        (Rate(0.52, "ms", per="step"), "520 µs per step"),
        (Rate(10.2, "us", per="node"), "10 µs per node"),
        (Count(12345), "12 345"),
        (Number(2.0, "cores"), "2 cores"),
        (Number(0.95, "cores"), "0.95 cores"),
        (Number(1.25), "1.25"),
        (Number(1, "cores"), "1 core"),
        (Number(37.5, "x"), "37.5x"),
        ({"num_workers": 2, "batch_size": 128}, "num_workers: 2, batch_size: 128"),
        (Number(2.3e-5), "2.3e-05"),
        (Interval(Share(0.05), Share(0.12)), "5 % to 12 %"),
        (19996, "19996"),  # an identifier (pid): no grouping
        (np.int64(7), "7"),
        (True, "yes"),
        (None, "n/a"),
        (float("nan"), "n/a"),
        (Share(float("nan")), "n/a"),
        ("transform-bound", "transform-bound"),
        (
            {"gen2": {"count": Count(3), "total_ms": Duration(41.5, "ms")}},
            "gen2: count: 3, total: 42 ms",
        ),
        (list(range(10)), "0, 1, 2, 3, 4, 5, 6, 7 …"),
    ],
)
def test_values_read_as_words(value: object, words: str) -> None:
    assert units.text(value) == words


def test_no_duration_under_a_millisecond_reads_zero() -> None:
    for seconds in (1e-7, 3e-6, 4.9e-4, 9.99e-4, 0.0014):
        number, unit = units.duration(seconds).split()
        assert float(number) > 0 and unit in ("µs", "ms"), (seconds, number, unit)
        assert len(number.replace(".", "").lstrip("0")) >= 2, "two significant digits at least"


@pytest.mark.parametrize(
    ("key", "value", "label"),
    [
        ("median_step_ms", Duration(6.0, "ms"), "Median step"),
        ("period_s", Duration(12.5), "Period"),
        ("involuntary_switches_per_s", Rate(467.0), "Involuntary switches"),
        ("slope_mb_per_s", Rate(1.0, "MB"), "Slope"),
        (
            "slope_ci95_mb_per_s",
            Interval(Rate(1.0, "MB"), Rate(2.0, "MB")),
            "Slope (95 % interval)",
        ),
        (
            "data_wait_share_ci95",
            Interval(Share(0.1), Share(0.2)),
            "Data wait share (95 % interval)",
        ),
        ("data_wait_share", Share(0.1), "Data wait share"),
        ("start_mb", Bytes(3.0, "MB"), "Start"),
        ("kb_per_step", Rate(708.0, "kB", per="step"), "Kb per step"),  # nothing left: the key
        ("median_step_ms", 6.0, "Median step ms"),  # an untyped number: the key as it is
    ],
)
def test_labels_leave_out_the_unit_the_value_carries(key: str, value: object, label: str) -> None:
    assert units.label(key, value) == label


def test_json_gets_the_bare_numbers_it_always_had() -> None:
    evidence = {
        "data_wait_share": Share(0.1234),
        "data_wait_share_ci95": Interval(Share(0.1), Share(0.15)),
        "steps": Count(188),
        "median_step_ms": Duration(16.02, "ms"),
        "limit_mb": Bytes(2048, "MB"),  # made from an int: stays one
        "memory_used_mb": Bytes(2048.0, "MB"),
        "cores": Number(2.0, "cores"),
        "pid": np.int64(4242),
        "saturated": np.bool_(True),
        "p": Number(float("nan")),
        "_private": 1,
        "loaders": [{"num_workers": 2, "pin_memory": False}],
    }
    text = json.dumps(units.plain(evidence), allow_nan=False)
    assert text == (
        '{"data_wait_share": 0.1234, "data_wait_share_ci95": [0.1, 0.15], "steps": 188, '
        '"median_step_ms": 16.02, "limit_mb": 2048, "memory_used_mb": 2048.0, "cores": 2.0, '
        '"pid": 4242, "saturated": true, "p": null, '
        '"loaders": [{"num_workers": 2, "pin_memory": false}]}'
    )


def test_values_behave_as_their_numbers() -> None:
    share = Share(0.25)
    assert share == 0.25 and share > 0.2 and share == pytest.approx(0.25)
    assert type(share * 2) is float and share * 2 == 0.5
    assert f"{share:.2f}" == "0.25" and str(share) == "0.25"
    assert Count(3) + 1 == 4 and isinstance(Count(3), int)
    assert Duration(40, "ms").seconds == pytest.approx(0.04)
    assert Bytes(2, "MB").base == 2 * 2**20
    assert math.isclose(Share(48.0, "%").base, 0.48)


def test_values_are_immutable_and_survive_pickling() -> None:
    rate = Rate(89.7, "MB", per="s")
    with pytest.raises(AttributeError):
        rate.unit = "kB"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Interval(1, 2).level = 90  # type: ignore[misc]
    for value in (rate, Bytes(2048, "MB"), Duration(3.0, "ms"), Interval(Share(0.1), Share(0.2))):
        back = pickle.loads(pickle.dumps(value))
        assert back == value and units.text(back) == units.text(value)
    assert pickle.loads(pickle.dumps(Bytes(2048, "MB"))).whole


def test_an_unknown_unit_is_refused() -> None:
    with pytest.raises(ValueError, match="no unit"):
        Duration(3, "minutes")
    with pytest.raises(ValueError, match="no unit"):
        Bytes(3, "MiB")


def test_html_and_markdown_escape_what_they_render() -> None:
    assert units.html("<b>a & b</b>") == "&lt;b&gt;a &amp; b&lt;/b&gt;"
    assert units.html(Share(0.5)) == "50 %"
    assert units.markdown("a_b | *c* [d]") == r"a\_b \| \*c\* \[d\]"
    assert units.markdown(Duration(0.25)) == "250 ms"


def test_elapsed_and_clock() -> None:
    assert units.elapsed(12.34) == "12.3 s"
    assert units.elapsed(245) == "4 min 05 s"
    assert units.elapsed(7380) == "2 h 03 min"
    assert units.clock(245) == "4:05"
    assert units.clock(3723) == "1:02:03"
