"""One record file: created exclusively, a header slot rewritten in place, chunks appended.

Standard library only (it runs inside the target, through probe.session.writer.RecordBuffer).
The layout of the header and the chunks is docs/session-format.md (probe.session.format packs
them); this module is the file's life: ``O_EXCL`` creation (never two writers on one file), one
``write`` per chunk (a chunk that fails part-way is cut off again), the check that the descriptor
is still this file's, and the ``lost`` note written into the header's spare room.
"""

from __future__ import annotations

import errno
import json
import os
import zlib

from probe.session import format as fmt

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from typing import Any

HEADER_SLOT = 1024  # the header JSON is padded with spaces to at least this many bytes
HEADER_SPARE = 512  # room left in the slot for the ``lost`` note

_os_write = os.write  # the one call that writes records (tests put a full disk in its place)


def describe_error(exc: BaseException) -> str:
    """``No space left on device (ENOSPC)``: what a failed write says to a person."""
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return f"{exc.strerror or os.strerror(exc.errno)} ({name})"
    return f"{type(exc).__name__}: {exc}"


class FileGone(OSError):
    """The record file is no longer the writer's: closed or replaced under it, or removed."""

    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.how = how  # closed, replaced, removed


class RecordFile:
    """One record file: created exclusively, appended chunk by chunk, one write per chunk.

    A chunk that fails part-way is cut off again (``bytes_written`` is always the end of the last
    whole chunk); ``torn`` says that even that failed, and the reader then resynchronises on the
    next chunk that follows the torn one.
    """

    def __init__(self, directory: str, prefix: str, header: dict[str, Any], first: int = 0) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        n = first
        while True:
            path = os.path.join(directory, f"{prefix}-{n}.rec" if n else f"{prefix}.rec")
            try:
                self._fd = os.open(path, flags, 0o644)
                break
            except FileExistsError:
                n += 1
        self.path = path
        self.bytes_written = 0
        self.torn = False
        self._header = dict(header)
        head = json.dumps(header, separators=(",", ":")).encode()
        self._slot = max(HEADER_SLOT, len(head) + HEADER_SPARE)
        try:
            st = os.fstat(self._fd)
            self._identity = (st.st_dev, st.st_ino)
            self._write(
                fmt.FILE_HEADER.pack(fmt.FILE_MAGIC, fmt.FORMAT_MAJOR, fmt.FORMAT_MINOR, self._slot)
                + head.ljust(self._slot)
            )
        except OSError:
            os.close(self._fd)
            self._fd = -1
            try:
                os.unlink(path)  # created by us a moment ago (O_EXCL): no one else's
            except OSError:
                pass
            raise

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = _os_write(self._fd, view)
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[n:]
        except OSError:
            if len(view) != len(data):  # part of it is in the file: cut it off again
                try:
                    os.ftruncate(self._fd, self.bytes_written)
                except OSError:
                    self.torn = True
            raise
        self.bytes_written += len(data)

    def write_chunk(self, kind: int, count: int, payload: bytes) -> None:
        crc = zlib.crc32(payload)
        self._write(
            fmt.CHUNK_HEADER.pack(fmt.CHUNK_MAGIC, kind, 0, count, len(payload), crc) + payload
        )

    def check(self) -> None:
        """Raise ``FileGone`` unless the descriptor still refers to this file, still linked."""
        try:
            st = os.fstat(self._fd)
        except OSError as exc:
            raise FileGone("closed") from exc
        if (st.st_dev, st.st_ino) != self._identity:
            raise FileGone("replaced")
        if st.st_nlink == 0:
            raise FileGone("removed")

    def note(self, lost: dict[str, Any]) -> bool:
        """Rewrite the header in place with ``lost`` added; whether it fitted and was written."""
        header = dict(self._header)
        header["lost"] = lost
        head = json.dumps(header, separators=(",", ":"), default=str).encode()
        if len(head) > self._slot:
            header["lost"] = {k: v for k, v in lost.items() if k != "episodes"}
            head = json.dumps(header, separators=(",", ":"), default=str).encode()
            if len(head) > self._slot:
                return False
        import fcntl  # only once something was lost

        fd = self._fd
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_APPEND)  # pwrite appends under O_APPEND
            try:
                os.pwrite(fd, head.ljust(self._slot), fmt.FILE_HEADER.size)
            finally:
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1

    def abandon(self) -> None:
        """Forget the descriptor without closing it: it is someone else's now."""
        self._fd = -1
