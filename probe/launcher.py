"""Start the target command so that it behaves exactly as if run directly, and get its exit status.

- argv, cwd, stdin/stdout/stderr and inherited file descriptors are passed through untouched; the
  environment differs only by the agent's two variables (PYTHONPATH, PROBE_AGENT).
- The command gets its own process group. On a terminal, that group is made the foreground group
  (as a shell does for a job), so Ctrl-C, Ctrl-\\ and Ctrl-Z reach the command exactly as they
  would without probe; probe takes the terminal back when the command stops or ends.
- Signals sent to probe itself (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2) are forwarded
  to the command's process group.
- The exit status is the command's own, or 128+N when signal N ended it; a command that cannot be
  found is 127 and one that cannot be executed is 126, as in a shell.
- If probe is killed outright (SIGKILL), the command receives SIGKILL too (PR_SET_PDEATHSIG) rather
  than running on unobserved.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from probe.errors import CommandNotExecutable, CommandNotFound

FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
INTERRUPTING_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
_PR_SET_PDEATHSIG = 1


@dataclass
class RunResult:
    pid: int
    exit_code: int | None  # the command's own exit code, when it exited
    signal: int | None  # the signal that ended it, when one did
    started_ns: int
    ended_ns: int
    forwarded: list[int]  # signals probe forwarded to the command

    @property
    def status(self) -> int:
        """The shell-style exit status probe itself returns."""
        if self.signal is not None:
            return 128 + self.signal
        return self.exit_code if self.exit_code is not None else 1

    @property
    def interrupted(self) -> bool:
        """The run was cut short by the user or the system (Ctrl-C, SIGTERM, SIGHUP).

        On a terminal Ctrl-C goes straight to the command, so an exit status of 128+N for those
        signals (the convention for a program that handled one and exited) counts as well.
        """
        if self.signal in INTERRUPTING_SIGNALS:
            return True
        if self.exit_code is not None and self.exit_code - 128 in INTERRUPTING_SIGNALS:
            return True
        return any(s in INTERRUPTING_SIGNALS for s in self.forwarded)


def resolve_command(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """The path that will be executed for ``argv[0]``, or a CommandNotFound/NotExecutable error."""
    if not argv:
        raise CommandNotFound("no command given")
    name = argv[0]
    if os.sep in name:
        if not os.path.exists(name):
            raise CommandNotFound(f"command not found: {name}")
        if os.path.isdir(name) or not os.access(name, os.X_OK):
            raise CommandNotExecutable(f"cannot execute: {name} (permission denied)")
        return name
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    if found is None:
        raise CommandNotFound(f"command not found: {name}")
    return found


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl: Callable[..., int] = libc.prctl
        return prctl
    except (OSError, AttributeError):
        return None


class Launcher:
    """Runs one command; ``start()`` then ``wait()``."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        cwd: str | None = None,
        stdin: Any = None,
        stdout: Any = None,
        stderr: Any = None,
        use_terminal: bool = True,
        forward_signals: bool = True,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self._stdio = (stdin, stdout, stderr)
        self._tty_fd: int | None = self._foreground_tty() if use_terminal else None
        self._forward_signals = forward_signals
        self._prctl = _load_prctl()
        self.proc: subprocess.Popen[bytes] | None = None
        self.forwarded: list[int] = []
        self._old_handlers: dict[int, Any] = {}
        self.started_ns = 0

    @staticmethod
    def _foreground_tty() -> int | None:
        """stdin's terminal, if probe is its foreground job (else no terminal handover)."""
        try:
            if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
                return 0
        except OSError:
            pass
        return None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> int:
        executable = resolve_command(self.argv, self.env)
        tty_fd = self._tty_fd
        prctl = self._prctl

        def in_child() -> None:
            os.setpgid(0, 0)
            if tty_fd is not None:
                old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
                try:
                    os.tcsetpgrp(tty_fd, os.getpgrp())
                except OSError:
                    pass
                signal.signal(signal.SIGTTOU, old)
            if prctl is not None:
                prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

        self.started_ns = time.monotonic_ns()
        try:
            self.proc = subprocess.Popen(
                self.argv,
                executable=executable,
                env=self.env,
                cwd=self.cwd,
                stdin=self._stdio[0],
                stdout=self._stdio[1],
                stderr=self._stdio[2],
                close_fds=False,
                preexec_fn=in_child,  # noqa: PLW1509 - probe has no other thread yet
            )
        except FileNotFoundError as exc:
            raise CommandNotFound(f"command not found: {self.argv[0]}") from exc
        except PermissionError as exc:
            raise CommandNotExecutable(f"cannot execute: {self.argv[0]} ({exc.strerror})") from exc
        if tty_fd is not None:
            self._give_terminal(self.proc.pid)
        if self._forward_signals:
            for sig in FORWARDED_SIGNALS:
                self._old_handlers[sig] = signal.signal(sig, self._forward)
        return self.proc.pid

    def send(self, signum: int) -> None:
        """Send a signal to the command's process group (to the command alone if that fails)."""
        self._forward(signum, None)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self.forwarded.append(signum)
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.proc.pid, signum)

    def _give_terminal(self, pgid: int) -> None:
        if self._tty_fd is None:
            return
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(self._tty_fd, pgid)
        except OSError:
            pass
        finally:
            signal.signal(signal.SIGTTOU, old)

    def wait(self) -> RunResult:
        assert self.proc is not None
        pid = self.proc.pid
        status = 0
        while True:
            try:
                _, status = os.waitpid(pid, os.WUNTRACED)
            except ChildProcessError:
                status = 0
                break
            if os.WIFSTOPPED(status):
                self._suspend_with(pid)
                continue
            break
        return self._ended(status)

    def _ended(self, status: int) -> RunResult:
        assert self.proc is not None
        ended = time.monotonic_ns()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.restore()
        code = sig = None
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
        else:
            code = os.WEXITSTATUS(status)
        return RunResult(self.proc.pid, code, sig, self.started_ns, ended, list(self.forwarded))

    def poll(self) -> RunResult | None:
        """The result if the command has ended, else None (never blocks; no job control)."""
        assert self.proc is not None
        try:
            pid, status = os.waitpid(self.proc.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.proc.pid, 0
        return None if pid == 0 else self._ended(status)

    def _suspend_with(self, pid: int) -> None:
        """The command was stopped (Ctrl-Z): stop probe too, so the shell sees its job stop."""
        self._give_terminal(os.getpgrp())
        os.kill(os.getpid(), signal.SIGSTOP)
        # Resumed (fg/bg): hand the terminal back if we are in the foreground, and continue it.
        if self._tty_fd is not None:
            try:
                if os.tcgetpgrp(self._tty_fd) == os.getpgrp():
                    self._give_terminal(pid)
            except OSError:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)

    def restore(self) -> None:
        """Take the terminal back and restore probe's own signal handlers."""
        if self._tty_fd is not None:
            self._give_terminal(os.getpgrp())
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
