"""Where a process was when it crashed: the interpreter's fault handler, writing into the session.

A segmentation fault, bus error, illegal instruction, floating-point trap or abort (a C++
exception nobody caught ends in one) kills a process before any Python code can run, so nothing
the agent buffers explains it. ``faulthandler`` can: from the signal handler it writes the Python
traceback of every thread to a file descriptor, then lets the signal take its course (the exit
status is unchanged). Each profiled process gets ``fault-<pid>.txt`` in the session; a process
that ends without a fault leaves no file behind. A target that turned faulthandler on itself
(``-X faulthandler``, ``PYTHONFAULTHANDLER``, ``faulthandler.enable()``) keeps its own.
"""

from __future__ import annotations

import faulthandler
import os


class FaultLog:
    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._fd = -1
        self._path = ""

    @property
    def enabled(self) -> bool:
        return self._fd >= 0

    def enable(self, pid: int) -> None:
        """Point the fault handler at this process's file, unless the target has its own."""
        if self._fd >= 0 or faulthandler.is_enabled():
            return
        self._open(pid)

    def after_fork_child(self, pid: int) -> None:
        """The child shares the parent's file: give it its own."""
        if self._fd < 0:
            return
        old = self._fd
        self._open(pid)  # the handler now writes to the child's file
        try:
            os.close(old)  # the child's copy of the parent's descriptor
        except OSError:
            pass

    def disable(self) -> None:
        """Hand the fault handler back (probe attach detaching) and remove an empty file."""
        if self._fd < 0:
            return
        faulthandler.disable()
        fd, path = self._fd, self._path
        self._fd, self._path = -1, ""
        self._unlink_if_empty(fd, path)
        try:
            os.close(fd)
        except OSError:
            pass

    def tidy(self) -> None:
        """At exit: an empty file means no fault, so it goes. The descriptor stays open and the
        handler on: it cannot be told whether the target replaced it since, and a handler left
        pointing at a closed (later reused) descriptor could write into someone else's file."""
        if self._fd >= 0:
            self._unlink_if_empty(self._fd, self._path)

    def _open(self, pid: int) -> None:
        path = os.path.join(self._directory, f"fault-{pid}.txt")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o644)
        faulthandler.enable(file=fd, all_threads=True)
        self._fd, self._path = fd, path

    @staticmethod
    def _unlink_if_empty(fd: int, path: str) -> None:
        try:
            if os.fstat(fd).st_size == 0:
                os.unlink(path)
        except OSError:
            pass
