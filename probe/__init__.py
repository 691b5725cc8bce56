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

A long job that may need diagnosing later, where no debugger can attach (see docs/attach.md)::

    probe.listen()                # or PROBE_LISTEN=1 in the environment of a job that imports probe

lets ``probe attach PID`` switch the agent on and off in it later.

From Python, or in Jupyter after ``%load_ext probe`` with ``%%probe`` on a cell::

    with probe.profile() as run:  # records this block of this process, and what it starts
        train(model, loader)
    run.diagnosis                 # the verdict (probe.diagnosis/1), run.report() the HTML
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any


__version__ = "0.1.0"
__all__ = ["__version__", "listen", "profile", "span", "step"]

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


def profile(name: str | None = None, dest: str = ".probe", *, force: bool = False) -> Any:
    """Record a block of this process (and what it starts), then diagnose it::

        with probe.profile() as run:
            train(model, loader)
        run.diagnosis["category"], run.report()

    The session is written to ``dest/name`` (default name: the time and pid), as ``probe doctor``
    writes it; ``force`` overwrites a session of that name. See probe.profiling.
    """
    from probe.profiling import profile as _profile

    return _profile(name, dest, force=force)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext probe`` in IPython or Jupyter: adds the ``%%probe`` cell magic."""
    from probe.notebook import load

    load(ipython)


def listen() -> str | None:
    """Let ``probe attach PID`` switch probe's agent on in this process later, without a debugger.

    Starts one background thread waiting on a Unix socket only this user can reach; nothing is
    recorded or hooked until ``probe attach`` asks, and everything is removed when it ends.
    Returns the socket's path, or None (with a RuntimeWarning saying why) if it cannot listen.
    """
    from probe.agent import listener

    try:
        return listener.listen()
    except listener.ListenError as exc:
        import warnings

        warnings.warn(f"probe.listen(): {exc}", RuntimeWarning, stacklevel=2)
        return None


def _listen_if_asked() -> None:
    import os

    if os.environ.get("PROBE_LISTEN", "").strip().lower() in ("", "0", "false", "no", "off"):
        return
    try:
        from probe.agent import listener

        listener.listen_from_env()
    except Exception:  # never break the import of a job
        pass


_listen_if_asked()
