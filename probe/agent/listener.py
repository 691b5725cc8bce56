"""The dormant listener: ``probe attach`` switches the agent on and off in a job that opted in.

A job opts in with ``probe.listen()``, or with ``PROBE_LISTEN=1`` in its environment when it
imports ``probe``. Then it carries one background thread blocked in ``accept()`` on a Unix socket,
``<dir>/<pid>.sock``, and nothing else: no hook, no sampling, no file. ``<dir>`` is
``$XDG_RUNTIME_DIR/probe``, or ``/tmp/probe-<uid>`` where that is not set; it is created with mode
0700 and refused if another user owns it or can enter it. Each connection's peer is checked with
``SO_PEERCRED``: only the same user (or root, who could ptrace the job anyway) is served.

Protocol: one JSON line each way. ``{"cmd": "attach", "config": {...}}`` starts the agent with
that session config (see ``probe.agent.attached``) and answers ``{"ok": true}`` or
``{"ok": false, "reason": ...}``. The connection then stays open: ``{"cmd": "detach"}``, or the
connection closing, or the attach's lease ending, detaches the agent, which answers
``{"ok": true, "state": "detached"}``. ``{"cmd": "ping"}`` answers who listens.

One thread at a time: when the agent starts, the listener's thread ends and the agent's thread
keeps an eye on the control connection (and turns other callers away); once detached, the agent's
thread starts the listener's again and ends. A child made with ``fork()`` closes its copies of the
parent's sockets and listens on its own (DataLoader workers can be switched on too).
"""

from __future__ import annotations

import _thread
import json
import os
import select
import socket
import stat
import struct
import sys
import threading
import time

from probe.agent import attached, runtime

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

ENV = "PROBE_LISTEN"
PROTOCOL = 1
MAX_LINE = 1 << 20
REQUEST_TIMEOUT_S = 5.0
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ListenError(Exception):
    """The listener cannot start; the message says why."""


def socket_dirs(environ: Mapping[str, str], uid: int) -> list[str]:
    """Where a process with this environment and user listens, in the order it tries them."""
    dirs = []
    runtime_dir = environ.get("XDG_RUNTIME_DIR", "")
    if runtime_dir and os.path.isabs(runtime_dir):
        dirs.append(os.path.join(runtime_dir, "probe"))
    dirs.append(f"/tmp/probe-{uid}")
    return dirs


def private_dir_problem(path: str, uid: int) -> str | None:
    """Why ``path`` is not a directory only ``uid`` can enter, or None when it is."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != uid:
        return f"{path} belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o077:
        return f"{path} is open to other users (mode {stat.S_IMODE(st.st_mode):o}; needs 700)"
    return None


def _make_private_dir(path: str) -> str | None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        return f"cannot create {path}: {exc.strerror or exc}"
    return private_dir_problem(path, os.getuid())


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a connected Unix socket."""
    pid, uid, gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    return pid, uid, gid


def read_line(sock: socket.socket, limit: int = MAX_LINE) -> bytes:
    """One line (without its newline), or what came before the connection closed."""
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ValueError("request too long")
    return data.split(b"\n", 1)[0]


def _send(sock: socket.socket, doc: dict[str, Any]) -> None:
    try:
        sock.sendall(json.dumps(doc).encode() + b"\n")
    except OSError:
        pass


def _remove_stale(directory: str) -> None:
    """Remove sockets left by processes that ended without cleaning up (SIGKILL, os._exit)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        pid = name[: -len(".sock")] if name.endswith(".sock") else ""
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


class Listener:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.path: str | None = None
        self.sock: socket.socket | None = None
        self._conn: socket.socket | None = None  # the attach in progress
        self._closed = False

    # -- life cycle -----------------------------------------------------------------------------

    def open(self) -> str:
        """Bind the socket and start the listener's thread; returns the socket path."""
        if not hasattr(socket, "SO_PEERCRED") or not hasattr(socket, "AF_UNIX"):
            raise ListenError("the listener needs Linux (Unix sockets with SO_PEERCRED)")
        self.pid = os.getpid()
        problems = []
        for directory in socket_dirs(os.environ, os.getuid()):
            problem = _make_private_dir(directory)
            if problem is None:
                break
            problems.append(problem)
        else:
            raise ListenError("; ".join(problems))
        _remove_stale(directory)
        path = os.path.join(directory, f"{self.pid}.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                os.unlink(path)  # a socket of an earlier process with this pid
            except FileNotFoundError:
                pass
            sock.bind(path)
            os.chmod(path, 0o600)
            sock.listen(4)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ListenError(f"cannot listen on {path}: {exc.strerror or exc}") from exc
        self.sock = sock
        self.path = path
        self._closed = False
        _thread.start_new_thread(self._serve, ())
        return path

    def close(self) -> None:
        """Stop listening and remove the socket (the agent, if attached, runs on to its end)."""
        self._closed = True
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            sock.close()
        if self.path is not None and os.getpid() == self.pid:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        self.path = None

    def after_fork_in_child(self) -> None:
        # The sockets are the parent's: close this process's copies (never shutdown(), which
        # would act on the parent's socket too) and listen on a socket of our own.
        for sock in (self.sock, self._conn):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        self.sock = self._conn = None
        self.path = None
        self.pid = os.getpid()
        if self._closed:
            return
        if runtime.attached() is not None:
            return  # an attach goes on in this child too; its agent resumes listening after it
        try:
            self.open()
        except Exception:
            pass

    # -- the listener's thread ------------------------------------------------------------------

    def _serve(self) -> None:
        sock = self.sock
        if sock is None:
            return
        poller = select.poll()  # not select(): a job may hold more than FD_SETSIZE descriptors
        poller.register(sock, select.POLLIN)
        while True:
            if self._closed or self.sock is not sock or os.getpid() != self.pid:
                return
            try:
                poller.poll()
                conn, _ = sock.accept()
            except BlockingIOError:
                continue
            except OSError:
                if self._closed or self.sock is not sock:
                    return
                time.sleep(0.5)  # out of descriptors, or similar: try again later
                continue
            try:
                if self._handle(conn):
                    return  # attached: the agent's thread takes over
            except Exception:
                pass

    def _handle(self, conn: socket.socket) -> bool:
        """Serve one connection; True when an attach started (the connection is kept)."""
        keep = False
        try:
            conn.settimeout(REQUEST_TIMEOUT_S)
            _, uid, _ = peer_credentials(conn)
            if uid not in (os.getuid(), 0):
                return False
            try:
                request = json.loads(read_line(conn))
            except (ValueError, UnicodeDecodeError):
                _send(conn, {"ok": False, "reason": "not a probe request"})
                return False
            command = request.get("cmd") if isinstance(request, dict) else None
            if command == "ping":
                _send(conn, self._identity(ok=True))
                return False
            if command != "attach":
                _send(conn, {"ok": False, "reason": f"unknown command {command!r}"})
                return False
            config = request.get("config")
            if not isinstance(config, dict) or not os.path.isdir(str(config.get("dir", ""))):
                _send(conn, {"ok": False, "reason": "no session directory in the request"})
                return False
            # Blocking from here on: the agent thread peeks at this connection with MSG_DONTWAIT
            # as soon as the attach starts, and a timeout left on it would make that peek wait
            # and fail ("timed out"), ending the attach at once.
            conn.settimeout(None)
            self._conn = conn
            reason = attached.start(
                config, method="listener", extra_end=self._control_end, on_detached=self._resume
            )
            if reason is not None:
                self._conn = None
                _send(conn, {"ok": False, "reason": reason})
                return False
            _send(conn, self._identity(ok=True))
            keep = True
            return True
        finally:
            if not keep:
                conn.close()

    def _identity(self, *, ok: bool) -> dict[str, Any]:
        return {
            "ok": ok,
            "protocol": PROTOCOL,
            "pid": os.getpid(),
            "python": sys.version.split()[0],
            "probe": getattr(sys.modules.get("probe"), "__version__", None),
        }

    # -- while attached (on the agent's thread) -------------------------------------------------

    def _control_end(self) -> str | None:
        """Polled by the agent thread: why the attach ends, from the control connection."""
        if os.getpid() != self.pid:
            return None  # a forked child: the lease ends its attach
        self._turn_away()
        conn = self._conn
        if conn is None:
            return "the control connection is gone"
        try:
            data = conn.recv(4096, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return None
        except OSError as exc:
            return f"the control connection failed: {exc.strerror or exc}"
        if not data:
            return "the probe attach connection closed"
        if b"detach" in data:
            return "probe attach ended"
        return None

    def _turn_away(self) -> None:
        """Answer other callers while one attach is in progress, without blocking."""
        sock = self.sock
        if sock is None:
            return
        try:
            conn, _ = sock.accept()  # non-blocking
        except OSError:
            return
        try:
            _send(conn, {"ok": False, "reason": "another probe attach is recording this process"})
        finally:
            conn.close()

    def _resume(self) -> None:
        """The agent detached (on its thread, just before it ends): answer, and listen again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            _send(conn, {"ok": True, "state": "detached"})
            conn.close()
        if self._closed:
            return
        if self.sock is None or os.getpid() != self.pid:
            try:
                self.open()
            except Exception:
                pass
            return
        _thread.start_new_thread(self._serve, ())


_listener: Listener | None = None
_fork_hook_registered = False
_lock = threading.Lock()


def listen() -> str:
    """Start the dormant listener in this process (once); returns its socket path.

    Raises ListenError with the reason when it cannot listen.
    """
    global _listener, _fork_hook_registered
    with _lock:
        if _listener is not None and _listener.path is not None and _listener.pid == os.getpid():
            return _listener.path
        listener = _listener or Listener()
        path = listener.open()
        _listener = listener
        if not _fork_hook_registered:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            register = getattr(threading, "_register_atexit", None)
            try:
                if register is not None:  # also runs in multiprocessing children (os._exit)
                    register(_at_exit)
            except RuntimeError:
                pass
            import atexit

            atexit.register(_at_exit)
            _fork_hook_registered = True
        return path


def stop() -> None:
    """Stop listening (``probe attach`` can no longer switch the agent on here)."""
    global _listener
    with _lock:
        listener, _listener = _listener, None
    if listener is not None:
        listener.close()


def current_path() -> str | None:
    listener = _listener
    return listener.path if listener is not None else None


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    listener = _listener
    if listener is not None:
        listener.after_fork_in_child()


def _at_exit() -> None:
    listener = _listener
    if listener is not None and listener.pid == os.getpid() and listener.path is not None:
        try:
            os.unlink(listener.path)
        except OSError:
            pass
        listener.path = None


def listen_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``PROBE_LISTEN=1``: listen, silently doing nothing when that is impossible."""
    value = (environ if environ is not None else os.environ).get(ENV, "")
    if value.strip().lower() in ("", "0", "false", "no", "off"):
        return None
    try:
        return listen()
    except Exception:
        return None


__all__ = [
    "ENV",
    "ListenError",
    "Listener",
    "current_path",
    "listen",
    "listen_from_env",
    "peer_credentials",
    "private_dir_problem",
    "read_line",
    "socket_dirs",
    "stop",
]
