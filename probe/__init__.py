"""probe: a doctor for ML model runtimes.

The public API for code that wants to help probe (optional, never required)::

    import probe

    for batch in loader:
        model(batch)
        probe.step()              # marks the end of one step where no optimizer runs (inference)

    with probe.span("eval"):     # names a phase of the run
        evaluate(model)

Both are no-ops costing a function call when nothing profiles the process. Importing probe
imports neither torch nor bokeh nor anything outside the standard library.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any


__version__ = "0.1.0"
__all__ = ["__version__", "span", "step"]

# Set by probe.agent.runtime when this process is profiled: an object with step() and span().
_agent: Any = None


class _NoSpan:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


_NO_SPAN = _NoSpan()


def step() -> None:
    """Mark the end of one step of the main loop (use it where no torch optimizer steps)."""
    agent = _agent
    if agent is not None:
        agent.step()


def span(name: str) -> Any:
    """A context manager naming a phase of the run (``with probe.span("eval"): ...``)."""
    agent = _agent
    if agent is None:
        return _NO_SPAN
    return agent.span(str(name))
