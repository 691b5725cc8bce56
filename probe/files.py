"""Writing a file that someone else reads: the report, the verdict, meta.json, the agents' notes.

``write_atomic`` writes a temporary file beside the target and renames it over the target, so a
reader (a browser, ``jq``, ``probe attach`` polling for its agents) sees the old file or the new
one, never half of one; the temporary file is removed whatever happens. Light on purpose (``os``
and ``threading`` only): the agent uses it inside the profiled processes.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading


def write_atomic(path: str | os.PathLike[str], data: str | bytes, encoding: str = "utf-8") -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename; raises ``OSError``.

    The temporary file is ``.NAME.PID.THREAD.tmp`` in the same directory (a rename is atomic
    only within one filesystem), created with the usual permissions (0666 less the umask) and
    never through a symbolic link someone left at its name. A target that exists and is not a
    regular file (``/dev/null``, ``/dev/stdout``, a named pipe) is written to, never replaced:
    ``--json /dev/null`` must not turn /dev/null into a file.
    """
    target = os.fspath(path)
    payload = data.encode(encoding) if isinstance(data, str) else data
    try:
        mode: int | None = os.stat(target).st_mode
    except OSError:
        mode = None  # not there yet (or not reachable: the rename says so)
    if mode is not None and not stat.S_ISREG(mode):
        with open(target, "wb") as f:
            f.write(payload)
        return
    directory, name = os.path.split(target)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):  # gone already, or not removable: the first error wins
            os.unlink(tmp)  # still there only when writing or renaming failed (a full disk)


__all__ = ["write_atomic"]
