"""Numbers that carry their unit, and the one place where they become words.

Evidence, thresholds and every number in a sentence probe writes are typed:

    Share(0.19)                    a fraction of something (0-1), shown as "19 %"
    Share(48.0, "%")               the same in percent points (NVML's utilisation)
    Duration(0.0043)               seconds; Duration(4.3, "ms") and Duration(43, "us") too
    Bytes(32 * 2**20)              bytes; Bytes(89.7, "MB") and "kB", "GB" (1024-based)
    Rate(89.7, "MB", per="s")      a duration, a size or a count ("") per second, step, node...
    Count(188)                     a whole number of things, shown "12 345"
    Number(1.25, "cores")          any other number, with an optional unit word
    Interval(Share(0.1), Share(0.2))  a 95 % interval: the pair [low, high] in JSON

The numeric types subclass ``float`` (``Count``: ``int``), so arithmetic and comparisons work
exactly as on the bare number (and give a bare number back), and the diagnosis JSON writes the
bare number in the unit the value was made in: ``Duration(12.34, "ms")`` is written ``12.34``
under a key that says ``_ms``, as it always was. Strings, booleans, None, and lists and dicts of
evidence values are evidence too.

Words come only from here: ``text`` (the terminal and every sentence in the diagnosis),
``html`` (escaped) and ``markdown`` (escaped for Markdown), ``label`` (an evidence key in words,
its unit suffix left out because the value says it) and ``plain`` (the JSON value).
``percent``, ``duration`` and ``size`` are the shorthands sentences use for bare numbers.
"""

from __future__ import annotations

import html as _html
import math
import re
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

MAX_ITEMS = 8  # list items written out in words; the rest are "…"

DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
BYTE_UNITS = {"B": 1.0, "kB": 2.0**10, "MB": 2.0**20, "GB": 2.0**30}
KiB, MiB, GiB = 2**10, 2**20, 2**30

_Q = TypeVar("_Q", bound="Quantity")


class Quantity(float):
    """A number with a unit. Immutable; arithmetic gives a bare ``float``."""

    UNITS: ClassVar[dict[str, float]] = {"": 1.0}  # unit -> its size in the base unit
    unit: str
    whole: bool  # made from an int: JSON writes it as one (2048, not 2048.0)

    def __new__(cls: type[_Q], value: float, unit: str | None = None) -> _Q:
        self = super().__new__(cls, value)
        chosen = next(iter(cls.UNITS)) if unit is None else unit
        if cls.UNITS and chosen not in cls.UNITS:
            raise ValueError(f"{cls.__name__} has no unit {chosen!r} (known: {list(cls.UNITS)})")
        object.__setattr__(self, "unit", chosen)
        object.__setattr__(self, "whole", isinstance(value, int) or _is_numpy_integer(value))
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._magnitude(), self.unit))

    def _magnitude(self) -> float:
        return int(self) if self.whole else float(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({float(self)!r}, {self.unit!r})"

    def __str__(self) -> str:
        return float.__repr__(self)  # the bare number, as for a float: words come from text()

    @property
    def base(self) -> float:
        """The value in the kind's base unit (a fraction, seconds, bytes)."""
        return float(self) * self.UNITS.get(self.unit, 1.0)


class Share(Quantity):
    """A fraction of a whole: of step time, of the window, of a core's time. 0.19 reads 19 %."""

    UNITS: ClassVar[dict[str, float]] = {"": 1.0, "%": 0.01}


class Duration(Quantity):
    UNITS: ClassVar[dict[str, float]] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}

    @property
    def seconds(self) -> float:
        return self.base


class Bytes(Quantity):
    UNITS: ClassVar[dict[str, float]] = {"B": 1.0, "kB": 2.0**10, "MB": 2.0**20, "GB": 2.0**30}


class Number(Quantity):
    """Any other number; ``unit`` is a word written after it ("cores", "threads", "x")."""

    UNITS: ClassVar[dict[str, float]] = {}  # any unit word

    def __new__(cls, value: float, unit: str = "") -> Number:
        return super().__new__(cls, value, unit)


class Rate(Quantity):
    """A duration, a size or a count per something: ``Rate(89.7, "MB", per="s")``."""

    UNITS: ClassVar[dict[str, float]] = {"": 1.0, **DURATION_UNITS, **BYTE_UNITS}
    per: str

    def __new__(cls, value: float, unit: str = "", *, per: str = "s") -> Rate:
        self = super().__new__(cls, value, unit)
        object.__setattr__(self, "per", per)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rate, (self._magnitude(), self.unit, self.per))

    def __repr__(self) -> str:
        return f"Rate({float(self)!r}, {self.unit!r}, per={self.per!r})"


def _rate(value: float, unit: str, per: str) -> Rate:
    return Rate(value, unit, per=per)


class Count(int):
    """A whole number of things: steps, samples, workers. Identifiers (pids, ranks) stay ``int``."""

    def __repr__(self) -> str:
        return f"Count({int(self)})"

    def __str__(self) -> str:
        return int.__repr__(self)


class Interval(tuple[Any, Any]):
    """A confidence interval ``(low, high)`` of two values of one kind; JSON writes the pair."""

    level: int

    def __new__(cls, low: Any, high: Any, level: int = 95) -> Interval:
        self = super().__new__(cls, (low, high))
        object.__setattr__(self, "level", level)
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Interval is immutable")

    def __repr__(self) -> str:
        return f"Interval({self[0]!r}, {self[1]!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Interval, (self[0], self[1], self.level))


# -- words ----------------------------------------------------------------------------------------


def text(value: object) -> str:
    """The value in plain words, for the terminal and for sentences: ``Share(0.19)`` -> "19 %"."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Interval):
        return f"{text(value[0])} to {text(value[1])}"
    if isinstance(value, Mapping):  # keys as they are (parameter names), less their unit
        return ", ".join(
            f"{_bare_key(str(k), v)}: {text(v)}"
            for k, v in value.items()
            if not str(k).startswith("_")
        )
    if isinstance(value, (list, tuple)):
        items = [text(v) for v in list(value)[:MAX_ITEMS]]
        return ", ".join(items) + (" …" if len(value) > MAX_ITEMS else "")
    if isinstance(value, Count):
        return _grouped(int(value))
    if isinstance(value, int) or _is_numpy_integer(value):
        return str(int(value))  # type: ignore[call-overload]  # an identifier: pid, rank, tid
    if isinstance(value, float) or _is_numpy_number(value):
        return _number_text(value)
    return str(value)


def html(value: object) -> str:
    """The value in words, escaped for HTML."""
    return _html.escape(text(value))


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def markdown(value: object) -> str:
    """The value in words, escaped for Markdown (inline text, table cells)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text(value))


def percent(fraction: float) -> str:
    """A bare fraction in words: 0.19 -> "19 %", 0.043 -> "4.3 %"."""
    return text(Share(fraction))


def duration(seconds: float) -> str:
    """Bare seconds in words: 0.00043 -> "430 µs", 0.0043 -> "4.3 ms", 0.25 -> "250 ms",
    2.5 -> "2.5 s", 12.5 -> "12.5 s", 250 -> "4 min"."""
    return text(Duration(seconds))


def size(n_bytes: float) -> str:
    """Bare bytes in words: 1.5 * 2**20 -> "1.5 MB", 12 * 2**30 -> "12.0 GB"."""
    return text(Bytes(n_bytes))


def sizes(first: float, second: float) -> tuple[str, str]:
    """Two sizes in words, in the unit of the larger, so that "6.3 GB to 42.8 GB" reads at a
    glance where "6427 MB to 42.8 GB" does not."""
    if max(abs(first), abs(second)) < 10 * GiB:
        return size(first), size(second)
    return f"{first / GiB:.1f} GB", f"{second / GiB:.1f} GB"


def elapsed(seconds: float) -> str:
    """How long a run lasted, as a person reads a clock: "12.3 s", "4 min 05 s", "2 h 03 min"."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        m, s = divmod(int(round(seconds)), 60)
        return f"{m} min {s:02d} s"
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h} h {rest // 60:02d} min"


def clock(seconds: float) -> str:
    """A running clock: "4:05", "1:02:03"."""
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def label(key: str, value: object = None, *, capital: bool = True) -> str:
    """An evidence key in words: ``median_step_ms`` with a ``Duration`` -> "Median step".

    The unit suffix is left out because the value says it; which suffix that is comes from the
    value's type and unit, never from guessing at the key. ``*_ci95`` keys of an ``Interval``
    read "(95 % interval)".
    """
    words = _bare_key(key, value).replace("_", " ")
    if isinstance(value, Interval):
        words += f" ({value.level} % interval)"
    return words[:1].upper() + words[1:] if capital else words


def _bare_key(key: str, value: object) -> str:
    """``key`` less the unit suffix (and the ``_ci95`` tag) that ``value`` makes redundant."""
    name = key
    inner = value[0] if isinstance(value, Interval) else value
    suffix = _key_suffix(inner)
    if suffix:
        name = name.removesuffix(suffix)
    if isinstance(value, Interval):
        name = name.removesuffix(f"_ci{value.level}")
        if suffix:
            name = name.removesuffix(suffix)
    return name or key


def plain(value: Any) -> Any:
    """The JSON form of an evidence value: bare numbers (nan as null), lists, dicts of those;
    keys starting with "_" are private to the detector and left out."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or _numpy_kind(value) == "b":
        return bool(value)
    if isinstance(value, int) or _is_numpy_integer(value) or getattr(value, "whole", False):
        return int(value)
    if isinstance(value, float) or _is_numpy_number(value):
        v = float(value)
        return v if math.isfinite(v) else None
    return value


# -- the rules, one per kind ----------------------------------------------------------------------


def _number_text(value: object) -> str:
    v = float(value)  # type: ignore[arg-type]
    if not math.isfinite(v):
        return "n/a"
    if isinstance(value, Share):
        return _share(value.base)
    if isinstance(value, Duration):
        return _duration(value.base)
    if isinstance(value, Bytes):
        return _bytes(value.base)
    if isinstance(value, Rate):
        per = "/s" if value.per == "s" else f" per {value.per}"
        if value.unit in DURATION_UNITS:
            amount = _duration(value.base)
        elif value.unit in BYTE_UNITS:
            amount = _bytes(value.base)
        else:
            amount = _plain_number(v)
        return amount + per
    if isinstance(value, Number) and value.unit:
        return _with_unit(_plain_number(v), value.unit)
    return _plain_number(v)


def _with_unit(number: str, unit: str) -> str:
    if unit == "x":  # a ratio: "1.5x"
        return number + unit
    if number == "1" and unit.endswith("s"):
        unit = unit[:-1]  # "1 core", "1 thread", "1 step"
    return f"{number} {unit}"


def _share(fraction: float) -> str:
    """Whole percent from 10 % up; below, one decimal when it says something: 7.6 %, 5 %."""
    points = 100 * fraction
    if fraction >= 0.1 or round(points, 1) == round(points):
        return f"{points:.0f} %"
    return f"{points:.1f} %"


def _duration(seconds: float) -> str:
    s = abs(seconds)
    sign = "-" if seconds < 0 else ""
    if s == 0:
        return "0 ms"
    if s < 1e-3:
        return f"{sign}{_significant(s * 1e6)} µs"
    if s < 0.01:
        return f"{sign}{_significant(s * 1e3)} ms"
    if s < 1:
        return f"{sign}{s * 1e3:.0f} ms"
    if s < 10:
        return f"{sign}{s:.3g} s"
    if s < 120:
        return f"{sign}{s:.1f} s"
    if s < 2 * 3600:
        return f"{sign}{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{sign}{s / 3600:.1f} h"
    return f"{sign}{s / 86400:.0f} days"


def _bytes(n: float) -> str:
    a = abs(n)
    sign = "-" if n < 0 else ""
    if a < KiB:
        return f"{n:.0f} B"
    if a < MiB:
        return f"{sign}{_significant(a / KiB)} kB"
    if a < 10 * MiB:
        return f"{sign}{_significant(a / MiB)} MB"
    if a < 10 * GiB:
        return f"{n / MiB:.0f} MB"
    return f"{n / GiB:.1f} GB"


def _significant(x: float) -> str:
    """At least two significant digits, no exponent: 0.43, 4.3, 43, 430."""
    decimals = max(1 - math.floor(math.log10(x)), 0) if x > 0 else 0
    return f"{x:.{decimals}f}"


def _plain_number(v: float) -> str:
    if v == int(v) and abs(v) < 1e15:
        return _grouped(int(v))
    if abs(v) >= 1000:
        return _grouped(round(v))
    return f"{v:.3g}"


def _grouped(n: int) -> str:
    return f"{n:,}".replace(",", " ")


def _key_suffix(value: object) -> str:
    """The suffix a key carries for this value's unit: "_ms", "_mb_per_s", "_per_s"."""
    if isinstance(value, Rate):
        unit = value.unit.lower() if value.unit != "B" else "bytes"
        return (f"_{unit}" if unit else "") + f"_per_{value.per}"
    if isinstance(value, Duration):
        return f"_{value.unit}"
    if isinstance(value, Bytes):
        return "_bytes" if value.unit == "B" else f"_{value.unit.lower()}"
    return ""


def _numpy_kind(value: object) -> str:
    """The dtype kind of a numpy scalar ("" for anything else), without importing numpy."""
    if type(value).__module__ != "numpy":
        return ""
    return str(getattr(getattr(value, "dtype", None), "kind", ""))


def _is_numpy_number(value: object) -> bool:
    return _numpy_kind(value) in ("f", "i", "u")


def _is_numpy_integer(value: object) -> bool:
    return _numpy_kind(value) in ("i", "u")


__all__ = [
    "Bytes",
    "Count",
    "Duration",
    "Interval",
    "Number",
    "Quantity",
    "Rate",
    "Share",
    "clock",
    "duration",
    "elapsed",
    "html",
    "label",
    "markdown",
    "percent",
    "plain",
    "size",
    "sizes",
    "text",
]
