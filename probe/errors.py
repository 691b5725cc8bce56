"""Errors raised by probe's library code.

Library code raises these and never exits or prints; ``probe.cli`` is the one place that turns
them into a message on stderr and an exit status.
"""

from __future__ import annotations


class ProbeError(Exception):
    """An error with a message meant for the user, and the exit status it should end with."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class SessionError(ProbeError):
    """A session directory cannot be read."""


class SessionNotFound(SessionError):
    """No such directory."""


class NotASession(SessionError):
    """The directory exists but holds no probe session."""


class SessionVersionError(SessionError):
    """The session was written in a format this probe does not read."""


class AnalysisError(ProbeError):
    """Sessions could not be analysed (a worker process analysing them failed)."""


class JobError(SessionError):
    """Sessions given as one job are not one job (different jobs, one rank twice)."""


class DestinationError(ProbeError):
    """The session directory cannot be created where asked."""


class CommandNotFound(ProbeError):
    """The command to run does not exist (exit status 127, as a shell would)."""

    exit_code = 127


class CommandNotExecutable(ProbeError):
    """The command exists but cannot be executed (exit status 126, as a shell would)."""

    exit_code = 126


class AttachError(ProbeError):
    """A running process cannot be attached to."""


class ExportError(ProbeError):
    """A session cannot be exported as asked (an unknown format, a window outside the run...)."""


class ProfileError(ProbeError):
    """``probe.profile()`` cannot record here (already recorded, or the sampler did not start)."""


class CollectorError(ProbeError):
    """A collector could not read what it samples (caught by the sampler, which goes on)."""


class ServerNotListening(ProbeError):
    """``probe doctor --on-port``: the server never listened on a TCP port."""


class LoadError(ProbeError):
    """``probe load`` cannot run as asked (a bad URL, a host it may not load, no HTTP client)."""


class CompareError(ProbeError):
    """Two sides cannot be compared as given (a missing or foreign directory, sessions of
    different programs, no steps on one side): bad input, exit status 2."""

    exit_code = 2

    def __reduce__(self) -> tuple[object, ...]:
        # Raised in the processes that analyse sessions: the hint must survive the pickle.
        return (_compare_error, (self.message, self.hint))


def _compare_error(message: str, hint: str | None) -> CompareError:
    return CompareError(message, hint=hint)
