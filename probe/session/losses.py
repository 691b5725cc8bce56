"""What a session lost while it was recorded, and the words that say so.

A writer that could not write everything notes it in its file's header (``lost``, see
``probe.session.writer``); a part of the agent or of the outside sampler that failed leaves an
``agent_error``, ``collector_error`` or ``collector_off`` event. Both become ``Loss`` entries,
one per writer, each with its episodes (what stopped being recorded, from when, until when, why).
numpy-free: the probe process reads them right after a run without the analysis stack.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from probe.session.records import RecordFileData

WHAT = {
    "stacks": "stack samples were not recorded",
    "all": "nothing was recorded",
    "overflow": "records were dropped: writing did not keep up",
    "file": "its record file was lost",
    "collector": "a collector failed",
    "detector": "a check of the analysis failed",
}
MAX_ERROR_CHARS = 200


@dataclass
class Episode:
    what: str  # stacks, all, overflow, file, collector, detector
    from_ns: int | None
    until_ns: int | None  # None: until the end
    cause: str
    part: str = ""  # for "collector": which part of probe failed
    count: int = 1  # for "collector": how many failures were reported
    off_ns: int | None = None  # for "collector": when it was switched off for failing


@dataclass
class Loss:
    """What one writer (an agent's file, the sampler's) or one failing part lost."""

    source: str  # agent, sampler, analysis
    pid: int | None  # the profiled process, for an agent
    file: str | None
    dropped: dict[str, int] = field(default_factory=dict)  # records dropped, by kind
    episodes: list[Episode] = field(default_factory=list)

    @property
    def who(self) -> str:
        if self.source == "agent" and self.pid is not None:
            return f"agent in process {self.pid}"
        if self.source == "sampler":
            return "outside sampler"
        return self.source

    def lines(self, start_ns: int) -> list[str]:
        """One sentence per episode, with times in seconds since ``start_ns``."""
        out = [f"{self.who}: {describe(e, start_ns)}" for e in self.episodes]
        if self.dropped:
            total = sum(self.dropped.values())
            kinds = ", ".join(
                f"{n} {kind}" for kind, n in sorted(self.dropped.items(), key=lambda kv: -kv[1])
            )
            line = f"{self.who}: {total} record(s) dropped ({kinds})"
            if out:
                out[-1] += f"; {total} record(s) dropped ({kinds})"
            else:
                out.append(line)
        return out

    def to_json(self, start_ns: int) -> dict[str, Any]:
        """The diagnosis JSON's ``losses[]`` entry (docs/diagnosis-schema.md)."""

        def sec(ns: int | None) -> float | None:
            return None if ns is None else round((ns - start_ns) / 1e9, 3)

        return {
            "source": self.source,
            "pid": self.pid,
            "dropped": dict(self.dropped),
            "episodes": [
                {
                    "what": e.what,
                    "part": e.part or None,
                    "from_s": sec(e.from_ns),
                    "until_s": sec(e.until_ns),
                    "cause": e.cause,
                }
                for e in self.episodes
            ],
            "text": self.lines(start_ns),
        }


def describe(e: Episode, start_ns: int) -> str:
    what = WHAT.get(e.what, e.what)
    if e.what == "collector":
        at = f" at {(e.from_ns - start_ns) / 1e9:.1f} s" if e.from_ns is not None else ""
        times = f", {e.count} times" if e.count > 1 else ""
        off = ""
        if e.off_ns is not None:
            off = f"; switched off at {(e.off_ns - start_ns) / 1e9:.1f} s"
        return f"{e.part or 'a collector'} failed{at}{times} ({e.cause}){off}"
    if e.what == "detector":
        return f"the {e.part} check failed ({e.cause}); the verdict is made without it"
    if e.what == "file":
        at = f" at {(e.from_ns - start_ns) / 1e9:.1f} s" if e.from_ns is not None else ""
        return f"{what}{at} ({e.cause})"
    return f"{what}{_when(e, start_ns)} ({e.cause})"


def _when(e: Episode, start_ns: int) -> str:
    if e.from_ns is None:
        return ""
    since = f"{(e.from_ns - start_ns) / 1e9:.1f} s"
    if e.until_ns is None:
        return f" from {since} on"
    return f" from {since} to {(e.until_ns - start_ns) / 1e9:.1f} s"


def losses_of(files: Iterable[RecordFileData]) -> list[Loss]:
    """The losses noted in record files' headers and told by their failure events."""
    files = list(files)
    out: list[Loss] = []
    by_writer: dict[tuple[str, int | None], Loss] = {}

    def entry(source: str, pid: int | None, file: str | None) -> Loss:
        key = (source, pid)
        loss = by_writer.get(key)
        if loss is None:
            loss = by_writer[key] = Loss(source=source, pid=pid, file=file)
            out.append(loss)
        return loss

    for f in files:
        lost = f.lost
        if lost is None:
            continue
        source = "agent" if f.writer == "agent" else "sampler"
        loss = entry(source, f.pid if source == "agent" else None, f.path.name)
        dropped = lost.get("dropped")
        if isinstance(dropped, dict):
            for kind, n in dropped.items():
                if isinstance(n, int) and n > 0:
                    loss.dropped[str(kind)] = loss.dropped.get(str(kind), 0) + n
        episodes = lost.get("episodes")
        for e in episodes if isinstance(episodes, list) else []:
            if isinstance(e, dict) and isinstance(e.get("what"), str):
                loss.episodes.append(
                    Episode(
                        what=e["what"],
                        from_ns=_ns(e.get("from")),
                        until_ns=_ns(e.get("until")),
                        cause=str(e.get("cause", ""))[:MAX_ERROR_CHARS],
                    )
                )
    seen: dict[tuple[str, int | None, str], Episode] = {}
    failures = (
        (f, ev)
        for f in files
        for ev in f.events
        if ev.get("type") in ("agent_error", "collector_error", "collector_off", "agent_errors")
    )
    totals: list[tuple[str, int | None, dict[str, Any]]] = []
    for f, ev in sorted(failures, key=lambda pair: _ns(pair[1].get("t")) or 0):
        kind = ev.get("type")
        source = "agent" if f.writer == "agent" else "sampler"
        pid = f.pid if source == "agent" else None
        if kind == "agent_errors":  # the agent's count of every failure, at its exit
            counts = ev.get("counts")
            if isinstance(counts, dict):
                totals.append((source, pid, counts))
            continue
        part = str(ev.get("where") or ev.get("collector") or "?")
        episode = seen.get((source, pid, part))
        if episode is None:
            episode = seen[(source, pid, part)] = Episode(
                what="collector",
                from_ns=_ns(ev.get("t")),
                until_ns=None,
                cause=str(ev.get("error", ""))[:MAX_ERROR_CHARS],
                part=part,
                count=0,
            )
            entry(source, pid, None).episodes.append(episode)
        if kind == "collector_off":
            episode.off_ns = _ns(ev.get("t"))
            told = ev.get("failures")
            if isinstance(told, int):
                episode.count = max(episode.count, told)
        else:  # an error that repeats: its first time says it, and how often
            episode.count += 1
    for source, pid, counts in totals:
        for part, n in counts.items():
            known = seen.get((source, pid, str(part)))
            if known is not None and isinstance(n, int):
                known.count = max(known.count, n)
    return out


def _ns(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


__all__ = ["Episode", "Loss", "describe", "losses_of"]
