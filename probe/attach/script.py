"""What ``probe attach`` makes the target run, built as plain text and commands (pure functions).

- ``agent_script``: the Python file the target runs. It imports the agent from probe's own package
  directory (as the bootstrap does, whatever the target's ``sys.path`` holds), starts it for the
  session and returns at once. It never raises: a failure becomes the status file's reason.
- ``gdb_commands``: Python < 3.14 through gdb. gdb stops the process only long enough to map one
  anonymous page (``mmap``, a plain system call: no allocator lock can be held), copy a two-line
  stub into it, and queue ``PyRun_SimpleString(stub)`` with ``Py_AddPendingCall``. The interpreter
  runs it on the main thread at its next safe point, with the GIL, between two bytecodes: never in
  the middle of a C call or an allocation. The stub runs the agent script in a namespace of its
  own, so the job's ``__main__`` gains no names, and swallows every exception (a pending call that
  failed would raise SystemError in the job). The page (4 KiB) stays mapped.
- ``remote_exec_command``: Python >= 3.14 through ``sys.remote_exec`` (PEP 768), run by the
  target's own interpreter so that versions match; the script runs at the same kind of safe point.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCRIPT_TEMPLATE = """\
# Written by probe attach: loads probe's agent into this running process and returns at once.
# Run on the main thread at a safe point, in a namespace of its own; it never raises.


def _probe_attach(config, parent, method, version):
    import json
    import os
    import sys

    def status(state, reason):
        path = os.path.join(config["dir"], "attach-%d.json" % os.getpid())
        doc = {{"pid": os.getpid(), "state": state, "method": method, "reason": reason}}
        try:
            with open(path + ".tmp", "w") as f:
                json.dump(doc, f)
            os.replace(path + ".tmp", path)
        except Exception:
            pass

    try:
        if os.path.exists(config["stop_file"]):
            return  # this ran after probe attach ended: nothing to do
        if sys.version_info < (3, 10):
            status("refused", "probe's agent needs Python 3.10 or newer")
            return
        probe = sys.modules.get("probe")
        if probe is None:
            # probe's own package, whatever this process's sys.path holds
            sys.path.insert(0, parent)
            try:
                import probe
            finally:
                try:
                    sys.path.remove(parent)
                except ValueError:
                    pass
        if getattr(probe, "__version__", None) != version:
            status(
                "refused",
                "this process imported another probe (%s, version %s) than probe attach's (%s)"
                % (getattr(probe, "__file__", "?"), getattr(probe, "__version__", "?"), version),
            )
            return
        from probe.agent import attached

        attached.start(config, method=method)
    except BaseException as exc:
        status("failed", "%s: %s" % (type(exc).__name__, exc))


_probe_attach({config}, {parent}, {method}, {version})
"""

# Run by PyRun_SimpleString in __main__'s namespace: binds no name there, never raises.
_STUB_INNER = (
    "with open(P,'rb') as f:c=compile(f.read(),P,'exec')\n"
    "exec(c,{'__name__':'__probe_attach__','__file__':P})\n"
)
STUB_TEMPLATE = (
    "try:__import__('builtins').exec({inner},{{'P':{path}}})\nexcept BaseException:pass\n"
)

# Flags for an anonymous private read-write page (the same values on x86-64, arm64 and ppc64).
PROT_READ_WRITE = 3
MAP_PRIVATE_ANONYMOUS = 0x22
GDB_OK = "PROBE_RC"


def agent_script(config: dict[str, Any], package_parent: str, method: str, version: str) -> str:
    """The Python file the target runs to start its agent (a literal for each value)."""
    return SCRIPT_TEMPLATE.format(
        config=repr(json.loads(json.dumps(config))),
        parent=repr(package_parent),
        method=repr(method),
        version=repr(version),
    )


def gdb_stub(script_path: str) -> bytes:
    """The NUL-terminated code gdb queues for PyRun_SimpleString: run ``script_path``."""
    return STUB_TEMPLATE.format(inner=repr(_STUB_INNER), path=repr(script_path)).encode() + b"\0"


def gdb_commands(stub: bytes, *, any_thread: bool = False) -> list[str]:
    """A gdb script that queues ``stub`` as a pending call in the attached process.

    ``Py_AddPendingCall`` runs it on the main thread only: a main thread blocked in native code
    (``thread.join()`` while a server thread does the work) never runs it. On Python 3.12 and
    3.13, ``any_thread`` uses the interpreter's own ``_PyEval_AddPendingCall(interp, func, arg,
    0)``, which the first thread to run Python code takes (3.14 has ``sys.remote_exec``).
    """
    size = (len(stub) + 4095) // 4096 * 4096
    padded = stub + b"\0" * (-len(stub) % 8)
    writes = [
        f"  set *(unsigned long long *)($probe_buf + {i}) = "
        f"{int.from_bytes(padded[i : i + 8], 'little'):#x}"
        for i in range(0, len(padded), 8)
    ]
    queue = (
        "_PyEval_AddPendingCall((void *) PyInterpreterState_Main(), "
        "(void *) PyRun_SimpleString, $probe_buf, 0)"
        if any_thread
        else "Py_AddPendingCall((void *) PyRun_SimpleString, $probe_buf)"
    )
    return [
        "set pagination off",
        "set confirm off",
        "set width 0",
        # Symbols of the C library and libpython only: loading libtorch's would take seconds.
        "sharedlibrary libc[.-]",
        "sharedlibrary ld-musl",
        "sharedlibrary libpython",
        f"set $probe_buf = (char *) mmap((void *) 0, (unsigned long) {size}, {PROT_READ_WRITE}, "
        f"{MAP_PRIVATE_ANONYMOUS}, -1, (long) 0)",
        "if $probe_buf == (char *) -1",
        "  echo PROBE_MMAP_FAILED\\n",
        "else",
        *writes,
        f"  set $probe_rc = (int) {queue}",
        f'  printf "{GDB_OK} %d\\n", $probe_rc',
        "end",
        "detach",
        "quit",
    ]


def gdb_argv(gdb: str, pid: int, command_file: Path, *, readnever: bool = True) -> list[str]:
    """gdb with no init file, no debug information read (``--readnever``, gdb >= 8.3: the ELF
    symbols are enough, and skipping libpython's DWARF holds the process about 3x less long),
    no debuginfod download, no auto-loaded scripts."""
    return [
        gdb,
        "-nx",
        "-nw",
        "-batch",
        *(["--readnever"] if readnever else []),
        "-iex",
        "set auto-solib-add off",
        "-iex",
        "set auto-load off",
        "-iex",
        "set debuginfod enabled off",
        "-p",
        str(pid),
        "-x",
        str(command_file),
    ]


def remote_exec_command(pid: int, script_path: str, executable: str) -> list[str]:
    """``sys.remote_exec(pid, script)`` run by ``executable``: the target's own interpreter
    (``/proc/<pid>/exe``), isolated from the environment, so its version is the target's."""
    return [
        executable,
        "-I",
        "-S",
        "-c",
        "import sys; sys.remote_exec(int(sys.argv[1]), sys.argv[2])",
        str(pid),
        script_path,
    ]


__all__ = [
    "GDB_OK",
    "agent_script",
    "gdb_argv",
    "gdb_commands",
    "gdb_stub",
    "remote_exec_command",
]
